"""Helpers shared by the devhost host tests (imported as ``host_support``; conftest holds the fixtures)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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


def azurite_connection_string() -> str:
    """A development-storage connection string on free ports (devhost starts Azurite there)."""
    return local_storage_connection_string()




def read_records(record_dir: Path, kind: str) -> list[dict]:
    """Lines the test apps append to ``<record_dir>/<kind>.jsonl``."""
    path = record_dir / f"{kind}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
