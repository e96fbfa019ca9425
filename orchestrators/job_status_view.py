"""The job-status view: read the classification returned by ``get_job_status`` (``core.status.JobStatus.to_dict``).

Why: ``core.status`` owns the rules that turn a Graph ``synchronizationJob`` into a state (steady
state needs ``steadyStateLastAchievedTime`` after our start, quarantine is either the code or a
populated quarantine object, ...). The orchestrators only need a few questions answered about that
dict; this module is the single place that knows its keys.
"""

from __future__ import annotations

from typing import Any

from core.status import MISSING_JOB, JobState

STEADY = JobState.STEADY_STATE.value
QUARANTINED = JobState.QUARANTINED.value
RUNNING = JobState.RUNNING.value
NOT_STARTED = JobState.NOT_STARTED.value
PAUSED = JobState.PAUSED.value
DISABLED = JobState.DISABLED.value
FAILING = JobState.FAILED.value  # last run failed: an early warning, the job keeps running
UNKNOWN = "Unknown"

_KNOWN = {s.value for s in JobState} | {MISSING_JOB}

__all__ = ["DISABLED", "FAILING", "MISSING_JOB", "NOT_STARTED", "PAUSED", "QUARANTINED", "RUNNING", "STEADY", "UNKNOWN",
           "is_credential_quarantine", "is_settled", "phase_of", "quarantine_cause", "quarantine_error",
           "quarantine_reason"]


def phase_of(status: dict[str, Any] | None) -> str:
    """The ``state`` of a classification dict (``Unknown`` when absent or unrecognised)."""
    state = (status or {}).get("state")
    return state if state in _KNOWN else UNKNOWN


def is_settled(status: dict[str, Any] | None) -> bool:
    """True when the job will not move on its own (steady, quarantined, paused, disabled)."""
    return bool((status or {}).get("settled")) or phase_of(status) in {STEADY, QUARANTINED, PAUSED, DISABLED}


def quarantine_reason(status: dict[str, Any] | None) -> str | None:
    """The quarantine reason, e.g. ``EncounteredQuarantineException``."""
    quarantine = (status or {}).get("quarantine")
    return quarantine.get("reason") if isinstance(quarantine, dict) else None


def quarantine_error(status: dict[str, Any] | None) -> dict[str, Any] | None:
    """The quarantine's ``{code, message}`` error, if Graph gave one."""
    quarantine = (status or {}).get("quarantine")
    error = quarantine.get("error") if isinstance(quarantine, dict) else None
    return error if isinstance(error, dict) else None


def quarantine_cause(status: dict[str, Any] | None) -> str | None:
    """What caused the quarantine (``core.status.quarantine_cause``: reason *and* error code), e.g. ``scimCompliance``."""
    quarantine = (status or {}).get("quarantine")
    return quarantine.get("cause") if isinstance(quarantine, dict) else None


def is_credential_quarantine(status: dict[str, Any] | None) -> bool:
    """True when the quarantine was caused by the target credentials (the only kind we may restart)."""
    quarantine = (status or {}).get("quarantine")
    return isinstance(quarantine, dict) and bool(quarantine.get("credentialProblem"))
