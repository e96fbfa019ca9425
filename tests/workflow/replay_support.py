"""Run the project's real orchestrators on devhost's in-process DurableEngine with scripted activities.

The replay is the real SDK's, the clock is devhost's virtual clock (durable timers fire at once, in
order), and every activity answers from a script (``script(get_job_status=[...])``): orchestration
logic - waits, deadlines, counts - is tested without Graph, in a second or two.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

STUB_APP = Path(__file__).resolve().parent / "stub_app" / "stub_function_app.py"  # not "function_app": that module name belongs to the real app
if str(STUB_APP.parent) not in sys.path:
    sys.path.insert(0, str(STUB_APP.parent))

import stubstate  # noqa: E402

from devhost.app_loader import LoadedApp  # noqa: E402
from devhost.durable.engine import DurableEngine  # noqa: E402

_APP = None


def app() -> LoadedApp:
    global _APP
    if _APP is None:
        _APP = LoadedApp.load(str(STUB_APP))
    return _APP


def run(tmp_path: Path, scenario, virtual_clock: bool = True) -> Any:
    """Run ``await scenario(engine)`` on a fresh engine (state under ``tmp_path``); return its result."""
    async def main():
        engine = DurableEngine(app(), str(tmp_path / "state"), {}, virtual_clock=virtual_clock)
        await engine.start()
        try:
            return await scenario(engine)
        finally:
            await engine.stop()
    return asyncio.run(main())


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
