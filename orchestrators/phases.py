"""Map the job-status classification returned by ``get_job_status`` to the workflow's phases.

Why: ``core`` owns the rules that turn a Graph ``synchronizationJob`` into a classification
(steady state needs ``steadyStateLastAchievedTime`` after our start, quarantine is either the code
or a populated quarantine object, ...). The orchestrators only need a small vocabulary to decide
what to do next; this module is that single translation point.
"""

from __future__ import annotations

from typing import Any

STEADY = "steadyState"
QUARANTINED = "quarantined"
RUNNING = "running"
NOT_STARTED = "notStarted"
PAUSED = "paused"
DISABLED = "disabled"
MISSING_JOB = "missingJob"
UNKNOWN = "unknown"

_ALIASES = {
    "steady": STEADY, "steadystate": STEADY, "healthy": STEADY, "active": STEADY,
    "quarantine": QUARANTINED, "quarantined": QUARANTINED,
    "running": RUNNING, "initialcycle": RUNNING, "notrun": RUNNING, "inprogress": RUNNING,
    "notstarted": NOT_STARTED, "notconfigured": NOT_STARTED,
    "paused": PAUSED, "disabled": DISABLED,
    "missing": MISSING_JOB, "missingjob": MISSING_JOB, "nojob": MISSING_JOB,
}


def phase_of(status: dict[str, Any] | None) -> str:
    """The phase named by a classification dict (``state``/``phase``/``category`` key)."""
    if not status:
        return UNKNOWN
    raw = status.get("state") or status.get("phase") or status.get("category") or ""
    return _ALIASES.get(str(raw).replace("_", "").replace("-", "").replace(" ", "").lower(), UNKNOWN)


def quarantine_reason(status: dict[str, Any] | None) -> str | None:
    """The quarantine reason of a classification, e.g. ``EncounteredQuarantineException``."""
    if not status:
        return None
    quarantine = status.get("quarantine") if isinstance(status.get("quarantine"), dict) else {}
    return status.get("reason") or quarantine.get("reason") or status.get("quarantineReason")


def is_credential_quarantine(status: dict[str, Any] | None) -> bool:
    """True when the quarantine was caused by the target credentials (the only kind we may restart)."""
    if not status:
        return False
    if status.get("credentialCaused") is not None:
        return bool(status["credentialCaused"])
    reason = (quarantine_reason(status) or "").lower()
    error = status.get("error") if isinstance(status.get("error"), dict) else {}
    code = str(error.get("code") or status.get("errorCode") or "").lower()
    return reason == "encounteredquarantineexception" or "credential" in code or "unauthorized" in code
