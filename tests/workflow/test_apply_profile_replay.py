"""apply_profile (orchestrators/apply_profile.py) replayed on devhost's engine with scripted activities:
a refused plan writes nothing and returns its field-level problems, a dry run plans only, a failed
write is reported, a good one returns what was written with the plan's job id passed on."""

from __future__ import annotations

import pytest
from replay_support import calls, output, run, script

pytestmark = pytest.mark.timeout(120)

PROFILE = "custom-scim.v1"
PLAN = {"ok": True, "servicePrincipalId": "sp1", "jobId": "job7", "profile": PROFILE,
        "changes": [{"field": "expression"}, {"field": "scoping"}]}
REFUSED = {"ok": False, "error": {"kind": "permanent", "code": "InvalidProfile", "message": "2 problems",
                                  "step": "plan_schema_profile",
                                  "problems": [{"path": "mappings[0].expression", "message": "unknown function"}]}}


def _run(tmp_path, **extra):
    async def scenario(engine):
        iid = await engine.start_orchestration("apply_profile", {"servicePrincipalId": "sp1", "profile": PROFILE,
                                                                 "options": {"activityRetry": {"maxAttempts": 1}}, **extra},
                                               instance_id="apply-1")
        return await engine.wait_for_instance(iid, 60)

    row = run(tmp_path, scenario)
    assert row.status == "Completed"
    return output(row)


def test_a_refused_plan_writes_nothing_and_names_the_problems(tmp_path):
    script(plan_schema_profile=[REFUSED])
    result = _run(tmp_path)
    assert result["applied"] is False and result["error"]["code"] == "InvalidProfile"
    assert result["servicePrincipalId"] == "sp1" and result["profile"] == PROFILE
    assert not calls("apply_schema_profile")


def test_a_dry_run_returns_the_plan_only(tmp_path):
    script(plan_schema_profile=[PLAN])
    result = _run(tmp_path, dryRun=True)
    assert result["dryRun"] is True and result["applied"] is False and len(result["changes"]) == 2
    assert not calls("apply_schema_profile")


def test_a_failed_write_is_reported_and_a_good_one_returns_what_was_written(tmp_path):
    script(plan_schema_profile=[PLAN], apply_schema_profile=[{"ok": False, "error": {
        "kind": "permanent", "code": "Forbidden", "message": "no permission", "step": "apply_schema_profile"}}])
    failed = _run(tmp_path / "failed")
    assert failed["applied"] is False and failed["error"]["code"] == "Forbidden"
    ((_, sent),) = calls("apply_schema_profile")
    assert sent["jobId"] == "job7" and sent["profile"] == PROFILE

    script(plan_schema_profile=[PLAN], apply_schema_profile=[{**PLAN, "applied": True, "restarted": True,
                                                               "recorded": True}])
    done = _run(tmp_path / "done")
    assert (done["applied"], done["restarted"], done["recorded"]) == (True, True, True)


def _boom(payload, n):
    raise RuntimeError("the activity failed every attempt")


THROTTLED = {"ok": False, "error": {"kind": "throttled", "code": "TooManyRequests", "retryAfterSeconds": 5,
                                    "message": "slow down", "step": "plan_schema_profile"}}


@pytest.mark.parametrize("answer,code,kind,says", [
    (_boom, "TransientErrorsExhausted", "transient", "the activity failed every attempt"),
    (["not a result"], "InvalidActivityResult", "permanent", "plan_schema_profile returned str"),
    ([THROTTLED], "TooManyRequests", "throttled", "still throttled after 2 waits"),
])
def test_a_step_that_never_answers_well_is_a_reported_failure(tmp_path, answer, code, kind, says):
    """call_step (orchestrators/activity_calls.py): retries exhausted, a result that is not a step result, and a
    throttled step past maxThrottleWaits each end as that step's error in the output - never a failed orchestration."""
    script(plan_schema_profile=answer)
    result = _run(tmp_path, options={"maxThrottleWaits": 2,
                                     "activityRetry": {"maxAttempts": 2, "firstRetryIntervalMs": 1000}})
    error = result["error"]
    assert (error["code"], error["kind"], error["step"]) == (code, kind, "plan_schema_profile")
    assert says in error["message"] and result["applied"] is False
    expected_calls = {"TransientErrorsExhausted": 2, "InvalidActivityResult": 1, "TooManyRequests": 3}[code]
    assert len(calls("plan_schema_profile")) == expected_calls and not calls("apply_schema_profile")
