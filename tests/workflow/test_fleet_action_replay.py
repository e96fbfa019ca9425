"""``fleet_action`` replayed by the real SDK on devhost's engine with a scripted activity: bounded
fan-out, a throttled target waited out on a durable timer, a refused target reported, one result
per target in target order."""

from __future__ import annotations

import pytest
from replay_support import calls, output, run, script

from devhost.durable import history as h

pytestmark = pytest.mark.timeout(120)

THROTTLED = {"ok": False, "error": {"kind": "throttled", "code": "TooManyRequests", "retryAfterSeconds": 5.0,
                                    "message": "throttled", "step": "fleet_instance_action"}}
NOT_OURS = {"ok": False, "error": {"kind": "permanent", "code": "NotOurs", "message": "not our tags",
                                   "step": "fleet_instance_action"}}


def _answer(payload: dict, n: int) -> dict:
    sp = payload["servicePrincipalId"]
    if sp == "sp3":
        return NOT_OURS
    if sp == "sp2" and [p["servicePrincipalId"] for _, p in calls("fleet_instance_action")].count("sp2") == 1:
        return THROTTLED  # its first call
    return {"ok": True, "instanceKey": payload["instanceKey"], "servicePrincipalId": sp, "jobId": f"job-{sp}",
            "action": payload["action"], "outcome": "done", "detail": "paused"}


def test_fleet_action_fans_out_bounded_and_reports_each_target(tmp_path):
    script(fleet_instance_action=_answer)
    targets = [{"instanceKey": f"k{i}", "servicePrincipalId": f"sp{i}"} for i in (1, 2, 3)]

    async def scenario(engine):
        iid = await engine.start_orchestration("fleet_action", {
            "actionId": "fleet-action:t", "action": "pause", "targets": targets, "maxInFlight": 2,
            "selector": {"env": "test"}}, instance_id="fleet-action:t")
        return await engine.wait_for_instance(iid, 60), engine.get_history(iid)

    row, history = run(tmp_path, scenario)
    assert row.status == "Completed"
    report = output(row)
    assert [r["servicePrincipalId"] for r in report["results"]] == ["sp1", "sp2", "sp3"]
    assert report["counts"] == {"done": 2, "refused": 1}
    assert report["results"][2]["detail"].startswith("NotOurs")
    sent = [p["servicePrincipalId"] for _, p in calls("fleet_instance_action")]
    assert sorted(sent) == ["sp1", "sp2", "sp2", "sp3"]  # the throttled target called again, no other
    assert any(ev["EventType"] == h.TIMER_CREATED for ev in history)  # waited on a durable timer
    scheduled = [ev for ev in history if ev["EventType"] == h.TASK_SCHEDULED]
    assert len(scheduled) == 4


def test_a_target_whose_activity_keeps_failing_is_reported_failed_and_the_others_done(tmp_path):
    def answer(payload: dict, n: int) -> dict:
        if payload["servicePrincipalId"] == "bad":
            raise RuntimeError("Graph unreachable")
        return {"ok": True, "servicePrincipalId": payload["servicePrincipalId"], "outcome": "done", "detail": "ok"}

    script(fleet_instance_action=answer)
    targets = [{"instanceKey": "k1", "servicePrincipalId": "bad"}, {"instanceKey": "k2", "servicePrincipalId": "good"}]

    async def scenario(engine):
        iid = await engine.start_orchestration("fleet_action", {
            "actionId": "fleet-action:f", "action": "resume", "targets": targets, "maxInFlight": 4},
            instance_id="fleet-action:f")
        return await engine.wait_for_instance(iid, 60)

    row = run(tmp_path, scenario)
    assert row.status == "Completed"
    report = output(row)
    assert report["counts"] == {"done": 1, "failed": 1}
    assert report["results"][0]["outcome"] == "failed" and "Graph unreachable" in report["results"][0]["detail"]
