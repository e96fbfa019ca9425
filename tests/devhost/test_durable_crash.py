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
        r = host.post("/runtime/webhooks/durabletask/orchestrators/durable_crash_fanout/crash-1", json=json.dumps(N))
        assert r.status_code == 202, r.text
        kills = 0
        # the first kill lands while the fan-out is half-way: some work items done, others not
        pending, _ = _poll(tmp_path / "state" / "durable.sqlite3",
                           "SELECT (SELECT COUNT(*) FROM activities), (SELECT COUNT(*) FROM history "
                           "WHERE instance_id='crash-1' AND event LIKE '%\"EventType\": 4,%')",
                           lambda row: row[1] == N and 0 < row[0] < N)
        done_at_first_kill = N - pending
        time.sleep(rng.uniform(0.0, 0.05))
        host.restart(kill=True)
        kills += 1
        # then at random moments (start-up, episodes, activities, commits)
        kills += _kill_at_random_moments(host, "crash-1", rng, 0.05, 0.5)
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


@pytest.mark.timeout(240)
def test_sigkill_during_sub_orchestrations_with_timers_on_the_virtual_clock(tmp_path):
    """30 children, each a durable timer then an activity; kills at random moments, restarts on the same
    state folder (the virtual clock offset is kept): every child and the parent finish exactly once."""
    seed = int(os.environ.get("DURABLE_CRASH_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    children = 30
    host = start_devhost(APP_PATH, tmp_path / "state", virtual_clock=True)
    try:
        r = host.post("/runtime/webhooks/durabletask/orchestrators/durable_crash_parent/crash-p",
                      json=json.dumps(children))
        assert r.status_code == 202, r.text
        kills = 0
        # first kill: some children finished, others still waiting for their timer or activity
        (done,) = _poll(tmp_path / "state" / "durable.sqlite3",
                        "SELECT COUNT(*) FROM instances WHERE parent_instance_id='crash-p' AND status='Completed'",
                        lambda row: 0 < row[0] < children)
        host.restart(kill=True)
        kills += 1
        kills += _kill_at_random_moments(host, "crash-p", rng, 0.02, 0.3)
        status = host.wait_for_instance("crash-p", timeout=120)
    finally:
        host.stop()
    assert status["runtimeStatus"] == "Completed", f"seed={seed}: {status}"
    assert status["output"] == 2 * sum(range(children)), f"seed={seed}"
    db = sqlite3.connect(str(tmp_path / "state" / "durable.sqlite3"))

    def events(iid):
        return [json.loads(t) for (t,) in db.execute("SELECT event FROM history WHERE instance_id=? ORDER BY idx",
                                                     (iid,))]

    parent = events("crash-p")
    created = Counter(e["EventId"] for e in parent if e["EventType"] == 7)
    completed = Counter(e["TaskScheduledId"] for e in parent if e["EventType"] == 8)
    assert sorted(created) == list(range(children)) and set(created.values()) == {1}, f"seed={seed}"
    assert sorted(completed) == list(range(children)) and set(completed.values()) == {1}, f"seed={seed}"
    for e in parent:
        if e["EventType"] == 7:
            kinds = Counter(c["EventType"] for c in events(e["InstanceId"]))
            # one ExecutionStarted, TimerCreated, TimerFired, TaskScheduled, TaskCompleted, ExecutionCompleted
            assert [kinds[k] for k in (0, 10, 11, 4, 5, 1)] == [1] * 6, f"seed={seed}: {e['InstanceId']} {kinds}"
    assert kills >= 1 and 0 < done < children, f"seed={seed}"


def _kill_at_random_moments(host, instance_id: str, rng: random.Random, low: float, high: float,
                            times: int = 2) -> int:
    """SIGKILL and restart the host up to ``times`` more, each after a random pause, unless the instance
    has completed by then; how many kills."""
    kills = 0
    for _ in range(times):
        time.sleep(rng.uniform(low, high))
        status = host.get_status(instance_id)
        if status and status["runtimeStatus"] == "Completed":
            break
        host.restart(kill=True)
        kills += 1
    return kills


def _poll(db_path, sql: str, accept, timeout: float = 60.0) -> tuple:
    """Poll the store (read-only) until ``accept(row of sql)``; returns that row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
            try:
                row = db.execute(sql).fetchone()
            finally:
                db.close()
        except sqlite3.Error:  # not created yet
            row = None
        if row is not None and accept(row):
            return row
        time.sleep(0.005)
    raise AssertionError(f"never saw an accepted row for {sql}")
