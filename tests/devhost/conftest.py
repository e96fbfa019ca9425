"""Fixtures for devhost tests: test apps, free ports, an Azurite connection, a running devhost.

Every devhost here is a real subprocess (``devhost.testing.start_devhost``); queue tests use the
Azurite that devhost itself starts for a development-storage connection string on free loopback
ports, so tests never collide with an Azurite already running on 10000-10002.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

import pytest

from devhost.azurite import dev_connection_string
from devhost.testing import DevhostProcess, start_devhost

APPS = Path(__file__).parent / "apps"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def azurite_connection_string() -> str:
    """A development-storage connection string on free ports (devhost starts Azurite there)."""
    return dev_connection_string(free_port(), free_port(), free_port())


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value (returned) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def read_records(record_dir: Path, kind: str) -> list[dict]:
    """Lines the test apps append to ``<record_dir>/<kind>.jsonl``."""
    path = record_dir / f"{kind}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
        APPS / "host_basic" / "function_app.py", root / "state",
        env={"AzureWebJobsStorage": conn, "HOST_TEST_RECORD_DIR": str(records),
             "HOST_TEST_OVERRIDDEN": "from-env", "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "65536"},
        timeout=90,
    )
    host.records = records  # type: ignore[attr-defined]
    host.connection_string = conn  # type: ignore[attr-defined]
    yield host
    host.stop()
