"""``monitor_job`` keeps its history bounded: after 100+ polls of a job that never settles, the
current execution holds only a few polls' worth of events (it continued as new every 10 polls)."""

from __future__ import annotations

import pytest
from support import Stack, make_batch

from core import model

pytestmark = pytest.mark.timeout(240)

POLLS_PER_GENERATION = 10
#: events one generation may hold: per poll a task + a timer (scheduled/completed folded or not),
#: plus the start/completion events; far below what 100 polls in one execution would need (400+)
MAX_EVENTS = 8 * POLLS_PER_GENERATION + 10


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # devhost's virtual clock fires durable timers at once; the emulator's clock runs in real time,
    # so the slow target's initial cycle (60 simulated s per object) stays unfinished for every poll
    running = Stack(tmp_path_factory.mktemp("workflow-monitor"), time_scale=1.0, virtual_clock=True,
                    env={"MONITOR_FIRST_POLL_SECONDS": "1", "MONITOR_MAX_POLL_SECONDS": "1",
                         "MONITOR_DEADLINE_SECONDS": "105",
                         "MONITOR_POLLS_PER_GENERATION": str(POLLS_PER_GENERATION)})
    yield running
    running.stop()


def test_history_stays_bounded_after_100_polls(stack):
    body = make_batch("monitor-100", 1, prefix="Slow", target="slow")
    batch_id = stack.submit(body)
    status = stack.wait(batch_id, timeout=200)
    outcome = status["output"]["instances"][0]
    assert outcome["outcome"] == "timedOut", outcome
    assert outcome["polls"] >= 100
    key = model.instance_key(body["instances"][0]["displayName"])
    monitor_id = f"{model.child_instance_id(batch_id, key)}:monitor"
    monitor = stack.host.get_status(monitor_id, show_history=True)
    assert monitor["runtimeStatus"] == "Completed"
    assert monitor["output"]["polls"] == outcome["polls"]
    events = monitor.get("historyEvents") or []
    assert 0 < len(events) <= MAX_EVENTS, f"{len(events)} events in the last generation"
    status_reads = stack.graph_requests(method="GET", pathContains="/synchronization/jobs/")
    assert len(status_reads) >= 100, "every poll read the job from Graph"
