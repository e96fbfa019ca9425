"""core.status: table-driven classification from the documented example payloads (Graph's synchronizationJob pages)."""

from __future__ import annotations

import pytest

from core.status import JobState, classify, is_running, parse_time

SENTINEL = "0001-01-01T00:00:00Z"
STARTED = "2026-11-27T10:00:00Z"
NEVER_RAN = {"activityIdentifier": None, "countEntitled": 0, "state": "Failed", "timeBegan": SENTINEL,
             "timeEnded": SENTINEL, "error": {"code": "None", "message": "", "tenantActionable": False}}


def job(code, schedule="Active", **status):
    body = {"code": code, "countSuccessiveCompleteFailures": 0, "escrowsPruned": False, "lastExecution": None,
            "progress": [], "quarantine": None, "steadyStateFirstAchievedTime": SENTINEL,
            "steadyStateLastAchievedTime": SENTINEL}
    body.update(status)
    return {"id": "aws.x.y", "templateId": "aws", "schedule": {"interval": "PT40M", "state": schedule},
            "status": body}


QUARANTINE = {"currentBegan": "2026-11-27T10:05:00Z", "nextAttempt": "2026-11-27T22:05:00.1234567Z",
              "reason": "EncounteredQuarantineException", "seriesBegan": "2026-11-27T10:05:00Z", "seriesCount": 3,
              "error": {"code": "SalesforceInvalidCredentials", "message": "bad token", "tenantActionable": True}}
EMPTY_QUARANTINE = {"currentBegan": "", "nextAttempt": "", "reason": "", "seriesBegan": "", "seriesCount": 0}

CASES = [
    # just created (the 201 example of https://learn.microsoft.com/graph/api/synchronization-synchronization-post-jobs):
    # NotConfigured, schedule Disabled, TimeSpan.MaxValue
    ("new job", job("NotConfigured", "Disabled"), STARTED, JobState.NOT_STARTED),
    # cross-tenant create example: code Paused, schedule Disabled, lastExecution placeholder
    ("created paused", job("Paused", "Disabled", lastExecution=NEVER_RAN), None, JobState.PAUSED),
    ("first cycle", job("NotRun", progress=[{"completedUnits": 3, "totalUnits": 10, "units": "users",
                                             "progressObservationDateTime": "2026-11-27T10:01:00Z"}]),
     STARTED, JobState.RUNNING),
    ("active, steady after start", job("Active", steadyStateLastAchievedTime="2026-11-27T10:20:00Z"),
     STARTED, JobState.STEADY_STATE),
    ("active, steady before restart", job("Active", steadyStateLastAchievedTime="2026-11-27T09:00:00Z"),
     STARTED, JobState.RUNNING),
    ("active, never steady", job("Active"), STARTED, JobState.RUNNING),
    ("active, no start known", job("Active", steadyStateLastAchievedTime="2026-11-27T09:00:00.5Z"),
     None, JobState.STEADY_STATE),
    # the health sweep's view (no start known) of a steady job in a later, incremental cycle: still steady
    ("steady, in an incremental cycle", job("Active", steadyStateLastAchievedTime="2026-11-27T10:20:00Z",
                                            progress=[{"completedUnits": 1, "totalUnits": 4, "units": "Entries",
                                                       "progressObservationDateTime": "2026-11-27T11:01:00Z"}]),
     None, JobState.STEADY_STATE),
    ("quarantine code", job("Quarantine", quarantine=QUARANTINE), STARTED, JobState.QUARANTINED),
    ("quarantine object on Paused job", job("Paused", quarantine=QUARANTINE), STARTED, JobState.QUARANTINED),
    ("quarantine code without object", job("Quarantine"), STARTED, JobState.QUARANTINED),
    # v1.0 Get example: empty-string quarantine object on a Paused job is not a quarantine
    ("empty quarantine object", job("Paused", quarantine=EMPTY_QUARANTINE), STARTED, JobState.PAUSED),
    ("disabled after 4 weeks", job("Active", "Disabled"), STARTED, JobState.DISABLED),
    ("failing runs", job("Active", countSuccessiveCompleteFailures=2, lastExecution={
        "state": "Failed", "timeBegan": "2026-11-27T10:01:00Z", "timeEnded": "2026-11-27T10:02:00Z",
        "error": {"code": "SystemForCrossDomainIdentityManagementServiceIncompatible", "message": "404"}}),
     STARTED, JobState.FAILED),
    ("failure before our start", job("Active", countSuccessiveCompleteFailures=1, lastExecution={
        "state": "Failed", "timeBegan": "2026-11-27T08:01:00Z", "timeEnded": "2026-11-27T08:02:00Z",
        "error": {"code": "X", "message": "old"}}), STARTED, JobState.RUNNING),
    ("placeholder execution", job("NotRun", lastExecution=NEVER_RAN, countSuccessiveCompleteFailures=0),
     STARTED, JobState.RUNNING),
    ("unknown code", job("SomethingNew"), STARTED, JobState.RUNNING),
    ("empty job", {}, None, JobState.RUNNING),
]


@pytest.mark.parametrize("name, body, started, expected", CASES, ids=[c[0] for c in CASES])
def test_classify(name, body, started, expected):
    result = classify(body, started)
    assert result.state is expected
    as_dict = result.to_dict()
    assert as_dict["state"] == expected.value
    assert as_dict["settled"] == (expected in {JobState.STEADY_STATE, JobState.QUARANTINED, JobState.PAUSED,
                                               JobState.DISABLED})


def test_quarantine_details():
    q = classify(job("Quarantine", quarantine=QUARANTINE), STARTED).to_dict()["quarantine"]
    assert q == {"reason": "EncounteredQuarantineException", "currentBegan": "2026-11-27T10:05:00Z",
                 "nextAttempt": "2026-11-27T22:05:00Z", "seriesBegan": "2026-11-27T10:05:00Z", "seriesCount": 3,
                 "error": {"code": "SalesforceInvalidCredentials", "message": "bad token", "tenantActionable": True},
                 "cause": "credentials", "credentialProblem": True}
    other = classify(job("Quarantine", quarantine={**QUARANTINE, "reason": "QuarantineOnDemand"}), STARTED)
    assert other.quarantine["reason"] == "QuarantinedOnDemand" and not other.quarantine["credentialProblem"]
    bare = classify(job("Quarantine"), STARTED).quarantine
    assert bare["reason"] == "Unknown" and bare["seriesCount"] == 0
    assert bare["cause"] == "other" and bare["credentialProblem"] is False


SCIM_404 = "SystemForCrossDomainIdentityManagementServiceIncompatible"


@pytest.mark.parametrize("reason, code, cause", [
    ("EncounteredQuarantineException", None, "credentials"),  # the reason alone means invalid credentials (DOC)
    ("EncounteredQuarantineException", "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
     "credentials"),
    ("EncounteredQuarantineException", "SalesforceInvalidCredentials", "credentials"),
    # the article's "SCIM Compliance issue" (404 where 200 was expected): never a credential problem
    ("EncounteredQuarantineException", SCIM_404, "scimCompliance"),
    ("EncounteredQuarantineException", SCIM_404 + "Filtering", "scimCompliance"),
    ("Unknown", SCIM_404, "scimCompliance"),
    ("EncounteredQuarantineException", "SystemForCrossDomainIdentityManagementMultipleEntriesInResponse",
     "scimCompliance"),
    # an unrecognised code under the credential reason: reported, not restarted
    ("EncounteredQuarantineException", "WebExceptionProtocolError", "other"),
    ("EncounteredEscrowProportionThreshold", "EscrowProportionThresholdExceeded", "escrowThreshold"),
    ("TooManyDeletes", "TooManyDeletes", "tooManyDeletes"),
    ("QuarantinedOnDemand", None, "other"),
])
def test_quarantine_cause_needs_reason_and_error_code(reason, code, cause):
    quarantine = {**QUARANTINE, "reason": reason, "error": {"code": code, "message": "m"} if code else None}
    found = classify(job("Quarantine", quarantine=quarantine), STARTED).quarantine
    assert found["cause"] == cause and found["credentialProblem"] is (cause == "credentials")


def test_progress_and_execution_are_compact():
    body = job("NotRun", progress=[
        {"completedUnits": 1, "totalUnits": 10, "progressObservationDateTime": "2026-11-27T10:01:00Z"},
        {"completedUnits": 5, "totalUnits": 10, "units": "users", "progressObservationDateTime": "2026-11-27T10:02:00Z"}])
    assert classify(body, STARTED).progress == {"completedUnits": 5, "totalUnits": 10, "units": "users"}
    assert classify(job("NotRun", lastExecution=NEVER_RAN), STARTED).last_execution is None


@pytest.mark.parametrize("value, expected", [
    (SENTINEL, None), ("", None), (None, None), ("garbage", None), (5, None),
    ("2026-11-27T10:00:00.1234567Z", "2026-11-27T10:00:00.123456+00:00"),
    ("2026-11-27T12:00:00+02:00", "2026-11-27T10:00:00+00:00"),
    ("2026-11-27T10:00:00", "2026-11-27T10:00:00+00:00"),
])
def test_parse_time(value, expected):
    parsed = parse_time(value)
    assert (parsed.isoformat() if parsed else None) == expected


def test_is_running():
    assert is_running(job("Active"))
    assert is_running(job("NotRun"))
    assert not is_running(job("NotConfigured", "Disabled"))
    assert not is_running(job("Paused"))
    assert not is_running(job("Active", "Disabled"))
    assert not is_running(job("Active", quarantine=QUARANTINE))
