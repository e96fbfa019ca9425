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
        for _ in range(3):
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
    assert kills >= 1, f"seed={seed}: the fan-out finished before the first kill"
