"""The orchestrators' pure helpers, tested directly: the throttle wait, the job-status view (the
phase classifier), the instance outcome and the batch counts and errors."""

from __future__ import annotations

import pytest

from core.contracts import InstanceOutcome, StepError
from core.workflow_options import WorkflowOptions
from orchestrators import job_status_view as view
from orchestrators.activity_calls import chunks, failure_message, throttle_delay
from orchestrators.monitor_job import _cycle_had_errors, _cycle_window
from orchestrators.report import (batch_report, crashed_outcome, final_outcome, not_started_outcome, progress_counts,
                                  steady_with_failures, top_errors)

OPTIONS = WorkflowOptions()


def test_throttle_delay_honours_retry_after_a_doubling_floor_jitter_and_the_cap():
    # Retry-After wins when larger than the floor; jitter adds at most 50 %, deterministically
    first = throttle_delay(20, 1, "i:a", OPTIONS)
    assert 20 <= first <= 30 and first == throttle_delay("20", 1, "i:a", OPTIONS)
    # a tiny Retry-After: the floor doubles with each wait (0.5, 1, 2, ...), capped at 8 s before jitter
    floors = [throttle_delay(0.01, n, "i:a", OPTIONS) for n in (1, 2, 3, 4, 5, 6)]
    for n, delay in zip((1, 2, 3, 4, 5, 6), floors):
        floor = min(0.5 * 2 ** (n - 1), 8.0)
        assert floor <= delay <= floor * 1.5, (n, delay)
    # no Retry-After: the default wait; never above max_throttle_wait
    assert 10 <= throttle_delay(None, 1, "s", OPTIONS) <= 15
    assert throttle_delay(10_000, 1, "s", OPTIONS) == OPTIONS.max_throttle_wait
    # different seeds spread the contenders apart
    assert len({throttle_delay(1, 1, f"inst{i}:a", OPTIONS) for i in range(20)}) > 10


def test_failure_message_keeps_the_first_line_only_and_chunks_slice():
    assert failure_message(Exception("Activity failed \n Traceback: secret-looking details")) == "Activity failed"
    assert failure_message(Exception("")) == "Exception"
    assert failure_message(Exception("x" * 500)) == "x" * 300
    assert list(chunks([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]] and list(chunks([1], 0)) == [[1]]


@pytest.mark.parametrize("status, phase, settled", [
    ({"state": "SteadyState"}, view.STEADY, True),
    ({"state": "Quarantined"}, view.QUARANTINED, True),
    ({"state": "Paused"}, view.PAUSED, True),
    ({"state": "Disabled"}, view.DISABLED, True),
    ({"state": "Running"}, view.RUNNING, False),
    ({"state": "Running", "settled": True}, view.RUNNING, True),
    ({"state": "Failed"}, view.FAILING, False),
    ({"state": "NotStarted"}, view.NOT_STARTED, False),
    ({"state": "MissingJob"}, view.MISSING_JOB, False),
    ({"state": "Exploded"}, view.UNKNOWN, False),
    (None, view.UNKNOWN, False),
])
def test_the_phase_classifier(status, phase, settled):
    assert view.phase_of(status) == phase
    assert view.is_settled(status) is settled


def test_the_quarantine_questions():
    status = {"state": "Quarantined", "quarantine": {"reason": "EncounteredQuarantineException", "cause": "credentials",
                                                     "credentialProblem": True, "error": {"code": "C", "message": "m"}}}
    assert view.quarantine_reason(status) == "EncounteredQuarantineException"
    assert view.quarantine_error(status) == {"code": "C", "message": "m"}
    assert view.quarantine_cause(status) == "credentials" and view.is_credential_quarantine(status)
    for nothing in (None, {}, {"quarantine": "text"}):
        assert view.quarantine_reason(nothing) is None and view.quarantine_error(nothing) is None
        assert view.quarantine_cause(nothing) is None and not view.is_credential_quarantine(nothing)


def test_the_cycle_window_and_errors():
    assert not _cycle_had_errors(None) and not _cycle_had_errors({"lastExecution": {"state": "Succeeded"}})
    assert _cycle_had_errors({"lastExecution": {"state": "EntryLevelErrors"}})
    ours = "2026-11-27T10:00:00.000000Z"
    cycle = {"lastExecution": {"timeBegan": "2026-11-27T10:00:05Z", "timeEnded": "2026-11-27T10:05:00Z"}}
    assert _cycle_window(cycle, ours) == ("2026-11-27T10:00:05.000000Z", "2026-11-27T10:05:01.000000Z")
    older = {"lastExecution": {"timeBegan": "2026-11-27T09:00:00Z", "timeEnded": "2026-11-27T09:30:00Z"}}
    assert _cycle_window(older, ours) == (ours, None)  # not our cycle: from our start, unbounded
    assert _cycle_window(None, ours) == (ours, None)


def _setup(**extra) -> InstanceOutcome:
    return InstanceOutcome(instance_key="k", display_name="App", orchestration_id="b:k", outcome="configured",
                           reason=None, ids={"servicePrincipalId": "s"}, polls=0, provisioning_errors=[],
                           timings={"startedAt": "2026-11-27T10:00:00.000000Z",
                                    "configuredAt": "2026-11-27T10:00:30.000000Z"}, **extra)


def test_final_outcome_completes_the_setup_with_the_monitors_result():
    setup = _setup(job_kind="roleImport", role_import={"users": ["u"]}, job_started_at="t")
    watched = {"outcome": "steadyState", "reason": None, "polls": 4, "status": {"state": "SteadyState"},
               "steadyStateAt": "2026-11-27T11:00:00.000000Z", "provisioningErrors": [], "rolesImported": 2}
    done = final_outcome(setup, watched, "2026-11-27T11:00:30.000000Z").to_dict()
    assert done["outcome"] == "steadyState" and done["polls"] == 4 and done["rolesImported"] == 2
    assert done["timings"]["setupSeconds"] == 30.0 and done["timings"]["totalSeconds"] == 3630.0
    assert "roleImport" not in done and "jobStartedAt" not in done and done["jobKind"] == "roleImport"
    assert "failedObjects" not in done and "error" not in done  # only what the result carried
    assert setup.timings == _setup().timings  # the argument is not changed
    failed = final_outcome(setup.to_dict(), {"error": {"kind": "permanent", "code": "X", "step": "s"}},
                           "2026-11-27T10:01:00.000000Z")
    assert failed.outcome == "failed" and failed.error == StepError(code="X", step="s")
    assert failed.timings["totalSeconds"] == 60.0


def test_outcomes_before_and_without_an_orchestration():
    error = StepError(code="NotFound", message="no such template", step="resolve_application_template")
    early = not_started_outcome({"key": "k", "displayName": "App"}, "b:k", error, "t").to_dict()
    assert early["reason"] == "resolve_application_template: no such template" and "polls" not in early
    assert early["timings"] == {"startedAt": "t", "finishedAt": "t"} and early["error"]["code"] == "NotFound"
    crashed = crashed_outcome({"key": "k"}, "b:k", "boom", "t")
    assert crashed.error is not None and crashed.error.code == "OrchestrationFailed"
    assert crashed.reason == "provision_instance: boom"


def _outcome(outcome: str, **extra) -> dict:
    return {"instanceKey": extra.pop("key", "k"), "outcome": outcome, "provisioningErrors": [], **extra}


def test_progress_counts_and_the_report_tell_clean_steady_state_from_steady_with_failures():
    outcomes = [_outcome("steadyState"), _outcome("steadyState", failedObjects=3),
                _outcome("steadyState", provisioningErrors=[{"code": "EntryLevelErrors"}]),
                _outcome("quarantined"), _outcome("failed"), _outcome("timedOut")]
    assert [steady_with_failures(o) for o in outcomes] == [False, True, True, False, False, False]
    counts = progress_counts(8, 1, 1, 0, outcomes)
    assert counts == {"total": 8, "queued": 1, "configuring": 1, "monitoring": 0, "running": 1, "steadyState": 1,
                      "steadyWithFailures": 2, "quarantined": 1, "failed": 1, "timedOut": 1}
    report = batch_report("b", None, "t", "u", [InstanceOutcome.from_dict(o) for o in outcomes], 1.5).to_dict()
    assert report["counts"] == {"total": 6, "steadyState": 1, "steadyWithFailures": 2, "quarantined": 1,
                                "failed": 1, "timedOut": 1}
    assert report["succeeded"] is False and len(report["instances"]) == 6
    clean = batch_report("b", "r", "t", "u", [InstanceOutcome.from_dict(_outcome("steadyState"))], None)
    assert clean.succeeded is True and clean.top_errors == []


def test_top_errors_counts_whole_cycles_rows_and_setup_failures():
    outcomes = [
        _outcome("steadyState", key="a", failedObjects=5,
                 topErrorCodes=[{"code": "E1", "count": 5, "reason": "bad"}],
                 provisioningErrors=[{"code": "E1", "message": "row"}]),  # the cycle's counts win over the rows
        _outcome("quarantined", key="b", provisioningErrors=[{"errorCode": "E2", "reason": "r"}, {"code": "E1"}]),
        _outcome("failed", key="c", error={"kind": "permanent", "code": "Forbidden", "message": "no", "step": "s"}),
    ]
    top = top_errors(outcomes)
    assert top[0] == {"code": "E1", "count": 6, "message": "bad", "instanceKey": "a"}
    assert {"code": "E2", "count": 1, "message": "r", "instanceKey": "b"} in top
    assert {"code": "Forbidden", "count": 1, "message": "no", "instanceKey": "c", "step": "s"} in top
    assert len(top_errors(outcomes, limit=1)) == 1
