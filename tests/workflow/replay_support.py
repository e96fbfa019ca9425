"""Run the project's real orchestrators on devhost's in-process DurableEngine with scripted activities.

The replay is the real SDK's, the clock is devhost's virtual clock (durable timers fire at once, in
order), and every activity answers from a script (``script(get_job_status=[...])``): orchestration
logic - waits, deadlines, counts - is tested without Graph, in a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import stubstate  # tests/workflow/stub_app, on pytest's pythonpath (pyproject.toml)

from devhost.app_loader import LoadedApp
from devhost.testing import run_engine

STUB_APP = Path(__file__).resolve().parent / "stub_app" / "stub_function_app.py"  # not "function_app": the real app's

_APP = None


def app() -> LoadedApp:
    global _APP
    if _APP is None:
        _APP = LoadedApp.load(str(STUB_APP))
    return _APP


def run(tmp_path: Path, scenario, virtual_clock: bool = True) -> Any:
    """Run ``await scenario(engine)`` on a fresh engine (state under ``tmp_path``); return its result."""
    return run_engine(app(), tmp_path, scenario, virtual_clock=virtual_clock)


def script(**answers: Any) -> None:
    with stubstate.LOCK:
        stubstate.SCRIPT.clear()
        stubstate.SCRIPT.update(answers)
        stubstate.CALLS.clear()


def calls(name: str | None = None) -> list[tuple[str, dict]]:
    with stubstate.LOCK:
        return [(a, p) for a, p in stubstate.CALLS if name is None or a == name]


def output(row: Any) -> Any:
    value = json.loads(row.output) if row.output else None
    return json.loads(value) if isinstance(value, str) else value
