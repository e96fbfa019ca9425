"""Crash recovery: SIGKILL the devhost process at random moments during a 200-activity fan-out.

After each kill the host is started again on the same state folder. The orchestration must finish
with the right output, and its history must hold every TaskScheduled and every TaskCompleted
exactly once (activities may *run* more than once: at-least-once, as in Azure).
"""
from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections import Counter

import pytest

from devhost.testing import start_devhost

APP_PATH = os.path.join(os.path.dirname(__file__), "apps", "durable_app", "function_app.py")
N = 200


@pytest.mark.timeout(240)
def test_sigkill_during_fan_out_then_restart_completes_exactly_once(tmp_path):
    seed = int(os.environ.get("DURABLE_CRASH_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    host = start_devhost(APP_PATH, tmp_path / "state")
    try:
        # body as the Python client sends it: the JSON of df_dumps(input), i.e. a JSON string
        r = host.post("/runtime/webhooks/durabletask/orchestrators/durable_crash_fanout/crash-1", json=json.dumps(N),
                      key=False)
        assert r.status_code == 202, r.text
        kills = 0
        # the first kill lands while the fan-out is half-way: some work items done, others not
        done_at_first_kill = _wait_for_partial_fan_out(tmp_path / "state" / "durable.sqlite3")
        time.sleep(rng.uniform(0.0, 0.05))
        host.restart(kill=True)
        kills += 1
        for _ in range(2):  # then at random moments (start-up, episodes, activities, commits)
            time.sleep(rng.uniform(0.05, 0.5))
            status = host.get_status("crash-1")
            if status and status["runtimeStatus"] == "Completed":
                break
            host.restart(kill=True)
            kills += 1
        status = host.wait_for_instance("crash-1", timeout=120)
    finally:
        host.stop()
    assert status["runtimeStatus"] == "Completed", f"seed={seed}: {status}"
    assert status["output"] == {"count": N, "total": 2 * sum(range(N))}, f"seed={seed}"
    db = sqlite3.connect(str(tmp_path / "state" / "durable.sqlite3"))
    events = [json.loads(t) for (t,) in db.execute("SELECT event FROM history WHERE instance_id='crash-1' ORDER BY idx")]
    scheduled = Counter(e["EventId"] for e in events if e["EventType"] == 4)
    completed = Counter(e["TaskScheduledId"] for e in events if e["EventType"] == 5)
    assert sorted(scheduled) == list(range(N + 1)) and set(scheduled.values()) == {1}, f"seed={seed}"
    assert sorted(completed) == list(range(N + 1)) and set(completed.values()) == {1}, f"seed={seed}"
    assert [e["EventType"] for e in events].count(1) == 1  # one ExecutionCompleted
    assert db.execute("SELECT COUNT(*) FROM activities").fetchone()[0] == 0
    assert kills >= 1 and 0 < done_at_first_kill < N, f"seed={seed}"


def _wait_for_partial_fan_out(db_path, timeout: float = 60.0) -> int:
    """Poll the store (read-only) until some but not all of the N work items have run; how many ran."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
            try:
                pending = db.execute("SELECT COUNT(*) FROM activities").fetchone()[0]
                scheduled = db.execute("SELECT COUNT(*) FROM history WHERE instance_id='crash-1' "
                                       "AND event LIKE '%\"EventType\": 4,%'").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error:  # not created yet
            pending = scheduled = 0
        if scheduled == N and 0 < pending < N:
            return N - pending
        time.sleep(0.005)
    raise AssertionError("the fan-out was never seen half-way")
