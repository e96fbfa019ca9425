"""``python -m devhost status``: instance list and one instance's history summary, read from SQLite."""
from __future__ import annotations

import asyncio
import io
import logging
import os
import subprocess
import sys

import pytest

from devhost import status
from devhost.app_loader import LoadedApp
from devhost.durable.engine import DurableEngine

APP_PATH = os.path.join(os.path.dirname(__file__), "apps", "durable_app", "function_app.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.timeout(60)


def test_status_lists_instances_and_shows_one_with_its_history(tmp_path, caplog):
    app = LoadedApp.load(APP_PATH)
    state = tmp_path / "state"

    async def scenario():
        engine = DurableEngine(app, str(state), {}, virtual_clock=True)
        await engine.start()
        try:
            ok = await engine.start_orchestration("durable_chain", {"a": "Oslo"}, instance_id="st-ok")
            bad = await engine.start_orchestration("durable_fail", None, instance_id="st-bad")
            await engine.wait_for_instance(ok, 10)
            await engine.wait_for_instance(bad, 10)
        finally:
            await engine.stop()

    with caplog.at_level(logging.INFO, logger="devhost.durable"):
        asyncio.run(scenario())
    activity_logs = [r.getMessage() for r in caplog.records if "Executing activity" in r.getMessage()]
    assert any("'durable_hello'" in m and "instance=st-ok" in m and "invocation=" in m for m in activity_logs)

    out = io.StringIO()
    assert status.main(["--state-dir", str(state)], out=out) == 0
    listing = out.getvalue()
    assert "st-ok" in listing and "durable_chain" in listing and "Completed" in listing
    bad_line = next(line for line in listing.splitlines() if line.startswith("st-bad"))
    assert "Failed" in bad_line and "{\"stage\":1}" in bad_line and "kaputt: x" in bad_line

    out = io.StringIO()
    assert status.main(["st-ok", "--state-dir", str(state)], out=out) == 0
    detail = out.getvalue()
    assert "status:        Completed" in detail
    assert "history: 12 events, 3 episode(s)" in detail
    assert "TaskScheduled  #0  Name=durable_hello" in detail

    out = io.StringIO()
    assert status.main(["nope", "--state-dir", str(state)], out=out) == 1
    assert "no instance 'nope'" in out.getvalue()

    # through the CLI entry point, as an operator runs it
    cli = subprocess.run([sys.executable, "-m", "devhost", "status", "st-bad", "--state-dir", str(state)],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "last error:    Orchestrator function 'durable_fail' failed: kaputt: x" in cli.stdout
    missing = subprocess.run([sys.executable, "-m", "devhost", "status", "--state-dir", str(tmp_path / "none")],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert missing.returncode == 2 and "no devhost Durable store" in missing.stderr
