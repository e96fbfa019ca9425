"""Fixtures for the core tests: a fast-settings step context on the emulator, and a log guard.

The autouse ``no_secret_in_logs`` fixture captures *every* log record of every test (root logger,
DEBUG) and fails the test if any record - message, arguments or traceback - contains a Key Vault
secret value, a client secret or a bearer token.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import pytest

from core import clients, steps
from core.graph import synchronization, templates
from core.graph.transport import GraphClient
from core.settings import Settings
from core_support import FAST, leaks, secret_texts

class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


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
    synchronization.clear_cache()
    monkeypatch.setattr(steps.applications.LOOKUP, "combined_rejected", False)
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
