"""The orchestrators' waiting rules, replayed by the real SDK on devhost's engine with scripted activities.

docs/architecture.md §3: a throttled result is waited out on durable timers and the call made again; the
monitor never waits past its deadline, and a status read that fails for a passing reason (Graph
busy or briefly unreachable) is tried again at the next poll instead of failing the instance.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from replay_support import app, calls, output, run, script

from devhost.durable import history as h

pytestmark = pytest.mark.timeout(180)

RUNNING = {"ok": True, "jobId": "job1", "status": {"state": "Running", "settled": False, "code": "Active"}}
STEADY = {"ok": True, "jobId": "job1", "status": {"state": "SteadyState", "settled": True, "code": "Active"}}
CRED_QUARANTINE = {"ok": True, "jobId": "job1", "status": {
    "state": "Quarantined", "settled": True, "code": "Quarantine",
    "quarantine": {"reason": "EncounteredQuarantineException", "credentialProblem": True}}}
THROTTLED = {"ok": False, "error": {"kind": "throttled", "code": "TooManyRequests", "retryAfterSeconds": 20.0,
                                    "message": "throttled", "step": "get_job_status"}}
UNREACHABLE = {"ok": False, "error": {"kind": "transient", "code": "TransientErrorsExhausted",
                                      "message": "Graph unreachable", "step": "get_job_status"}}
FAST_POLLS = {"pollFirstInterval": 10, "pollMaxInterval": 10, "pollsPerExecution": 100}


REPORT_SCRIPT = dict(stage_sweep_report=lambda payload, n: {"ok": True, "block": payload["block"]},
                     commit_sweep_report=lambda payload, n: {"ok": True, "container": "health-sweep-reports",
                                                             "blobName": payload["blobName"], "url": "http://blob"})


def _pages(history: list[dict]) -> list[str]:
    return [ev["InstanceId"] for ev in history if ev["EventType"] == h.SUB_ORCHESTRATION_CREATED]


def test_health_sweep_waits_out_a_throttled_status_read(tmp_path):
    script(
        list_managed_instances=[{"ok": True, "instances": [
            {"servicePrincipalId": "sp1", "displayName": "One", "credentials": {"SecretToken": {"keyVaultSecret": "s"}}},
            {"servicePrincipalId": "sp2", "displayName": "Two"}]}],
        get_job_status=lambda payload, n: (THROTTLED if n == 1 else CRED_QUARANTINE)
        if payload["servicePrincipalId"] == "sp1" else STEADY,
        restart_quarantined_job=[{"ok": True, "jobId": "job1", "restarted": True, "reason": "restarted"}],
        **REPORT_SCRIPT,
    )

    async def scenario(engine):
        iid = await engine.start_orchestration("health_sweep", {"options": {"restartCredentialQuarantine": True,
                                                                            "sweepPageSize": 200}},
                                               instance_id="sweep-throttled")
        row = await engine.wait_for_instance(iid, 60)
        (page,) = _pages(engine.get_history(iid))
        return row, engine.get_history(page)

    row, page_history = run(tmp_path, scenario)
    assert row.status == "Completed"
    report = output(row)
    assert [p["servicePrincipalId"] for _, p in calls("get_job_status")].count("sp1") == 2
    assert report["counts"]["quarantined"] == 1 and report["counts"]["unreadable"] == 0, report["counts"]
    assert report["counts"]["healthy"] == 1
    assert report["restarted"] == [{"servicePrincipalId": "sp1", "restarted": True, "reason": "restarted"}]
    assert any(ev["EventType"] == h.TIMER_CREATED for ev in page_history)  # the wait was a durable timer
    # the blob's line for sp1 also says what the restart rule did
    ((_, staged),) = calls("stage_sweep_report")
    lines = {e["servicePrincipalId"]: e for e in staged["entries"]}
    assert lines["sp1"]["restart"] == {"restarted": True, "reason": "restarted"} and "restart" not in lines["sp2"]


def test_health_sweep_shards_the_fleet_into_pages_and_links_the_blob_report(tmp_path):
    """Three pages through the listing's cursor: each page is its own sub-orchestration (its own history),
    the parent holds no instance list, the tallies add up, the output keeps at most sweepMaxReported
    unhealthy entries and links the blob that every page staged a block of."""
    fleet = [f"sp{i}" for i in range(7)]
    pages = {None: (fleet[0:3], "https://graph.test/v1.0/servicePrincipals?$skiptoken=A"),
             "https://graph.test/v1.0/servicePrincipals?$skiptoken=A": (fleet[3:6], "https://graph.test/p3"),
             "https://graph.test/p3": (fleet[6:], None)}

    def listing(payload, n):
        ids, next_cursor = pages[payload.get("cursor")]
        assert payload["pageSize"] == 3
        return {"ok": True, "instances": [{"servicePrincipalId": i, "displayName": i.upper()} for i in ids],
                "nextCursor": next_cursor}

    unhealthy = {"sp1", "sp4", "sp6"}
    script(list_managed_instances=listing,
           get_job_status=lambda payload, n: CRED_QUARANTINE if payload["servicePrincipalId"] in unhealthy else STEADY,
           **REPORT_SCRIPT)

    async def scenario(engine):
        iid = await engine.start_orchestration("health_sweep", {"options": {"sweepPageSize": 3, "sweepMaxReported": 2}},
                                               instance_id="sweep-pages")
        row = await engine.wait_for_instance(iid, 60)
        return row, engine.get_history(iid), {p: engine.get_history(p) for p in _pages(engine.get_history(iid))}

    row, history, page_histories = run(tmp_path, scenario)
    assert row.status == "Completed"
    report = output(row)
    assert report["pages"] == 3 and report["total"] == 7
    assert report["counts"]["healthy"] == 4 and report["counts"]["quarantined"] == 3
    assert [u["servicePrincipalId"] for u in report["unhealthy"]] == ["sp1", "sp4"]  # capped at 2
    assert report["unhealthyOmitted"] == 1
    assert len(page_histories) == 3 and all(p.startswith("sweep-pages:") for p in page_histories)
    # every instance was listed and read by exactly one page; the parent itself neither listed nor read
    assert sorted(p["servicePrincipalId"] for _, p in calls("get_job_status")) == fleet
    parent_text = json.dumps(history)
    assert "sp5" not in parent_text and "SP5" not in parent_text  # a healthy instance never enters the parent
    for page_id, events in page_histories.items():
        assert '"sp' in json.dumps(events)
    staged = calls("stage_sweep_report")
    assert sorted(p["block"] for _, p in staged) == [0, 1, 2]
    assert sum(len(p["entries"]) for _, p in staged) == 7  # the full report holds the healthy ones too
    blob_names = {p["blobName"] for _, p in staged}
    ((_, committed),) = calls("commit_sweep_report")
    assert blob_names == {committed["blobName"]} and committed["blocks"] == [0, 1, 2]
    assert report["report"] == {"container": "health-sweep-reports", "blobName": committed["blobName"],
                                "url": "http://blob"}


def test_a_page_whose_report_block_went_missing_is_swept_again_for_its_lines_only(tmp_path):
    pages = {None: (["sp0", "sp1"], "https://graph.test/next"), "https://graph.test/next": (["sp2"], None)}

    def listing(payload, n):
        ids, next_cursor = pages[payload.get("cursor")]
        return {"ok": True, "instances": [{"servicePrincipalId": i, "displayName": i} for i in ids],
                "nextCursor": next_cursor}

    def commit(payload, n):  # the first commit finds page 1's block gone (a storage crash lost it)
        if n == 1:
            return {"ok": True, "missing": [1]}
        return {"ok": True, "container": "c", "blobName": payload["blobName"], "url": "http://blob"}

    script(list_managed_instances=listing, get_job_status=lambda payload, n: CRED_QUARANTINE,
           stage_sweep_report=lambda payload, n: {"ok": True, "block": payload["block"]},
           commit_sweep_report=commit, restart_quarantined_job=[{"ok": True, "restarted": False, "reason": "no"}])

    async def scenario(engine):
        iid = await engine.start_orchestration("health_sweep", {"options": {"sweepPageSize": 2,
                                                                            "restartCredentialQuarantine": True}},
                                               instance_id="sweep-lost-block")
        return await engine.wait_for_instance(iid, 60)

    row = run(tmp_path, scenario)
    assert row.status == "Completed"
    report = output(row)
    assert report["total"] == 3 and report["counts"]["quarantined"] == 3  # counted once, not again
    assert report["report"] == {"container": "c", "blobName": report["report"]["blobName"], "url": "http://blob"}
    assert [p["block"] for _, p in calls("stage_sweep_report")] == [0, 1, 1]
    assert [p.get("cursor") for _, p in calls("list_managed_instances")] == [None, "https://graph.test/next",
                                                                              "https://graph.test/next"]
    assert len(calls("restart_quarantined_job")) == 3  # the second pass over page 1 restarts nothing
    assert [p["blocks"] for _, p in calls("commit_sweep_report")] == [[0, 1], [0, 1]]


def test_an_empty_fleet_is_one_empty_page_and_an_empty_report(tmp_path):
    script(list_managed_instances=[{"ok": True, "instances": [], "nextCursor": None}], **REPORT_SCRIPT)

    async def scenario(engine):
        iid = await engine.start_orchestration("health_sweep", {"options": {"sweepPageSize": 200}},
                                               instance_id="sweep-empty")
        return await engine.wait_for_instance(iid, 60)

    row = run(tmp_path, scenario)
    assert row.status == "Completed"
    report = output(row)
    assert report["total"] == 0 and report["pages"] == 1 and report["unhealthy"] == []
    assert calls("stage_sweep_report") == [] and calls("get_job_status") == []
    ((_, committed),) = calls("commit_sweep_report")
    assert committed["blocks"] == [] and report["report"]["blobName"] == committed["blobName"]


def _monitor(tmp_path, statuses, deadline_seconds: int, provisioning_errors=None):
    script(get_job_status=statuses, get_provisioning_errors=provisioning_errors or [{"ok": True, "errors": []}])
    times: dict[str, dt.datetime] = {}

    async def scenario(engine):
        start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=engine.clock.offset)
        times["deadline"] = start + dt.timedelta(seconds=deadline_seconds)
        iid = await engine.start_orchestration("monitor_job", {
            "servicePrincipalId": "sp1", "jobId": "job1", "startedAt": start.isoformat(),
            "deadline": times["deadline"].isoformat().replace("+00:00", "Z"), "options": FAST_POLLS},
            instance_id="monitor")
        return await engine.wait_for_instance(iid, 60), engine.get_history(iid)

    row, history = run(tmp_path, scenario)
    fires = [dt.datetime.fromisoformat(ev["FireAt"].replace("Z", "+00:00"))
             for ev in history if ev["EventType"] == h.TIMER_CREATED]
    return output(row), fires, times["deadline"]


def test_monitor_never_waits_past_its_deadline_while_throttled(tmp_path):
    result, fires, deadline = _monitor(tmp_path, lambda payload, n: RUNNING if n <= 3 else THROTTLED, 30)
    assert result["outcome"] == "timedOut", result
    assert result["status"]["state"] == "Running"  # the last status read, not nothing
    assert max(fires) <= deadline + dt.timedelta(seconds=1), f"a timer fires {max(fires) - deadline} after"


def test_monitor_reads_again_after_a_passing_failure(tmp_path):
    result, _, _ = _monitor(tmp_path, [RUNNING, UNREACHABLE, THROTTLED, STEADY], 3600)
    assert result["outcome"] == "steadyState", result
    assert len(calls("get_job_status")) >= 4


#: steady state reached by a cycle that failed objects (Graph quarantines for that only past 5,000 failures)
STEADY_WITH_ERRORS = {"ok": True, "jobId": "job1", "status": {
    "state": "SteadyState", "settled": True, "code": "Active",
    "lastExecution": {"state": "EntryLevelErrors", "timeBegan": "2100-01-01T10:00:00Z",
                      "timeEnded": "2100-01-01T10:05:00Z", "error": None}}}
CYCLE_ERRORS = {"ok": True, "errors": [{"status": "failure", "errorCode": "E1", "reason": "target said no"}],
                "failedObjects": 2, "failures": 2, "topErrorCodes": [{"code": "E1", "count": 2, "reason": "no"}],
                "since": "2100-01-01T10:00:00Z", "pages": 1, "complete": True}
LOGS_THROTTLED = {"ok": False, "error": {"kind": "throttled", "code": "TooManyRequests", "retryAfterSeconds": 5.0,
                                         "message": "throttled", "step": "get_provisioning_errors"}}


def test_steady_state_with_failed_objects_reads_that_cycles_errors(tmp_path):
    result, _, _ = _monitor(tmp_path, [RUNNING, STEADY_WITH_ERRORS], 3600, [LOGS_THROTTLED, CYCLE_ERRORS])
    assert result["outcome"] == "steadyState", result
    assert result["failedObjects"] == 2 and result["topErrorCodes"] == CYCLE_ERRORS["topErrorCodes"]
    assert result["provisioningErrors"] == CYCLE_ERRORS["errors"]
    assert result["reason"] == "steady state with 2 failed objects: E1 x2"
    # the cycle's window from the job status: timeBegan to a second past timeEnded; the 429 was waited out
    requests = [payload for _, payload in calls("get_provisioning_errors")]
    assert len(requests) == 2
    assert requests[-1]["since"].startswith("2100-01-01T10:00:00") and requests[-1]["until"].startswith(
        "2100-01-01T10:05:01")


def test_a_clean_steady_state_reads_no_provisioning_logs(tmp_path):
    clean = {"ok": True, "jobId": "job1", "status": {**STEADY_WITH_ERRORS["status"], "lastExecution": {
        **STEADY_WITH_ERRORS["status"]["lastExecution"], "state": "Succeeded"}}}
    result, _, _ = _monitor(tmp_path, [clean], 3600, [CYCLE_ERRORS])
    assert result["outcome"] == "steadyState" and result["reason"] is None and "failedObjects" not in result
    assert calls("get_provisioning_errors") == []


def test_a_timed_out_job_reports_the_errors_since_it_started(tmp_path):
    result, _, _ = _monitor(tmp_path, lambda payload, n: RUNNING, 20, [CYCLE_ERRORS])
    assert result["outcome"] == "timedOut" and result["failedObjects"] == 2
    (request,) = [payload for _, payload in calls("get_provisioning_errors")]
    assert "until" not in request  # no cycle completed: from our start on


def test_monitor_gives_up_after_three_passing_failures_in_a_row(tmp_path):
    result, _, _ = _monitor(tmp_path, [RUNNING, UNREACHABLE, UNREACHABLE, UNREACHABLE, STEADY], 3600)
    assert result["outcome"] == "failed" and "unreachable" in result["reason"], result
    assert result["status"]["state"] == "Running"


def test_monitor_fails_on_a_permanent_error_even_at_the_deadline(tmp_path):
    denied = {"ok": False, "error": {"kind": "permanent", "code": "Authorization_RequestDenied",
                                     "message": "Insufficient privileges", "step": "get_job_status"}}
    result, _, _ = _monitor(tmp_path, [RUNNING, RUNNING, RUNNING, denied], 30)
    assert result["outcome"] == "failed" and "Insufficient privileges" in result["reason"], result


def test_a_yielded_instance_discards_its_copy_and_reports_the_kept_one(tmp_path):
    created = {"ok": True, "applicationId": "app-b", "appId": "b", "servicePrincipalId": "sp-b", "created": True,
               "createdHere": True, "tagged": False}
    yielded = {"ok": True, "visible": True, "reads": 2, "tagged": False, "yielded": True,
               "kept": {"servicePrincipalId": "sp-a", "appId": "a"},
               "discard": {"applicationId": "app-b", "servicePrincipalId": "sp-b"}}
    script(ensure_application=[created], wait_until_visible=[yielded],
           discard_application=[{"ok": True, "deleted": True}])

    async def scenario(engine):
        iid = await engine.start_orchestration("provision_instance", {
            "batchId": "b", "instance": {"key": "k1", "displayName": "Shared", "templateId": "t1",
                                         "credentials": {}}, "options": {}}, instance_id="inst")
        return await engine.wait_for_instance(iid, 60)

    result = output(run(tmp_path, scenario))
    assert result["outcome"] == "failed" and "ConcurrentRequest" in str(result), result
    assert result["ids"]["servicePrincipalId"] == "sp-a"
    assert calls("wait_until_visible")[0][1]["created"] is True
    assert calls("discard_application") == [("discard_application", {"applicationId": "app-b",
                                                                     "servicePrincipalId": "sp-b",
                                                                     "instanceKey": "k1"})]
    assert calls("ensure_job") == []  # the kept copy is set up by the run that created it


def test_a_monitor_history_recorded_before_the_cycle_window_still_replays():
    """An orchestration in flight across the deploy: its history holds the quarantine read scheduled
    with the old input (``since`` = our start, no ``until``) and the old result (``errors`` only). The
    new code replays it (same actions in the same order) and completes (checked in review)."""
    t = "2100-01-01T10:00:%02d.000000Z"
    started = "2100-01-01T09:59:00.000000Z"
    data = {"servicePrincipalId": "sp1", "jobId": "job1", "startedAt": started,
            "deadline": "2100-01-02T10:00:00.000000Z", "options": {}}
    quarantined = {**CRED_QUARANTINE["status"], "lastExecution": {
        "state": "Failed", "timeBegan": "2100-01-01T09:59:30Z", "timeEnded": "2100-01-01T10:00:00Z", "error": None}}
    old_request = {"servicePrincipalId": "sp1", "jobId": "job1", "since": started, "top": 10}
    old_result = {"ok": True, "errors": [{"status": "failure", "errorCode": "E1", "reason": "refused"}]}
    events = [
        h.event(h.ORCHESTRATOR_STARTED, t % 0),
        h.execution_started(t % 0, "monitor_job", "m1", "e1", json.dumps(data)),
        h.event(h.TASK_SCHEDULED, t % 0, 0, Name="get_job_status", Version="",
                Input=json.dumps({"servicePrincipalId": "sp1", "jobId": "job1", "startedAt": started})),
        h.event(h.ORCHESTRATOR_COMPLETED, t % 0),
        h.event(h.ORCHESTRATOR_STARTED, t % 1),
        h.event(h.TASK_COMPLETED, t % 1, TaskScheduledId=0, Result=json.dumps({"ok": True, "status": quarantined})),
        h.event(h.TASK_SCHEDULED, t % 1, 1, Name="get_provisioning_errors", Version="", Input=json.dumps(old_request)),
        h.event(h.ORCHESTRATOR_COMPLETED, t % 1),
        h.event(h.ORCHESTRATOR_STARTED, t % 2),
        h.event(h.TASK_COMPLETED, t % 2, TaskScheduledId=1, Result=json.dumps(old_result)),
    ]
    for played in events[:-1]:
        played["IsPlayed"] = True
    payload = json.dumps({"history": events, "input": json.dumps(data), "instanceId": "m1", "isReplaying": True,
                          "parentInstanceId": None, "upperSchemaVersion": 1, "upperSchemaVersionNew": 2})
    state = json.loads(app().call_orchestrator("monitor_job", payload))
    assert state["isDone"] is True, state
    scheduled = [c["functionName"] for group in state["actions"] for a in group for c in a.get("compoundActions") or [a]]
    assert scheduled == ["get_job_status", "get_provisioning_errors"]  # as recorded, in order
    result = state["output"]
    assert result["outcome"] == "quarantined" and result["provisioningErrors"] == old_result["errors"]
    assert result["failedObjects"] == 0 and result["errorsRead"]["complete"] is True


def test_steady_state_after_entry_level_errors_is_not_clean_when_no_failed_row_is_read_yet(tmp_path):
    """The cycle ended EntryLevelErrors (Graph's own word for failed entries), but the read found no
    failure row: Entra's logs arrive with a latency (learn.microsoft.com/entra/identity/monitoring-health/
    reference-log-latency). The outcome must not read as a clean steady state (found in review)."""
    from orchestrators.report import steady_with_failures

    none_yet = {**CYCLE_ERRORS, "errors": [], "failedObjects": 0, "failures": 0, "topErrorCodes": []}
    result, _, _ = _monitor(tmp_path, [STEADY_WITH_ERRORS], 3600, [none_yet])
    assert result["outcome"] == "steadyState", result
    assert steady_with_failures(result) is True
    assert "EntryLevelErrors" in (result["reason"] or "")
    assert [e["code"] for e in result["provisioningErrors"]] == ["EntryLevelErrors"]


def test_the_errors_read_on_timeout_does_not_wait_past_the_deadline(tmp_path):
    """The monitor never waits past its deadline (module contract); the errors read that follows a
    timeout is made once, and a throttled answer is not waited out on timers (found in review)."""
    result, fires, deadline = _monitor(tmp_path, lambda payload, n: RUNNING, 20, [LOGS_THROTTLED, CYCLE_ERRORS])
    assert result["outcome"] == "timedOut", result
    assert max(fires) <= deadline + dt.timedelta(seconds=1), f"a timer fires {max(fires) - deadline} after"
    assert len(calls("get_provisioning_errors")) == 1
    assert [e["code"] for e in result["provisioningErrors"]] == ["ProvisioningErrorsUnavailable"]


@pytest.mark.parametrize("left", [["fleet", "fleet:key:k1", "fleet:kv-saved:tok=v1"], None])
def test_save_secrets_records_on_the_tags_wait_until_visible_left(tmp_path, left):
    """Found in review: the Key Vault record goes on top of the tags the labelling PATCH left
    (``currentTags``), not a read a lagging replica may answer from before it. An answer recorded
    before wait_until_visible returned its tags (``left`` None) gives no ``currentTags``."""
    seen = {"ok": True, "visible": True, "reads": 5, "tagged": True, "recordedVersions": {"tok": "v1"},
            **({"tags": left} if left is not None else {})}
    script(ensure_application=[{"ok": True, "applicationId": "app-a", "appId": "a", "servicePrincipalId": "sp-a",
                                "created": True, "createdHere": True, "tagged": False}],
           wait_until_visible=[seen], ensure_job=[{"ok": True, "jobId": "job1", "templateId": "scim", "created": True}],
           validate_credentials=[{"ok": True, "secretVersions": {"SecretToken": "v2"}}],
           save_secrets=[{"ok": False, "error": {"kind": "permanent", "code": "Stop", "message": "stop here",
                                                 "step": "save_secrets"}}])

    async def scenario(engine):
        iid = await engine.start_orchestration("provision_instance", {
            "batchId": "b", "instance": {"key": "k1", "displayName": "Recorded", "templateId": "t1",
                                         "credentials": {"SecretToken": {"keyVaultSecret": "tok"}}},
            "options": {}}, instance_id="inst")
        return await engine.wait_for_instance(iid, 60)

    output(run(tmp_path, scenario))
    ((_, request),) = calls("save_secrets")
    assert request["recordedVersions"] == {"tok": "v1"}
    if left is None:
        assert "currentTags" not in request
    else:
        assert request["currentTags"] == left


def test_a_sweep_input_without_a_page_size_keeps_the_single_history_path(tmp_path):
    """A sweep started before the paged sweep (its options lack sweepPageSize) is replayed by this code:
    it must take the path it was recorded on - one listing of the whole fleet, no page, no blob report."""
    script(list_managed_instances=[{"ok": True, "instances": [{"servicePrincipalId": "sp1", "displayName": "A"},
                                                              {"servicePrincipalId": "sp2", "displayName": "B"}]}],
           get_job_status=lambda payload, n: CRED_QUARANTINE if payload["servicePrincipalId"] == "sp1" else STEADY,
           **REPORT_SCRIPT)

    async def scenario(engine):
        iid = await engine.start_orchestration("health_sweep", {"options": {"sweepMaxInFlight": 5}},
                                               instance_id="sweep-old")
        row = await engine.wait_for_instance(iid, 60)
        return row, engine.get_history(iid)

    row, history = run(tmp_path, scenario)
    assert row.status == "Completed"
    report = output(row)
    assert report["total"] == 2 and report["counts"]["quarantined"] == 1 and "pages" not in report
    assert _pages(history) == [] and calls("stage_sweep_report") == [] and calls("commit_sweep_report") == []
    assert [p for _, p in calls("list_managed_instances")] == [{}]  # the whole fleet, as before
