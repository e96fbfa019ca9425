"""The real app in devhost with two worker processes (FUNCTIONS_WORKER_PROCESS_COUNT=2) on one tenant:
the Graph write limit is held by the app as a whole, not once per process (core/graph/write_limit.py).

The emulator throttles identity writes at 10 per second (a 1-s bucket, stricter than Graph's
150-s window) and the app's share GRAPH_WRITES_PER_SECOND is 10. Each worker process has its
own pacer; only the schedule in Azurite (core/graph/write_limit.py) keeps the two together under
the limit. With per-process pacing (the control) the same batch draws 429s.
"""

from __future__ import annotations

import pytest
from support import Stack, make_batch

pytestmark = pytest.mark.timeout(300)

COUNT = 10
FAULTS = {"throttling": {"writes": {"limit": 10, "windowSeconds": 1}}}
FAST_CYCLES = {"cycle_start_delay_seconds": 1.0, "initial_seconds_per_object_min": 0.05,
               "initial_seconds_per_object_max": 0.1, "minimum_cycle_seconds": 0.5}


def _run(tmp_path_factory, name: str, storage: str | None) -> tuple[dict, list[int], str]:
    env = {"FUNCTIONS_WORKER_PROCESS_COUNT": "2", "GRAPH_WRITES_PER_SECOND": "10", "VISIBILITY_WAIT_SECONDS": "5"}
    if storage:
        env["GRAPH_WRITE_LIMIT_STORAGE"] = storage
    stack = Stack(tmp_path_factory.mktemp(name), time_scale=1.0, faults=FAULTS, provisioning_settings=FAST_CYCLES,
                  env=env)
    try:
        batch_id = stack.submit(make_batch(name, COUNT, prefix=name))
        status = stack.wait(batch_id, timeout=240)
        writes = [e["status"] for e in stack.graph_requests(kind="graph") if e["method"] in ("POST", "PATCH", "PUT", "DELETE")]
        return status, writes, stack.host.log_text()
    finally:
        stack.stop()


def test_two_worker_processes_share_the_write_limit(tmp_path_factory):
    status, writes, log = _run(tmp_path_factory, "shared-limit", None)
    assert "Started 2 worker processes" in log
    assert status["runtimeStatus"] == "Completed"
    assert all(i["outcome"] == "steadyState" for i in status["output"]["instances"]), status["output"]
    assert len(writes) >= COUNT * 5 and writes.count(429) == 0, (len(writes), writes.count(429))


def test_the_control_two_processes_pacing_alone_draw_429s(tmp_path_factory):
    status, writes, _ = _run(tmp_path_factory, "local-limit", "none")
    assert status["runtimeStatus"] == "Completed"
    assert writes.count(429) > 0, "two processes at the full rate each must exceed the limit, or the test above proves nothing"
