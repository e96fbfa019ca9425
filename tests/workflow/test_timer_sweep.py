"""The timer trigger starts ``health_sweep`` on the ``HEALTH_SWEEP_SCHEDULE`` setting, under one
instance id, and a tick that finds a sweep still running starts nothing."""

from __future__ import annotations

import pytest
from support import Stack, make_batch, wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("workflow-timer"), time_scale=30.0,
                    env={"HEALTH_SWEEP_SCHEDULE": "*/2 * * * * *"})  # every 2 seconds
    yield running
    running.stop()


def test_scheduled_sweeps_run_under_one_id_and_report_the_fleet(stack):
    batch_id = stack.submit(make_batch("timer-sweep-1", 2, prefix="Swept"))
    assert stack.wait(batch_id, timeout=120)["runtimeStatus"] == "Completed"

    def sweep_saw_both_healthy():
        # a sweep that started while the batch ran may still see a job in its first cycle: wait for
        # a later one (the schedule keeps starting them under the same id)
        status = stack.host.get_status("health-sweep")
        if status and status["runtimeStatus"] == "Completed" and status["output"]["counts"]["healthy"] == 2:
            return status
        return None

    status = wait_until(sweep_saw_both_healthy, timeout=60, what="a scheduled sweep that sees the batch healthy")
    assert status["output"]["total"] == 2 and status["output"]["unhealthy"] == []
    log = stack.host.log_text()
    assert "health sweep health-sweep started" in log
    starts = log.count("health sweep health-sweep started")
    completions = log.count("Orchestrator 'health_sweep' completed")
    assert starts >= 2 and completions >= starts - 1, "every started sweep completes before the next starts"
