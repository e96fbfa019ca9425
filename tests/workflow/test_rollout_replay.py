"""schema_rollout's verdicts (orchestrators/rollout.py), replayed by the real SDK on devhost's engine with
scripted activities: a failed apply, a quarantined job, a cycle that failed more objects than the one
before, a cycle that never ended within maxChecks - each a regression that stops the rollout before the
next wave until the resume event; a healthy wave; the dry-run plan."""

from __future__ import annotations

import asyncio
import json

import pytest
from replay_support import calls, output, run, script

pytestmark = pytest.mark.timeout(180)

PROFILE = "custom-scim.v1"
BEFORE = {"timeBegan": "2026-01-01T00:00:00Z", "timeEnded": "2026-01-01T00:10:00Z", "state": "Succeeded"}
AFTER = {"timeBegan": "2026-01-01T01:00:00Z", "timeEnded": "2026-01-01T01:10:00Z", "state": "Succeeded"}
OPTIONS = {"activityRetry": {"maxAttempts": 1}}


def _status(state: str, last: dict | None) -> dict:
    return {"ok": True, "jobId": "job1", "status": {"state": state, "jobId": "job1", "settled": True,
                                                    "code": "Active", "lastExecution": last}}


def _input(keys: list[str], canaries: list[str], **extra) -> dict:
    return {"rolloutId": "r1", "profile": PROFILE, "instances": [{"key": k, "servicePrincipalId": f"sp-{k}"}
                                                                 for k in keys],
            "canaries": canaries, "waveSize": 5, "pauseSeconds": 30, "maxChecks": 3, "dryRun": False,
            "options": OPTIONS, **extra}


def _custom(row) -> dict:
    value = json.loads(row.custom_status) if row and row.custom_status else None
    return json.loads(value) if isinstance(value, str) else (value or {})


async def _until_stopped(engine, iid: str) -> dict:
    for _ in range(600):
        custom = _custom(engine.get_instance(iid))
        if custom.get("phase") == "stopped":
            return custom
        await asyncio.sleep(0.05)
    raise AssertionError(f"the rollout did not stop: {custom}")


def _applied(payload, n):
    return {"ok": True, "servicePrincipalId": payload["servicePrincipalId"], "jobId": "job1", "profile": PROFILE,
            "changes": [{"field": "expression"}], "applied": True}


def test_a_failed_canary_apply_stops_before_the_wave_and_resume_goes_on(tmp_path):
    """Canary A: its apply fails -> stopped at wave 0, B untouched; after resume B's first read is not ok and
    its second still shows the old cycle (both: not yet), the third a new cycle with as many failures as before."""
    job_reads = {"sp-b": 0}

    def job_status(payload, n):
        sp = payload["servicePrincipalId"]
        if sp == "sp-a":
            return _status("SteadyState", BEFORE)
        job_reads["sp-b"] += 1
        return [_status("SteadyState", BEFORE),  # before the change
                {"ok": False, "error": {"kind": "permanent", "code": "Busy", "message": "x", "step": "s"}},
                _status("Running", BEFORE),
                _status("SteadyState", AFTER)][min(job_reads["sp-b"], 4) - 1]

    script(get_job_status=job_status,
           apply_schema_profile=lambda payload, n: _applied(payload, n) if payload["servicePrincipalId"] != "sp-a"
           else {"ok": False, "error": {"kind": "permanent", "code": "InvalidProfile", "message": "refused",
                                        "step": "apply_schema_profile"}},
           summarize_cycle=lambda payload, n: {"ok": True, "cycles": [{"failedObjects": 2, "removedObjects": 1}
                                                                      for _ in payload["windows"]]})

    async def scenario(engine):
        iid = await engine.start_orchestration("schema_rollout", _input(["a", "b"], ["a"]), instance_id="rollout-r1")
        stopped = await _until_stopped(engine, iid)
        applied_while_stopped = [p["servicePrincipalId"] for _, p in calls("apply_schema_profile")]
        await engine.raise_event(iid, "resume", json.dumps({"resumed": True}))
        return stopped, applied_while_stopped, await engine.wait_for_instance(iid, 60)

    stopped, applied_while_stopped, row = run(tmp_path, scenario)
    assert stopped["stopped"]["wave"] == 0 and stopped["stopped"]["kind"] == "canary"
    assert stopped["stopped"]["reasons"] == {"a": "apply failed: refused"}
    assert [w["status"] for w in stopped["waves"]] == ["regressed", "pending"]
    assert applied_while_stopped == ["sp-a"]  # the next wave is not touched while stopped
    assert row.status == "Completed"
    report = output(row)
    assert report["phase"] == "completed" and "resumedAt" in report["stopped"]
    b = report["waves"][1]["results"]["b"]
    assert report["waves"][1]["status"] == "done" and b["regression"] is None
    assert (b["failedBefore"], b["failedAfter"], b["cycleState"]) == (2, 2, "Succeeded")
    assert (b["removedBefore"], b["removedAfter"]) == (1, 1)  # as many removals as before: not a regression
    # both cycles read in one call, each over its own begin/end times
    (_, read), = calls("summarize_cycle")
    assert read["windows"] == [{"since": BEFORE["timeBegan"], "until": BEFORE["timeEnded"]},
                               {"since": AFTER["timeBegan"], "until": AFTER["timeEnded"]}]


def test_quarantine_more_failures_and_no_ended_cycle_are_regressions(tmp_path):
    reads: dict[str, int] = {}

    def job_status(payload, n):
        sp = payload["servicePrincipalId"]
        reads[sp] = reads.get(sp, 0) + 1
        if reads[sp] == 1:
            return _status("SteadyState", BEFORE)
        return {"sp-q": _status("Quarantined", BEFORE), "sp-m": _status("SteadyState", AFTER),
                "sp-s": _status("Running", {"timeBegan": AFTER["timeBegan"]})}[sp]

    script(get_job_status=job_status, apply_schema_profile=_applied,
           summarize_cycle=lambda payload, n: {"ok": True, "cycles": [
               {"failedObjects": 1 if w["since"] == BEFORE["timeBegan"] else 4} for w in payload["windows"]]})

    async def scenario(engine):
        iid = await engine.start_orchestration("schema_rollout", _input(["m", "q", "s", "z"], [], waveSize=3,
                                                                         maxChecks=2), instance_id="rollout-r2")
        stopped = await _until_stopped(engine, iid)
        await engine.terminate(iid, "cancelled")
        return stopped

    stopped = run(tmp_path, scenario)
    reasons = stopped["stopped"]["reasons"]
    assert reasons["q"] == "the job is Quarantined after the change"
    assert reasons["m"] == "4 objects failed in the cycle after the change, 1 before"
    assert reasons["s"] == "no provisioning cycle ended within 2 pauses of 30 s after the change"
    assert [w["status"] for w in stopped["waves"]] == ["regressed", "pending"]
    assert {p["servicePrincipalId"] for _, p in calls("apply_schema_profile")} == {"sp-m", "sp-q", "sp-s"}
    assert sum(1 for _, p in calls("get_job_status") if p["servicePrincipalId"] == "sp-s") == 3  # 1 + maxChecks


def test_removals_and_scoping_skips_beyond_the_threshold_are_regressions(tmp_path):
    """A profile whose scoping filter takes accounts away fails nothing: the cycle after it disables, deletes
    or skips them as out of scope. Beyond ``removalThreshold`` more than the cycle before, that is a regression."""
    reads: dict[str, int] = {}

    def job_status(payload, n):
        sp = payload["servicePrincipalId"]
        reads[sp] = reads.get(sp, 0) + 1
        return _status("SteadyState", BEFORE if reads[sp] == 1 else AFTER)

    after = {"sp-r": (3, 0), "sp-o": (0, 4), "sp-t": (1, 1), "sp-k": (0, 0)}  # (removed, scopedOut) after the change

    def cycle(payload, n):
        def one(window):
            removed, scoped = (0, 0) if window["since"] == BEFORE["timeBegan"] else after[payload["servicePrincipalId"]]
            return {"failedObjects": 0, "removedObjects": removed, "scopedOutObjects": scoped}
        return {"ok": True, "cycles": [one(w) for w in payload["windows"]],
                "complete": payload["servicePrincipalId"] != "sp-k"}

    script(get_job_status=job_status, apply_schema_profile=_applied, summarize_cycle=cycle)

    async def scenario(engine):
        iid = await engine.start_orchestration("schema_rollout", _input(["k", "o", "r", "t", "z"], [], waveSize=4,
                                                                         removalThreshold=2), instance_id="rollout-r4")
        stopped = await _until_stopped(engine, iid)
        await engine.terminate(iid, "cancelled")
        return stopped

    stopped = run(tmp_path, scenario)
    reasons = stopped["stopped"]["reasons"]
    assert set(reasons) == {"o", "r"}  # t: 2 = the threshold, k: nothing taken away
    assert reasons["r"].startswith("3 objects disabled, deleted or skipped as out of scope in the cycle after the "
                                   "change (3 removed, 0 scoped out), 0 before (removalThreshold 2)")
    assert "(0 removed, 4 scoped out)" in reasons["o"]
    results = stopped["waves"][0]["results"]
    assert (results["o"]["scopedOutBefore"], results["o"]["scopedOutAfter"]) == (0, 4)
    assert results["t"]["regression"] is None and results["k"]["logsComplete"] is False
    assert not [p for _, p in calls("apply_schema_profile") if p["servicePrincipalId"] == "sp-z"]


def test_a_canary_whose_test_user_fails_on_demand_stops_with_the_steps(tmp_path):
    """Canary a: provisionOnDemand of its test user fails at the export -> regression at once (its cycle is not
    waited for), with the step-by-step result; canary b has no test user (reported) and a healthy cycle."""
    user = "11111111-2222-3333-4444-555555555555"
    steps = [{"name": "EntryImportAdd", "status": "success"}, {"name": "EntryExportAdd", "status": "failure",
                                                               "description": "Failed to create User 'x'"}]
    script(get_job_status=lambda payload, n: _status("SteadyState", BEFORE if n <= 2 else AFTER),
           apply_schema_profile=_applied,
           fleet_instance_action=[{"ok": True, "instanceKey": "a", "outcome": "failed", "status": "failure",
                                   "errorCode": "SystemForCrossDomainIdentityManagementBadRequest",
                                   "detail": "provisionOnDemand User x: failure", "steps": steps}],
           summarize_cycle=[{"ok": True, "failedObjects": 0}])

    async def scenario(engine):
        iid = await engine.start_orchestration("schema_rollout", _input(
            ["a", "b", "c"], ["a", "b"], canaryTestUsers={"a": {"objectId": user, "objectTypeName": "User"}}),
            instance_id="rollout-r5")
        stopped = await _until_stopped(engine, iid)
        await engine.terminate(iid, "cancelled")
        return stopped

    stopped = run(tmp_path, scenario)
    assert set(stopped["stopped"]["reasons"]) == {"a"}
    assert stopped["stopped"]["reasons"]["a"] == ("provisionOnDemand of test user " + user + " failed at EntryExportAdd: "
                                                  "provisionOnDemand User x: failure")
    results = stopped["waves"][0]["results"]
    assert results["a"]["onDemand"]["steps"] == steps and results["a"]["onDemand"]["subject"]["objectId"] == user
    assert "no test user" in results["b"]["onDemand"]["skipped"] and results["b"]["regression"] is None
    (_, demanded), = calls("fleet_instance_action")
    assert (demanded["action"], demanded["instanceKey"], demanded["params"]["subject"]["objectId"]) == \
        ("provision-on-demand", "a", user)
    assert {p["servicePrincipalId"] for _, p in calls("apply_schema_profile")} == {"sp-a", "sp-b"}


def test_a_dry_run_plans_each_wave_and_applies_nothing(tmp_path):
    script(plan_schema_profile=lambda payload, n: {
        "ok": True, "servicePrincipalId": payload["servicePrincipalId"], "jobId": "job1", "profile": PROFILE,
        "changes": [{"sourceObjectName": "User", "field": "expression", "targetAttributeName": "userName",
                     "change": "changed"}, {"sourceObjectName": "User", "field": "scoping", "change": "added"}]}
        if payload["servicePrincipalId"] != "sp-c" else
        {"ok": False, "error": {"kind": "permanent", "code": "NotFound", "message": "gone", "step": "plan"}})

    async def scenario(engine):
        iid = await engine.start_orchestration("schema_rollout", _input(["a", "b", "c"], ["b"], waveSize=1,
                                                                         dryRun=True), instance_id="rollout-r3")
        return await engine.wait_for_instance(iid, 60)

    row = run(tmp_path, scenario)
    report = output(row)
    assert report["phase"] == "planned" and not calls("apply_schema_profile") and not calls("get_job_status")
    assert [(w["kind"], w["instances"], w["status"]) for w in report["waves"]] == \
        [("canary", ["b"], "planned"), ("wave", ["a"], "planned"), ("wave", ["c"], "planned")]
    assert report["waves"][0]["results"]["b"]["changes"] == ["User.expression.userName: changed",
                                                             "User.scoping: added"]
    assert report["waves"][2]["results"]["c"]["error"]["code"] == "NotFound"


def test_a_run_after_the_change_is_told_by_its_id_when_the_times_are_equal():
    """found by benchmarks/rollout_scale.py (instant cycles, 1 run in 4 hung): a cycle that began in the second
    the one before ended has times equal to the second-resolution end, and ``timeBegan > timeEnded`` never held."""
    from orchestrators.rollout import _newer

    prior = {"timeBegan": "2026-01-01T00:00:00Z", "timeEnded": "2026-01-01T00:00:01Z", "activityIdentifier": "a"}
    same_second = {"timeBegan": "2026-01-01T00:00:01Z", "timeEnded": "2026-01-01T00:00:01Z", "activityIdentifier": "b"}
    assert _newer(same_second, prior) and not _newer(prior, prior)
    assert not _newer({**same_second, "timeBegan": "2026-01-01T00:00:00Z"}, prior)  # began before the end: not after
    no_ids = [{k: v for k, v in e.items() if k != "activityIdentifier"} for e in (same_second, prior)]
    assert not _newer(*no_ids) and _newer({**no_ids[0], "timeBegan": "2026-01-01T00:00:02Z"}, no_ids[1])


def test_a_cycle_whose_provisioning_logs_cannot_be_read_is_a_regression(tmp_path):
    """found in review: a failed log read (e.g. 403 without AuditLog.Read.All) counted 0 failed / 0 removed on
    both sides, so the canary passed on no evidence; it stops the rollout, naming the read's error."""
    script(get_job_status=lambda payload, n: _status("SteadyState", BEFORE if n == 1 else AFTER),
           apply_schema_profile=_applied,
           summarize_cycle=lambda payload, n: {"ok": False, "error": {
               "kind": "permanent", "code": "Authorization_RequestDenied", "message": "Insufficient privileges",
               "step": "summarize_cycle"}})

    async def scenario(engine):
        iid = await engine.start_orchestration("schema_rollout", _input(["a", "b"], ["a"]), instance_id="rollout-r9")
        stopped = await _until_stopped(engine, iid)
        await engine.terminate(iid, "cancelled")
        return stopped

    stopped = run(tmp_path, scenario)
    assert stopped["stopped"]["wave"] == 0 and set(stopped["stopped"]["reasons"]) == {"a"}
    assert stopped["stopped"]["reasons"]["a"] == ("the provisioning logs of the cycles could not be read: "
                                                  "Insufficient privileges")
    assert stopped["waves"][0]["results"]["a"]["logsComplete"] is False
    assert not [p for _, p in calls("apply_schema_profile") if p["servicePrincipalId"] == "sp-b"]
