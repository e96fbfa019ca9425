"""Role-import templates (AWS Single-Account Access) in the orchestrators, replayed by the real SDK on
devhost's engine with scripted activities: the assignment naming an imported role waits for steady
state, and the monitor reports rolesImported (docs/architecture.md §3)."""

from __future__ import annotations

import pytest
from replay_support import calls, output, run, script

pytestmark = pytest.mark.timeout(180)

RUNNING = {"ok": True, "jobId": "job1", "status": {"state": "Running", "settled": False, "code": "Active"}}
STEADY = {"ok": True, "jobId": "job1", "status": {"state": "SteadyState", "settled": True, "code": "Active"}}
FAST_POLLS = {"pollFirstInterval": 10, "pollMaxInterval": 10, "pollsPerExecution": 100}
THROTTLED = {"ok": False, "error": {"kind": "throttled", "code": "TooManyRequests", "retryAfterSeconds": 5.0,
                                    "message": "throttled", "step": "assign_principals"}}
PENDING = {"users": [], "groups": ["AWS Admins"], "appRole": "Admin,WAAD"}


def _monitor(tmp_path, role_import: dict, assign_answers) -> dict:
    script(get_job_status=[RUNNING, STEADY], assign_principals=assign_answers)

    async def scenario(engine):
        iid = await engine.start_orchestration("monitor_job", {
            "servicePrincipalId": "sp1", "jobId": "job1", "startedAt": "2026-11-27T10:00:00Z",
            "deadline": "2099-01-01T00:00:00Z", "options": FAST_POLLS, "roleImport": role_import},
            instance_id="monitor-roles")
        return await engine.wait_for_instance(iid, 60)

    return output(run(tmp_path, scenario))


def test_monitor_assigns_the_named_role_at_steady_state_and_reports_the_count(tmp_path):
    done = {"ok": True, "assigned": 1, "alreadyAssigned": 0, "rolesImported": 3}
    result = _monitor(tmp_path, PENDING, [THROTTLED, done])
    assert result["outcome"] == "steadyState" and result["rolesImported"] == 3, result
    sent = [payload for _, payload in calls("assign_principals")]
    assert len(sent) == 2  # the throttled call was waited out and made again
    assert sent[-1] == {"servicePrincipalId": "sp1", "countImportedRoles": True, "users": [],
                        "groups": ["AWS Admins"], "appRole": "Admin,WAAD"}
    assert len(calls("get_job_status")) == 2  # not before steady state


def test_a_missing_role_fails_the_instance_with_the_step_error(tmp_path):
    missing = {"ok": False, "error": {"kind": "permanent", "code": "AppRoleNotFound", "step": "assign_principals",
                                      "message": "no enabled app role 'Billing,WAAD' after the job's first cycle "
                                                 "imported 3 roles"}}
    result = _monitor(tmp_path, {**PENDING, "appRole": "Billing,WAAD"}, [missing])
    assert result["outcome"] == "failed" and result["rolesImported"] is None
    assert result["error"]["code"] == "AppRoleNotFound" and "imported 3 roles" in result["reason"]


def test_setup_defers_a_named_role_and_hands_it_to_the_monitor(tmp_path):
    script(ensure_application=[{"ok": True, "applicationId": "app1", "appId": "a1", "servicePrincipalId": "sp1",
                                "created": True, "createdHere": True, "tagged": False}],
           wait_until_visible=[{"ok": True, "visible": True, "reads": 2, "tagged": True}],
           ensure_job=[{"ok": True, "jobId": "job1", "created": True}],
           validate_credentials=[{"ok": True, "secretVersions": {}}],
           save_secrets=[{"ok": True, "secretVersions": {}}],
           start_job=[{"ok": True, "started": True, "alreadyRunning": False, "startedAt": "2026-11-27T10:00:00Z"}],
           get_job_status=[STEADY],
           assign_principals=[{"ok": True, "assigned": 1, "alreadyAssigned": 0, "rolesImported": 2}])

    async def scenario(engine):
        iid = await engine.start_orchestration("provision_instance", {
            "batchId": "b", "options": FAST_POLLS,
            "instance": {"key": "k1", "displayName": "AWS Account", "templateId": "t1", "jobKind": "roleImport",
                         "credentials": {}, "assignments": PENDING}}, instance_id="inst-roles")
        return await engine.wait_for_instance(iid, 60)

    result = output(run(tmp_path, scenario))
    assert result["outcome"] == "steadyState" and result["jobKind"] == "roleImport" and result["rolesImported"] == 2
    assert "roleImport" not in result  # the monitor's input, not part of the report
    order = [name for name, _ in calls() if name in ("start_job", "get_job_status", "assign_principals")]
    assert order == ["start_job", "get_job_status", "assign_principals"]  # assigned only after steady state
    assert calls("assign_principals")[0][1]["appRole"] == "Admin,WAAD"
