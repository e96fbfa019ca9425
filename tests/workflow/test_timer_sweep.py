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
    done = stack.wait(batch_id, timeout=120)
    assert done["runtimeStatus"] == "Completed"
    assert [i["outcome"] for i in done["output"]["instances"]] == ["steadyState", "steadyState"]

    def sweep_started_after_the_batch():
        # Sweeps start every 2 s, also while the batch runs: one started just before the batch
        # completed may have read a job still in its first cycle ("running") - that was the flaky
        # failure. Only a sweep created after the batch completed must see both jobs healthy
        # (Durable times have 1-second resolution, hence a later second).
        status = stack.host.get_status("health-sweep")
        if status and status["runtimeStatus"] == "Completed" and status["createdTime"] > done["lastUpdatedTime"]:
            return status
        return None

    status = wait_until(sweep_started_after_the_batch, timeout=60, what="a scheduled sweep started after the batch")
    assert status["output"]["total"] == 2 and status["output"]["counts"]["healthy"] == 2
    assert status["output"]["unhealthy"] == []
    log = stack.host.log_text()
    assert "health sweep health-sweep started" in log
    starts = log.count("health sweep health-sweep started")
    completions = log.count("Orchestrator 'health_sweep' completed")
    assert starts >= 2 and completions >= starts - 1, "every started sweep completes before the next starts"
