"""``GET /api/preflight`` through devhost running the real function_app.py (real Durable client binding,
real azure-identity against the emulator): 200 with every check passing, a function key required,
503 naming exactly a permission the admin removed, and no secret value in any answer."""

from __future__ import annotations

import asyncio
import json
import re

import azure.durable_functions as df
import pytest
import requests
from support import Stack, free_port, secret_names, secret_values

from core.permissions import REQUIRED_GRAPH_PERMISSIONS
from devhost.testing import close_sdk_session
from emulator.permissions import GRAPH_APP_ROLES
from triggers.http_preflight import task_hub_check

EXPECTED_ROWS = (["settings", "graph token"] + [f"graph permission: {p}" for p in REQUIRED_GRAPH_PERMISSIONS]
                 + ["graph gallery", "key vault", "task hub"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("preflight"))
    yield running
    running.stop()


def _graph(stack: Stack, method: str, path: str, **kwargs) -> requests.Response:
    emu = stack.emulator
    headers = {"Authorization": "Bearer " + emu.admin.token(client="admin")}
    return requests.request(method, f"{emu.url}/v1.0{path}", headers=headers, verify=emu.ca_bundle, timeout=30,
                            **kwargs)


def test_preflight_passes_on_the_default_client(stack):
    response = stack.request("GET", "/api/preflight")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["counts"]["failed"] == 0
    assert [c["name"] for c in body["checks"]] == EXPECTED_ROWS
    assert all(c["status"] == "ok" for c in body["checks"]), body
    hub = body["checks"][-1]
    # the task hub answered "no such instance" through the Durable extension
    assert "HTTP 404" in hub["detail"] and "task hub 'EntraProvisioning'" in hub["detail"], hub  # host.json hubName


def test_preflight_needs_a_function_key(stack):
    response = stack.host.request("GET", "/api/preflight", key=False)
    assert response.status_code == 401


def test_preflight_answers_503_naming_a_removed_permission(stack):
    workflow_sp = stack.emulator.admin.client("workflow")["servicePrincipalId"]
    assignments = _graph(stack, "GET", f"/servicePrincipals/{workflow_sp}/appRoleAssignments").json()["value"]
    [grant] = [a for a in assignments if a["appRoleId"] == GRAPH_APP_ROLES["Synchronization.ReadWrite.All"]]
    assert _graph(stack, "DELETE", f"/servicePrincipals/{workflow_sp}/appRoleAssignments/{grant['id']}"
                  ).status_code == 204
    try:
        response = stack.request("GET", "/api/preflight")
        assert response.status_code == 503, response.text
        body = response.json()
        failed = [c for c in body["checks"] if c["status"] == "failed"]
        assert [c["name"] for c in failed] == ["graph permission: Synchronization.ReadWrite.All"]
        assert "synchronization" in failed[0]["detail"] and "grant_graph_permissions.py" in failed[0]["fix"]
    finally:
        restored = _graph(stack, "POST", f"/servicePrincipals/{workflow_sp}/appRoleAssignments",
                          json={"principalId": workflow_sp, "resourceId": grant["resourceId"],
                                "appRoleId": grant["appRoleId"]})
        assert restored.status_code == 201, restored.text
    assert stack.request("GET", "/api/preflight").status_code == 200  # a new token carries the grant again


def test_no_secret_value_in_preflight_answers_or_host_log(stack):
    secrets = secret_values(stack) | {c["secret"] for c in stack.emulator.admin.clients() if c.get("secret")}
    names_re = re.compile("|".join(sorted(map(re.escape, secret_names()), key=len, reverse=True)))
    haystacks = {"responses": "\n".join(stack.responses), "devhost log": stack.host.log_text()}
    assert "graph permission" in haystacks["responses"]
    leaks = {(where, secret) for where, text in haystacks.items() for secret in secrets
             if secret in names_re.sub("<secret-name>", text)}
    assert not leaks, f"secret values found: {sorted(leaks)}"
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", haystacks["responses"])


def test_task_hub_row_fails_when_the_durable_client_cannot_reach_the_task_hub(stack):
    """The same probe with the real SDK client, its RPC endpoint pointed at a closed port."""
    binding = json.loads(stack.host.client_binding_json())
    assert "rpcBaseUrl" in binding
    binding["rpcBaseUrl"] = f"http://127.0.0.1:{free_port()}/durabletask/"

    async def probe():
        try:
            return await task_hub_check(df.DurableOrchestrationClient(json.dumps(binding)))
        finally:
            await close_sdk_session()

    row = asyncio.run(probe())
    assert row.name == "task hub" and row.status == "failed" and row.fix
