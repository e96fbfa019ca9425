"""SIGKILL devhost in the middle of a 30-instance batch, start it again: every instance finishes and
the emulator holds exactly one application, one service principal and one job per instance."""

from __future__ import annotations

import pytest
from support import Stack, make_batch, wait_until

pytestmark = pytest.mark.timeout(300)

COUNT = 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # fewer instances configured at once, so the kill finds some queued, some in setup, some watched
    running = Stack(tmp_path_factory.mktemp("workflow-crash"), time_scale=10.0,
                    env={"BATCH_MAX_IN_FLIGHT": "5"})
    yield running
    running.stop()


def test_sigkill_mid_batch_then_restart_finishes_every_instance_once(stack):
    body = make_batch("crash-030", COUNT, prefix="Crash")
    batch_id = stack.submit(body)

    def mid_batch():
        counts = stack.summary("crash-030").get("progress") or {}
        busy = counts.get("queued", 0) > 0 and counts.get("configuring", 0) > 0 and counts.get("monitoring", 0) > 0
        return counts if busy else None

    at_kill = wait_until(mid_batch, timeout=120, interval=0.05,
                         what="a batch with queued, configuring and monitored instances")
    stack.host.kill()
    assert not stack.host.is_running()
    stack.host.start()

    status = stack.wait(batch_id, timeout=240)
    assert status["runtimeStatus"] == "Completed"
    report = status["output"]
    assert report["counts"]["steadyState"] == COUNT, (at_kill, report["counts"])
    apps = stack.applications_by_name()
    sps = stack.service_principals_by_name()
    for instance in body["instances"]:
        name = instance["displayName"]
        assert apps[name] == 1, f"{name}: {apps[name]} applications"
        assert len(sps[name]) == 1, f"{name}: {len(sps[name])} service principals"
        assert len(stack.jobs_of(sps[name][0]["id"])) == 1, f"{name}: not exactly one job"
    summary = stack.summary("crash-030")
    assert {i["outcome"] for i in summary["instances"]} == {"steadyState"}
