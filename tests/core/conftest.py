"""Fixtures for the core tests: a fast-settings step context on the emulator, and a log guard.

The autouse ``no_secret_in_logs`` fixture captures *every* log record of every test (root logger,
DEBUG) and fails the test if any record - message, arguments or traceback - contains a Key Vault
secret value, a client secret or a bearer token.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from core import clients, steps
from core.graph import templates
from core.graph.transport import GraphClient
from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SEEDED_SECRETS = {name: item["value"] for name, item in
                  json.loads((REPO / "emulator/data/secrets.json").read_text())["secrets"].items()}
CUSTOM_TEMPLATE_ID = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"  # the non-gallery ("Custom") template, sync id "scim"
HEALTHY_CREDENTIALS = {"BaseAddress": "https://scim.contoso.test/scim/v2",
                       "SecretToken": {"keyVaultSecret": "scim-contoso-token"}}
WRONG_CREDENTIALS = {"BaseAddress": "https://scim.contoso.test/scim/v2",
                     "SecretToken": {"keyVaultSecret": "scim-contoso-wrong-token"}}
FAST = {
    "VISIBILITY_POLL_SECONDS": "0.05",
    "VISIBILITY_WAIT_SECONDS": "3",
    "GRAPH_RETRY_BUDGET_SECONDS": "6",
    "PROVISIONING_LOG_MIN_INTERVAL_SECONDS": "0.01",
}
_BEARER = re.compile(r"Bearer\s+[A-Za-z0-9._-]{20,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def secret_texts(extra: dict[str, str] | None = None) -> list[str]:
    values = list(SEEDED_SECRETS.values())
    values += [v for k, v in (extra or {}).items() if k.endswith("SECRET") and v]
    return values


def leaks(text: str, values: list[str]) -> list[str]:
    """Secret values (or bearer tokens) found in ``text``.

    Secret *names* are removed first: a seeded name such as ``scim-wingtip-token`` contains its
    own value ``wingtip-token``, and names may be logged.
    """
    for name in sorted(SEEDED_SECRETS, key=len, reverse=True):
        text = text.replace(name, "<name>")
    found = [v for v in values if v and v in text]
    found += _BEARER.findall(text)
    return found


@pytest.fixture(autouse=True)
def no_secret_in_logs(request: pytest.FixtureRequest):
    handler = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    env_values = {}
    if "emulator_env" in request.fixturenames or "core_env" in request.fixturenames:
        import os
        env_values = dict(os.environ)
    values = secret_texts(env_values)
    formatter = logging.Formatter()
    for record in handler.records:
        text = record.getMessage()
        if record.exc_info:
            text += formatter.formatException(record.exc_info)
        found = leaks(text, values)
        assert not found, f"log record from {record.name} leaks a secret: {found!r}"


@pytest.fixture
def core_env(emulator_env, monkeypatch: pytest.MonkeyPatch):
    """The emulator, reset, with its environment plus fast waits; core's process clients forgotten."""
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    clients.reset()
    templates.clear_cache()
    yield emulator_env
    clients.reset()


@pytest.fixture
def ctx(core_env) -> steps.StepContext:
    """The production context (DefaultAzureCredential, SecretClient) built from the environment."""
    return steps.default_context()


@pytest.fixture
def make_ctx(core_env) -> Callable[..., steps.StepContext]:
    """A context acting as another emulator client (e.g. ``unprivileged``), sharing the settings."""
    import os

    from azure.identity import ClientSecretCredential

    def build(client_name: str, **overrides: Any) -> steps.StepContext:
        client = core_env.admin.client(client_name)
        credential = ClientSecretCredential(
            os.environ["AZURE_TENANT_ID"], client["clientId"], client["secret"],
            authority=os.environ["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True)
        settings = Settings.from_env(os.environ, **overrides)
        secrets = clients.get_secret_resolver().__class__(clients.make_secret_client(settings, credential))
        return steps.StepContext(graph=GraphClient(settings, credential), settings=settings, secrets=secrets)

    return build


def graph_requests(emu, **filters: Any) -> list[dict]:
    """The emulator's log of Graph requests (oldest first)."""
    return emu.admin.requests(kind="graph", **filters)["value"]
