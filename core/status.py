"""Classify a synchronizationJob into the few states an orchestrator acts on. Pure, no I/O.

Why a separate pure function: the monitor's decisions (keep polling, done, quarantined, give up)
must be deterministic and testable from the documented example payloads without any server.

Rules, first match wins (status codes and quarantine fields from
https://learn.microsoft.com/graph/api/resources/synchronization-synchronizationstatus; what quarantine
means and when a job is disabled from
https://learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-quarantine-status):

1. **Quarantined** - ``status.code == "Quarantine"`` or a ``quarantine`` object with a reason or a
   ``currentBegan`` (the docs show one on a job coded ``Paused``).
2. **NotStarted** - ``NotConfigured``: never authorised or started.
3. **Paused** - ``Paused`` (an admin paused it, or the initial cycle pruned escrows).
4. **Disabled** - ``schedule.state == "Disabled"`` for a job that has run (e.g. after 4 weeks in quarantine).
5. **Failed** - the last run after our start failed with an error, ``countSuccessiveCompleteFailures > 0``.
6. **SteadyState** - ``Active`` and ``steadyStateLastAchievedTime`` later than the moment we started
   the job (a steady state from before a restart does not count).
7. **Running** - anything else that is moving (``NotRun``, ``Active`` before steady state), with progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from core.times import iso_seconds

SENTINEL_YEAR = 1  # 0001-01-01T00:00:00Z means "never"


class JobState(str, Enum):
    NOT_STARTED = "NotStarted"
    RUNNING = "Running"
    STEADY_STATE = "SteadyState"
    QUARANTINED = "Quarantined"
    PAUSED = "Paused"
    DISABLED = "Disabled"
    FAILED = "Failed"


#: the ``state`` of a service principal that has no synchronization job (``get_job_status``)
MISSING_JOB = "MissingJob"

#: States in which the monitor stops polling.
SETTLED_STATES = frozenset({JobState.STEADY_STATE, JobState.QUARANTINED, JobState.PAUSED, JobState.DISABLED})

#: Graph statuses in which the job runs on its own; Start must not be called again (Microsoft's warning).
RUNNING_CODES = frozenset({"Active", "NotRun"})

#: The quarantine reason Entra documents as "invalid credentials were provided ... unable to establish
#: a connection" (https://learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-quarantine-status).
CREDENTIAL_QUARANTINE_REASONS = frozenset({"EncounteredQuarantineException"})

#: ``quarantine.error.code`` values that say "the target is not SCIM-compliant", whatever the reason:
#: the quarantine article's "SCIM Compliance issue" (an HTTP/404 where 200 was expected) reaches the
#: job as ``SystemForCrossDomainIdentityManagementServiceIncompatible`` (and its ``...Filtering``
#: variant); ``...MultipleEntriesInResponse`` is the same kind of fault (error code table of
#: https://learn.microsoft.com/entra/identity/monitoring-health/howto-analyze-provisioning-logs).
#: New credentials cannot fix these: they are reported, never restarted.
SCIM_COMPLIANCE_ERROR_PREFIXES = ("SystemForCrossDomainIdentityManagementServiceIncompatible",
                                  "SystemForCrossDomainIdentityManagementMultipleEntriesInResponse")

#: ``quarantine.error.code`` values that name the credentials themselves (the portal's Test Connection
#: codes ``SystemForCrossDomainIdentityManagementCredentialValidation*``, HTTP 401 from the target).
#: A credential-reason quarantine with no error code counts too (the reason alone is documented as
#: "invalid credentials"); any other code under that reason is "other": reported, not restarted.
CREDENTIAL_ERROR_MARKERS = ("CredentialValidation", "InvalidCredentials", "Unauthorized")

#: ``quarantine.cause`` values (what the health sweep reports and decides on)
CAUSE_CREDENTIALS = "credentials"
CAUSE_SCIM_COMPLIANCE = "scimCompliance"
CAUSE_ESCROW = "escrowThreshold"
CAUSE_TOO_MANY_DELETES = "tooManyDeletes"
CAUSE_OTHER = "other"
_ESCROW_REASONS = frozenset({"EncounteredBaseEscrowThreshold", "EncounteredTotalEscrowThreshold",
                             "EncounteredEscrowProportionThreshold"})


def quarantine_cause(reason: str | None, error_code: str | None) -> str:
    """What caused a quarantine, from its ``reason`` and ``error.code`` (both, because Graph's reason
    enum has no SCIM-compliance value: such a quarantine is told apart by its error code only).

    ``credentials`` only when the reason is the credential one *and* the error code is absent or
    names the credentials; a SCIM-compliance code wins over any reason.
    """
    code = str(error_code or "")
    if code.startswith(SCIM_COMPLIANCE_ERROR_PREFIXES):
        return CAUSE_SCIM_COMPLIANCE
    if reason in CREDENTIAL_QUARANTINE_REASONS:
        if not code or code == "None" or any(marker.casefold() in code.casefold() for marker in CREDENTIAL_ERROR_MARKERS):
            return CAUSE_CREDENTIALS
        return CAUSE_OTHER
    if reason in _ESCROW_REASONS:
        return CAUSE_ESCROW
    if reason == "TooManyDeletes":
        return CAUSE_TOO_MANY_DELETES
    return CAUSE_OTHER


def parse_time(value: Any) -> datetime | None:
    """A Graph DateTimeOffset (up to 7 fractional digits) -> aware datetime; sentinel/''/None -> None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if moment.year <= SENTINEL_YEAR:
        return None
    return moment.astimezone(timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return iso_seconds(moment) if moment else None


@dataclass(frozen=True)
class JobStatus:
    """The classification plus the few facts an operator or orchestrator needs (JSON via ``to_dict``)."""

    state: JobState
    code: str | None
    schedule_state: str | None = None
    progress: dict | None = None
    quarantine: dict | None = None
    last_execution: dict | None = None
    steady_state_last_achieved: str | None = None
    successive_failures: int = 0
    escrows_pruned: bool = False
    details: dict = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        return self.state in SETTLED_STATES

    def to_dict(self) -> dict:
        return {
            "state": self.state.value,
            "settled": self.settled,
            "code": self.code,
            "scheduleState": self.schedule_state,
            "progress": self.progress,
            "quarantine": self.quarantine,
            "lastExecution": self.last_execution,
            "steadyStateLastAchievedTime": self.steady_state_last_achieved,
            "countSuccessiveCompleteFailures": self.successive_failures,
            "escrowsPruned": self.escrows_pruned,
        }


def _error(obj: Any) -> dict | None:
    if not isinstance(obj, dict):
        return None
    code = obj.get("code")
    if not code or code == "None":
        return None
    return {"code": code, "message": str(obj.get("message") or "")[:500],
            "tenantActionable": bool(obj.get("tenantActionable"))}


def _quarantine(status: dict) -> dict | None:
    q = status.get("quarantine")
    if not isinstance(q, dict):
        return None
    reason = q.get("reason") or None
    if reason == "QuarantineOnDemand":  # the article's spelling of the enum value
        reason = "QuarantinedOnDemand"
    began = parse_time(q.get("currentBegan"))
    if not reason and not began:
        return None  # the docs show empty quarantine objects on healthy jobs
    series = q.get("seriesCount")
    error = _error(q.get("error"))
    cause = quarantine_cause(reason or "Unknown", (error or {}).get("code"))
    return {
        "reason": reason or "Unknown",
        "currentBegan": _iso(began),
        "nextAttempt": _iso(parse_time(q.get("nextAttempt"))),
        "seriesBegan": _iso(parse_time(q.get("seriesBegan"))),
        "seriesCount": int(series) if isinstance(series, (int, float, str)) and str(series).isdigit() else 0,
        "error": error,
        "cause": cause,
        "credentialProblem": cause == CAUSE_CREDENTIALS,
    }


def _progress(status: dict) -> dict | None:
    items = [p for p in status.get("progress") or [] if isinstance(p, dict)]
    if not items:
        return None
    latest = max(items, key=lambda p: str(p.get("progressObservationDateTime") or ""))
    return {"completedUnits": int(latest.get("completedUnits") or 0), "totalUnits": int(latest.get("totalUnits") or 0),
            "units": latest.get("units")}


def _execution(obj: Any) -> dict | None:
    if not isinstance(obj, dict):
        return None
    began, ended = parse_time(obj.get("timeBegan")), parse_time(obj.get("timeEnded"))
    if not began and not ended:
        return None  # the "never ran" placeholder (state Failed, sentinel times, error None)
    found = {"state": obj.get("state"), "timeBegan": _iso(began), "timeEnded": _iso(ended), "error": _error(obj.get("error"))}
    if obj.get("activityIdentifier"):  # the run's id (synchronizationTaskExecution): tells two runs with equal times apart
        found["activityIdentifier"] = str(obj["activityIdentifier"])
    return found


def classify(job: dict, started_at: datetime | str | None = None) -> JobStatus:
    """Classify a synchronizationJob (the JSON Graph returns) relative to when we started it."""
    status = job.get("status") or {}
    schedule = job.get("schedule") or {}
    code = status.get("code")
    schedule_state = schedule.get("state")
    since = parse_time(started_at) if started_at is not None else None
    steady_last = parse_time(status.get("steadyStateLastAchievedTime"))
    last = _execution(status.get("lastExecution"))
    failures = int(status.get("countSuccessiveCompleteFailures") or 0)
    common: dict[str, Any] = dict(
        code=code, schedule_state=schedule_state, progress=_progress(status), last_execution=last,
        steady_state_last_achieved=_iso(steady_last), successive_failures=failures,
        escrows_pruned=bool(status.get("escrowsPruned")))
    quarantine = _quarantine(status)
    if code == "Quarantine" or quarantine:
        return JobStatus(JobState.QUARANTINED, quarantine=quarantine or {
            "reason": "Unknown", "currentBegan": None, "nextAttempt": None, "seriesBegan": None,
            "seriesCount": 0, "error": None, "cause": CAUSE_OTHER, "credentialProblem": False}, **common)
    if code == "NotConfigured":
        return JobStatus(JobState.NOT_STARTED, **common)
    if code == "Paused":
        return JobStatus(JobState.PAUSED, **common)
    if schedule_state == "Disabled":
        return JobStatus(JobState.DISABLED, **common)
    last_ended = parse_time(last["timeEnded"]) if last else None
    if (failures > 0 and last and last["state"] == "Failed" and last["error"]
            and (since is None or (last_ended is not None and last_ended > since))):
        return JobStatus(JobState.FAILED, **common)
    if code == "Active" and steady_last and (since is None or steady_last > since):
        return JobStatus(JobState.STEADY_STATE, **common)
    return JobStatus(JobState.RUNNING, **common)


def is_running(job: dict) -> bool:
    """True when the job runs by itself (Start must not be called): ``Active``/``NotRun`` and scheduled."""
    status = job.get("status") or {}
    schedule_state = (job.get("schedule") or {}).get("state")
    return status.get("code") in RUNNING_CODES and schedule_state != "Disabled" and not _quarantine(status)
