"""Helpers shared by the devhost host tests (imported as ``host_support``; conftest holds the fixtures)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from pathlib import Path
from typing import Any, Awaitable, Callable

from devhost.durable.engine import DurableEngine
from devhost.testing import local_storage_connection_string
from polling import wait_until  # noqa: F401  (re-exported for the devhost tests)

APPS = Path(__file__).parent / "apps"


def host_basic_app(dest: Path) -> Path:
    """A copy of ``apps/host_basic`` under ``dest`` with its ``local.settings.json`` in place.

    The repository keeps that file as ``local.settings.fixture.json``: ``local.settings.json`` is
    git-ignored everywhere (it holds real settings in a real app), so the test app's copy is laid
    down at test time, the way a developer's own file would be.
    """
    app_dir = dest / "host_basic"
    shutil.copytree(APPS / "host_basic", app_dir)
    (app_dir / "local.settings.fixture.json").rename(app_dir / "local.settings.json")
    return app_dir / "function_app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def azurite_connection_string() -> str:
    """A development-storage connection string on free ports (devhost starts Azurite there)."""
    return local_storage_connection_string()




def read_records(record_dir: Path, kind: str) -> list[dict]:
    """Lines the test apps append to ``<record_dir>/<kind>.jsonl``."""
    path = record_dir / f"{kind}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_engine(app, tmp_path: Path, scenario: Callable[[DurableEngine], Awaitable[Any]], *, virtual_clock: bool = True,
               host_config: dict | None = None, orchestrator_threads: int | None = None) -> Any:
    """Run ``scenario(engine)`` on a fresh in-process DurableEngine (state under ``tmp_path``), then stop it.

    ``orchestrator_threads``, when given, replaces the DEVHOST_ORCHESTRATOR_THREADS default.
    """

    async def main():
        engine = DurableEngine(app, str(tmp_path / "state"), host_config or {}, virtual_clock=virtual_clock)
        if orchestrator_threads is not None:
            engine.settings.orchestrator_threads = orchestrator_threads
        await engine.start()
        try:
            return await scenario(engine)
        finally:
            await engine.stop()

    return asyncio.run(main())
