"""The state of one synchronization job and its Graph representation (``synchronizationJob``).

:class:`Job` is a plain dataclass so it round-trips through JSON for ``--state-dir``. Times are
kept as POSIX seconds of *simulated* time; :func:`render_job` turns them into Graph's text, with
``0001-01-01T00:00:00Z`` and ``null`` exactly where the real service puts them (the examples of
https://learn.microsoft.com/graph/api/synchronization-synchronization-post-jobs and
https://learn.microsoft.com/graph/api/resources/synchronization-synchronizationstatus).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone

from emulator.clock import SENTINEL, iso
from emulator.errors import GraphError

NEVER_INTERVAL = "P10675199DT2H48M5.4775807S"  # .NET TimeSpan.MaxValue: "never" for a disabled job
ACTIVE_INTERVAL = "PT40M"
DEFAULT_JOB_SETTINGS = ({"name": "QuarantineTooManyDeletesThreshold", "value": "500"},)
RESET_SCOPES = ("None", "ConnectorDataStore", "Escrows", "Watermark", "QuarantineState", "Full", "ForceDeletes")
PORTAL_RESTART = frozenset({"QuarantineState", "Watermark", "Escrows"})  # what an empty criteria does (portal Restart)


def ts(seconds: float | None) -> str | None:
    """Graph DateTimeOffset text for simulated POSIX seconds (None stays None)."""
    if seconds is None:
        return None
    return iso(datetime.fromtimestamp(seconds, timezone.utc))


@dataclass
class Job:
    """Everything the simulation knows about one job (JSON-serialisable)."""

    id: str
    template_id: str
    sp_id: str
    seed: int
    code: str = "NotConfigured"
    schedule_state: str = "Disabled"
    interval: str = NEVER_INTERVAL
    running: bool = False
    watermark: bool = False
    cycle_count: int = 0
    links: dict = field(default_factory=dict)  # source object id -> {"type", "displayName", "hash", "targetId"}
    escrows: dict = field(default_factory=dict)  # source object id -> {"errorCode", "count"}
    stale_seeded: bool = False
    force_deletes: bool = False
    quarantine: dict | None = None  # times as POSIX seconds; rendered by render_job
    successive_failures: int = 0
    last_execution: dict | None = None
    last_successful_execution: dict | None = None
    last_successful_execution_with_exports: dict | None = None
    steady_first: float | None = None
    steady_last: float | None = None
    entry_counts: dict = field(default_factory=dict)
    settings: list = field(default_factory=lambda: [dict(s) for s in DEFAULT_JOB_SETTINGS])
    schema: dict | None = None
    cycle: dict | None = None  # the cycle in flight: {"id", "initial", "began", "items", "cursor", ...}
    next_cycle_at: float | None = None
    disabled: bool = False
    gen: int = 0

    def to_state(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_state(cls, data: dict) -> "Job":
        """Inverse of :meth:`to_state` (unknown keys ignored, so old state files still load)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def setting(self, name: str, default: str | None = None) -> str | None:
        """A synchronizationJobSettings value by name."""
        for item in self.settings:
            if item.get("name") == name:
                return item.get("value")
        return default


def execution(cycle_id: str, began: float, ended: float, counts: dict, state: str, error: dict | None) -> dict:
    """A synchronizationTaskExecution (times already rendered)."""
    return {
        "activityIdentifier": cycle_id,
        "countEntitled": counts.get("entitled", 0),
        "countEntitledForProvisioning": counts.get("entitled", 0),
        "countEscrowed": counts.get("escrowed", 0),
        "countEscrowedRaw": counts.get("escrowed", 0),
        "countExported": counts.get("exported", 0),
        "countExports": counts.get("exports", 0),
        "countImported": counts.get("imported", 0),
        "countImportedDeltas": counts.get("imported", 0),
        "countImportedReferenceDeltas": counts.get("references", 0),
        "error": error or {"code": "None", "message": "", "tenantActionable": False},
        "state": state,
        "timeBegan": ts(began),
        "timeEnded": ts(ended),
    }


def render_quarantine(quarantine: dict | None) -> dict | None:
    """synchronizationQuarantine with rendered times."""
    if quarantine is None:
        return None
    return {
        "currentBegan": ts(quarantine["currentBegan"]),
        "nextAttempt": ts(quarantine["nextAttempt"]),
        "reason": quarantine["reason"],
        "seriesBegan": ts(quarantine["seriesBegan"]),
        "seriesCount": quarantine["seriesCount"],
        "error": dict(quarantine["error"]),
    }


def render_job(job: Job, now: float) -> dict:
    """The synchronizationJob body for GET/list/create."""
    progress = []
    cycle = job.cycle
    if cycle is not None and cycle.get("items") is not None:
        progress = [
            {
                "completedUnits": cycle["cursor"],
                "totalUnits": len(cycle["items"]),
                "units": "Entries",
                "progressObservationDateTime": ts(now),
            }
        ]
    counts = [{"key": key, "value": value} for key, value in sorted(job.entry_counts.items())]
    return {
        "id": job.id,
        "templateId": job.template_id,
        "schedule": {"expiration": None, "interval": job.interval, "state": job.schedule_state},
        "status": {
            "code": job.code,
            "countSuccessiveCompleteFailures": job.successive_failures,
            "escrowsPruned": False,
            "lastExecution": job.last_execution,
            "lastSuccessfulExecution": job.last_successful_execution,
            "lastSuccessfulExecutionWithExports": job.last_successful_execution_with_exports,
            "progress": progress,
            "quarantine": render_quarantine(job.quarantine),
            "steadyStateFirstAchievedTime": ts(job.steady_first) or SENTINEL,
            "steadyStateLastAchievedTime": ts(job.steady_last) or SENTINEL,
            "synchronizedEntryCountByType": counts,
            "troubleshootingUrl": None,
        },
        "synchronizationJobSettings": [dict(s) for s in job.settings],
    }


def reset_scopes(body: dict | None) -> set[str]:
    """The resetScope flags of a restart body (empty/absent -> what the portal's Restart does)."""
    if body is None:
        return set(PORTAL_RESTART)
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    criteria = body.get("criteria")
    if criteria is None:
        return set(PORTAL_RESTART)
    if not isinstance(criteria, dict):
        raise GraphError(400, "BadRequest", "'criteria' must be an object with a 'resetScope' string.")
    raw = criteria.get("resetScope")
    if raw is None:
        return set(PORTAL_RESTART)
    if isinstance(raw, list):
        parts = [str(p).strip() for p in raw]
    elif isinstance(raw, str):
        parts = [p.strip() for p in raw.split(",")]
    else:
        raise GraphError(400, "BadRequest", "'criteria.resetScope' must be a comma-separated string.")
    parts = [p for p in parts if p]
    if not parts:
        return set(PORTAL_RESTART)
    for part in parts:
        if part not in RESET_SCOPES:
            raise GraphError(400, "BadRequest", f"Requested value '{part}' was not found. resetScope values: {', '.join(RESET_SCOPES)}.")
    return set(parts)


def delete_threshold(job: Job, creds: dict) -> int | None:
    """Accidental-deletion threshold: SyncNotificationSettings if it sets one, else the job setting.

    Fields ``DeleteThresholdEnabled`` / ``DeleteThresholdValue`` of the secret's JSON value
    (https://learn.microsoft.com/graph/api/synchronization-serviceprincipal-put-synchronization;
    https://github.com/ArvindHarinder1/PrivatePreviewDocs/blob/60ca5d8e8ac8b36cdc02bdeb556fa6a4f289794c/AccidentalDeletes.md).
    """
    raw = creds.get("SyncNotificationSettings")
    if raw:
        try:
            notify = json.loads(raw)
        except ValueError:
            notify = {}
        if isinstance(notify, dict) and "DeleteThresholdEnabled" in notify:
            enabled = str(notify.get("DeleteThresholdEnabled")).lower() == "true"
            if not enabled:
                return None
            try:
                return int(notify.get("DeleteThresholdValue"))
            except (TypeError, ValueError):
                pass
    try:
        return int(job.setting("QuarantineTooManyDeletesThreshold", "500"))
    except (TypeError, ValueError):
        return 500
