"""Tunable numbers of the provisioning simulation, all in *simulated* seconds.

Defaults follow the documented behaviour of the real service (cycle times:
https://learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-when-will-provisioning-finish-specific-user;
quarantine: https://learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-quarantine-status);
the emulator's clock ``scale`` compresses them for demos and tests. Values the documents do not
pin down are marked UNCONFIRMED and kept here so they can be changed without code edits.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class EngineSettings:
    """Every knob of the simulation. Build with :meth:`from_dict` (unknown keys are ignored)."""

    # UNCONFIRMED: the docs only say the first cycle starts "within minutes" of Start.
    cycle_start_delay_seconds: float = 20.0
    # DOC: an initial cycle takes 0.01-0.08 min per assigned user, group or member.
    initial_seconds_per_object_min: float = 0.6
    initial_seconds_per_object_max: float = 4.8
    # Incremental changes: matching existing users is ~2x faster than creating them (DOC, the
    # "when will provisioning finish" article linked above).
    incremental_seconds_per_object_min: float = 0.3
    incremental_seconds_per_object_max: float = 2.4
    # A cycle with nothing to do still takes a moment (import of deltas).
    minimum_cycle_seconds: float = 2.0
    # DOC: incremental cycles run "approximately every 40 minutes" (schedule interval PT40M).
    incremental_interval_seconds: float = 2400.0
    # DOC (quarantine article, 2023-2025 text): retries 6 h, 12 h, 24 h, then every 24 h.
    quarantine_backoff_seconds: tuple[float, ...] = (21600.0, 43200.0, 86400.0)
    # DOC: after more than four weeks in quarantine the job is disabled.
    quarantine_disable_after_seconds: float = 28 * 86400.0
    # DOC (https://learn.microsoft.com/entra/identity/app-provisioning/application-provisioning-quarantine-status,
    # "Escrow thresholds"): "5,000 failures are the minimum to start evaluating whether to quarantine
    # because of too many failures"; then quarantine when more than 40% of events fail. Below the
    # minimum failures are only logged and the job reaches steady state. Failures counted = the job's
    # escrowed entries (non-transient), which restart with resetScope Escrows clears. Credential
    # problems quarantine at once, whatever the count. Tests of escrow quarantine on small jobs set
    # escrowQuarantineMinFailures low explicitly.
    escrow_quarantine_proportion: float = 0.4
    escrow_quarantine_min_failures: int = 5000
    # OBS: a wrong-case secret key gave 500 InternalError (msgraph-beta-sdk-java#372); 400 is a choice.
    secret_key_error_status: int = 500
    # Sources disagree on PUT secrets. "merge" (default, the harder one for a client) keeps saved keys
    # the PUT does not name: Terraform's azuread provider removes a key only by PUTting it with an
    # empty value (synchronizationSecretResourceDelete in
    # https://github.com/hashicorp/terraform-provider-azuread/blob/main/internal/services/synchronization/synchronization_secret_resource.go),
    # while its update waits for the stored count to equal the count sent (a replace). "replace" =
    # the stored set is exactly what was PUT. An empty value removes a key in both.
    secrets_put_mode: str = "merge"
    # UNCONFIRMED: what Start does without saved credentials. "error" answers 400; "quarantine"
    # accepts and lets the first cycle fail with EncounteredQuarantineException.
    start_without_secrets: str = "error"
    # Which restarts lift a quarantine. Graph documents resetScope QuarantineState as "Temporarily lifts
    # the quarantine" and an empty criteria as the portal's Restart (QuarantineState, Watermark, Escrows)
    # (https://learn.microsoft.com/graph/api/resources/synchronization-synchronizationjobrestartcriteria);
    # whether a restart with other scopes only (Watermark, ForceDeletes, ...) lifts it too is UNCONFIRMED.
    # "withQuarantineState" (default, the harder one for a client): only QuarantineState, Full or an empty
    # criteria lift it, other scopes are applied and the job stays quarantined until its next attempt;
    # "always": every restart lifts it (as start does).
    restart_lifts_quarantine: str = "withQuarantineState"
    # UNCONFIRMED: schedule.state of a paused job; the docs' Paused examples show "Disabled".
    pause_schedule_state: str = "Disabled"
    # UNCONFIRMED (portal default "sync assigned only" vs the docs' "generally True").
    default_sync_all: bool = False
    # UNCONFIRMED: the error code of a failed validateCredentials (the portal's Test Connection shows this one).
    validate_error_code: str = "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable"
    # DOC (https://learn.microsoft.com/graph/api/provisioningobjectsummary-list): the current page says every
    # provisioning-log filter is case-sensitive
    # (an older one: all but status). True compares string values ignoring case instead.
    log_filters_ignore_case: bool = False
    # UNCONFIRMED (https://learn.microsoft.com/graph/api/synchronization-synchronization-post-jobs documents no
    # limit, and public scripts meet several jobs per service principal): whether a second job with a
    # templateId the service principal already has a job for is refused. 201 creates it; 409 answers Conflict.
    duplicate_job_status: int = 201
    # Provisioning log rows kept in memory (oldest dropped first).
    log_capacity: int = 20000
    # Largest clock jump processed cycle by cycle for an idle, steady job; beyond it idle cycles are coalesced.
    max_idle_cycles_replayed: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict | None) -> "EngineSettings":
        """Settings from a plain dict (camelCase or snake_case keys); unknown keys land in ``extra``."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in (values or {}).items():
            name = _snake(key)
            if name in known and name != "extra":
                kwargs[name] = tuple(value) if name == "quarantine_backoff_seconds" else value
            else:
                extra[key] = value
        if kwargs.get("secrets_put_mode", "merge") not in ("replace", "merge"):
            raise ValueError("secrets_put_mode must be 'replace' or 'merge'")
        if kwargs.get("start_without_secrets", "error") not in ("error", "quarantine"):
            raise ValueError("start_without_secrets must be 'error' or 'quarantine'")
        if kwargs.get("secret_key_error_status", 500) not in (400, 500):
            raise ValueError("secret_key_error_status must be 400 or 500")
        if kwargs.get("restart_lifts_quarantine", "withQuarantineState") not in ("withQuarantineState", "always"):
            raise ValueError("restart_lifts_quarantine must be 'withQuarantineState' or 'always'")
        if kwargs.get("pause_schedule_state", "Disabled") not in ("Disabled", "Paused"):
            raise ValueError("pause_schedule_state must be 'Disabled' or 'Paused'")
        if kwargs.get("duplicate_job_status", 201) not in (201, 409) or isinstance(kwargs.get("duplicate_job_status"), bool):
            raise ValueError("duplicate_job_status must be 201 or 409")
        return cls(**kwargs, extra=extra)

    START_ONLY = ("logCapacity", "tenantId", "targetsPath")  # read once, when the service is built (not a field)

    def public(self) -> dict[str, Any]:
        """The knobs with camelCase names, as ``GET /_emulator/settings`` shows them."""
        return {_camel(f.name): getattr(self, f.name) for f in fields(self) if f.name != "extra"}

    def with_changes(self, changes: dict) -> "EngineSettings":
        """A copy with ``changes`` (camelCase or snake_case) applied; ValueError names a bad key.

        Each value must have the type of the default it replaces (ints are accepted for floats),
        so a typo or a string where a number belongs is refused instead of failing mid-cycle.
        """
        if not isinstance(changes, dict):
            raise ValueError("provisioning settings must be a JSON object")
        current = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        for key, value in changes.items():
            name = _snake(key)
            if name not in current or name == "log_capacity":
                raise ValueError(f"unknown or start-only provisioning setting '{key}'")  # start-only: logCapacity, tenantId, targetsPath
            default = current[name]
            if isinstance(default, tuple):
                ok = isinstance(value, (list, tuple)) and all(_is_number(v) and v > 0 for v in value)
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, (int, float)):
                ok = _is_number(value) and value >= 0 and (isinstance(value, int) or isinstance(default, float))
            else:
                ok = isinstance(value, str)
            if not ok:
                raise ValueError(f"provisioning setting '{key}' must be like {default!r}")
            current[name] = value
        return EngineSettings.from_dict({**current, **self.extra})

    def quarantine_backoff(self, series_count: int) -> float:
        """Seconds until the next re-evaluation after the ``series_count``-th imposition (1-based)."""
        steps = self.quarantine_backoff_seconds or (86400.0,)
        return steps[min(max(series_count, 1), len(steps)) - 1]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper():
            out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out).lstrip("_")
