"""Fixtures for devhost tests: test apps, free ports, an Azurite connection, a running devhost.

Every devhost here is a real subprocess (``devhost.testing.start_devhost``); queue tests use the
Azurite that devhost itself starts for a development-storage connection string on free loopback
ports, so tests never collide with an Azurite already running on 10000-10002. Helpers live in
``host_support.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devhost.testing import DevhostProcess, start_devhost
from host_support import APPS, azurite_connection_string, host_basic_app

@pytest.fixture(scope="session")
def apps_dir() -> Path:
    return APPS


@pytest.fixture(scope="session")
def basic_host(tmp_path_factory) -> DevhostProcess:
    """devhost serving ``apps/host_basic`` (HTTP, queue, timer), with Azurite started by devhost."""
    root = tmp_path_factory.mktemp("basic_host")
    records = root / "records"
    records.mkdir()
    conn = azurite_connection_string()
    host = start_devhost(
        host_basic_app(root), root / "state",
        env={"AzureWebJobsStorage": conn, "HOST_TEST_RECORD_DIR": str(records),
             "HOST_TEST_OVERRIDDEN": "from-env", "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "65536"},
        timeout=90,
    )
    host.records = records  # type: ignore[attr-defined]
    host.connection_string = conn  # type: ignore[attr-defined]
    yield host
    host.stop()
