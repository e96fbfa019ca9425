"""Test helpers for the emulator's tests: a plain ``requests`` Graph client and error checks.

Tokens come from the emulator's real token endpoint (client credentials), so every test also
exercises identity.
"""

from __future__ import annotations

from typing import Any

import requests

from emulator.testing import RunningEmulator

NON_GALLERY = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
AWS_SINGLE_ACCOUNT = "8b1025e4-1dd2-430b-a150-2ef79cd700f5"


class GraphClient:
    """Minimal Graph client: absolute or version-relative paths, bearer token from the emulator."""

    def __init__(self, emu: RunningEmulator, client: str = "workflow", version: str = "v1.0") -> None:
        self.emu = emu
        self.version = version
        self.base = emu.url
        self.ca = emu.ca_bundle
        self.session = requests.Session()
        info = emu.admin.client(client)
        self.client_id = info["clientId"]
        self.sp_id = info["servicePrincipalId"]
        self.secret = info["secret"]
        self.token = self.fetch_token()

    def fetch_token(self, scope: str = "https://graph.microsoft.com/.default") -> str:
        response = requests.post(
            f"{self.base}/{self.emu.env['AZURE_TENANT_ID']}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.secret, "scope": scope},
            verify=self.ca,
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def url(self, path: str) -> str:
        if path.startswith("https://"):
            return path
        return f"{self.base}/{self.version}/{path.lstrip('/')}"

    def request(self, method: str, path: str, token: str | None = "default", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token == "default":
            token = self.token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(method, self.url(path), headers=headers, verify=self.ca, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def instantiate(self, display_name: str, template_id: str = NON_GALLERY) -> tuple[dict, dict]:
        response = self.post(f"applicationTemplates/{template_id}/instantiate", json={"displayName": display_name})
        assert response.status_code == 201, response.text
        body = response.json()
        return body["application"], body["servicePrincipal"]

    def all_pages(self, path: str, **params: str) -> list[dict]:
        items: list[dict] = []
        response = self.get(path, params=params)
        while True:
            assert response.status_code == 200, response.text
            body = response.json()
            items.extend(body["value"])
            if "@odata.nextLink" not in body:
                return items
            response = self.get(body["@odata.nextLink"])


def assert_graph_error(response: requests.Response, status: int, code: str) -> dict:
    """Check status, OData error envelope and correlation headers; return the error object."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    inner = error["innerError"]
    assert inner["request-id"] == response.headers["request-id"]
    assert inner["client-request-id"] == response.headers["client-request-id"]
    assert inner["date"] and response.headers["Date"]
    return error


def assert_refused(response: requests.Response, status: int = 403) -> dict:
    """A refused call: 403 ``Authorization_RequestDenied`` with Graph's message, or - the
    synchronization API's way (``synchronizationDeniedStatus`` 401) - 401 ``UnknownError`` with an
    empty message and no ``WWW-Authenticate`` challenge (the token itself was fine)."""
    if status == 403:
        return assert_graph_error(response, 403, "Authorization_RequestDenied")
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "UnknownError" and error["message"] == "", error
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert "WWW-Authenticate" not in response.headers
    return error
