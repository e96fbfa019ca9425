"""``BATCH_MAX_IN_FLIGHT`` bounds the instances being *configured* (Graph writes), not the ones whose
jobs are being watched: slow initial cycles must not hold back the rest of the batch."""

from __future__ import annotations

import pytest
from support import Stack, make_batch, wait_until

pytestmark = pytest.mark.timeout(120)

BOUND = 2
COUNT = 6


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # the slow target's initial cycle takes minutes of simulated time: every job stays "running"
    running = Stack(tmp_path_factory.mktemp("workflow-bound"), time_scale=5.0,
                    env={"BATCH_MAX_IN_FLIGHT": str(BOUND)})
    yield running
    running.stop()


def test_setup_is_bounded_and_monitoring_is_not(stack):
    stack.submit(make_batch("bound-006", COUNT, prefix="Bounded", target="slow"))
    samples: list[dict] = []

    def all_monitored():
        # the summary's progress: a batch over sub-batches adds up its running slices' own counts
        counts = stack.summary("bound-006").get("progress")
        if counts:
            samples.append(counts)
        return counts if counts and counts["monitoring"] == COUNT else None

    wait_until(all_monitored, timeout=90, interval=0.05, what="every instance configured and watched")
    assert max(s["configuring"] for s in samples) <= BOUND
    assert any(s["configuring"] == BOUND for s in samples), "the bound was never reached"
    assert any(s["queued"] > 0 for s in samples)
    summary = stack.summary("bound-006")
    assert {i["step"] for i in summary["instances"]} == {"monitor_job"}
