"""Contracts of the paged health sweep (issue #15): ``health_sweep`` -> ``health_sweep_page`` ->
``list_managed_instances`` (one page), ``get_job_status``, ``stage_sweep_report``, and the parent's
``commit_sweep_report``. Same rules as :mod:`core.contracts` (frozen dataclasses, camelCase JSON)."""

from __future__ import annotations

import dataclasses
from typing import Any

from core import names
from core.contracts import ACTIVITY_CONTRACTS, UNSET, Contract, Input, Problem, always, listed, mapped


def _non_negative(value: Any, path: str) -> list[Problem]:
    return [] if isinstance(value, int) and value >= 0 else [Problem(path, "must be a non-negative integer")]


def _non_negatives(value: Any, path: str) -> list[Problem]:
    return [] if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value) else [
        Problem(path, "must be a list of non-negative integers")]


@dataclasses.dataclass(frozen=True, kw_only=True)
class HealthSweepPageInput(Contract):
    """``health_sweep_page``'s input: which page (its cursor: None for the first), where its report
    lines go (block ``page`` of ``blobName``), how many unhealthy entries it may still return
    (``reportLimit``), and ``restageOnly`` for a page swept again only to write its lines."""

    options: dict[str, Any] = mapped()
    cursor: str | None = always()
    page: int = 0
    sweep_id: str | None = None
    blob_name: str | None = None
    report_limit: int | None = None
    restage_only: bool = dataclasses.field(default=False, metadata={"omit_false": True})
    #: the parent's start (context time, ISO 8601): names this sweep run (the timer reuses one instance id) and
    #: switches on the page's duties that a page started before them never had (the classification record)
    started_at: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class HealthSweepPageOutput(Contract):
    """``health_sweep_page``'s output: tallies, its unhealthy entries (bounded), restart outcomes,
    whether its report block was staged, and the next page's cursor."""

    counts: dict[str, int] = mapped()
    quarantined_by_reason: dict[str, int] = mapped()
    unhealthy: list[dict[str, Any]] = listed()
    unhealthy_omitted: int = 0
    restarted: list[dict[str, Any]] = listed()
    staged: bool = False
    block: int | None = always()
    next_cursor: str | None = always()
    # the page's duties (absent from a page recorded before them)
    #: instances whose saved Key Vault version lags the current one (at most the page's report limit)
    lagging: list[dict[str, Any]] | None = UNSET
    lagging_count: int | None = UNSET
    #: the rotations this page asked for: ``{rotationId, secretName, version, started}`` (or ``error``)
    rotations: list[dict[str, Any]] | None = UNSET
    classification_changes: int | None = UNSET
    #: with SWEEP_DRIFT_CHECK: drifted instances per part (orchestrators/sweep_drift.py)
    drift_counts: dict[str, int] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageSweepReportInput(Input):
    """``stage_sweep_report``: one page's report lines staged as block ``block`` of ``blobName``."""

    blob_name: str
    block: int = dataclasses.field(metadata={"check": _non_negative})
    entries: list[dict[str, Any]] = listed()


@dataclasses.dataclass(frozen=True, kw_only=True)
class StageSweepReportOutput(Contract):
    block: int = 0
    bytes: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommitSweepReportInput(Input):
    """``commit_sweep_report``: commit the staged ``blocks`` (page numbers) of ``blobName`` in order."""

    blob_name: str
    blocks: list[int] = dataclasses.field(default_factory=list, metadata={"check": _non_negatives})


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommitSweepReportOutput(Contract):
    """Either the link (``container``, ``blobName``, ``url`` without any SAS) or ``missing`` pages."""

    missing: list[int] | None = None
    container: str | None = None
    blob_name: str | None = None
    url: str | None = None


def _secret_map(value: Any, path: str) -> list[Problem]:
    ok = isinstance(value, dict) and all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items())
    return [] if ok else [Problem(path, "must map secret names to a version id or null")]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PageLagInstance(Contract):
    """One listed instance for the lag check: its Key Vault references with the version saved (kv-saved tag)."""

    service_principal_id: str | None = None
    saved_versions: dict[str, str | None] = dataclasses.field(default_factory=dict, metadata={"check": _secret_map})


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckSweepPageLagInput(Input):
    """``check_sweep_page_lag``: one page's instances (those with Key Vault references)."""

    instances: list[PageLagInstance] = listed()


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckSweepPageLagOutput(Contract):
    """The lagging instances (``{servicePrincipalId, secrets: {name: {saved, current}}}``), the distinct
    ``rotations`` to start (``{secretName, version}``) and how many secrets Key Vault was asked about."""

    lagging: list[dict[str, Any]] = listed()
    rotations: list[dict[str, str]] = listed()
    secrets_read: int = 0
    #: secrets Key Vault refused to describe (401/403): ``{name: reason}``, no lag known for them
    unreadable: dict[str, str] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class StartSweepRotationInput(Input):
    """``start_sweep_rotation``: the ``rotate_secret`` input to start (or find) - the JSON of
    :class:`core.rotation_contracts.RotateSecretInput`, which the activity parses again for its field
    checks (not imported here: that module imports this one's registry through core.contracts)."""

    secret_name: str
    version: str
    dry_run: bool = False
    source: str | None = None
    canary: dict[str, str] | None = None
    options: dict[str, Any] = mapped()


@dataclasses.dataclass(frozen=True, kw_only=True)
class StartSweepRotationOutput(Contract):
    """``start_sweep_rotation``: the rotation's id and whether this call started it (false: it existed,
    started by the Key Vault event, a person or an earlier page); a follow-up's ``retryOf``."""

    rotation_id: str | None = None
    secret_name: str | None = None
    version: str | None = None
    started: bool = False
    #: a follow-up rotation (``<rotation id>:retry-<n>``): the rotation of the chain it follows
    retry_of: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepResult(Contract):
    """One instance's classification in this sweep run, for the registry's ``lastSweepResult``."""

    service_principal_id: str
    category: str
    reason: str | None = None
    cause: str | None = None
    lags: bool | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecordSweepResultsInput(Input):
    """``record_sweep_results``: a page's classifications, recorded in the registry in one batch per 100."""

    run_id: str
    swept_at: str
    results: list[SweepResult] = listed()


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecordSweepResultsOutput(Contract):
    """``changes``: ``{servicePrincipalId, from, to}`` per instance whose classification changed since its
    previous sweep (only when the record was written); ``error`` when the registry could not be used."""

    recorded: bool = False
    changes: list[dict[str, Any]] = listed()
    error: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckCredentialExpiryInput(Input):
    """``check_credential_expiry``: the referenced secrets expiring within ``warningDays`` of ``now``, or expired."""

    now: str
    warning_days: int = dataclasses.field(default=30, metadata={"check": _non_negative})


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckCredentialExpiryOutput(Contract):
    """``secrets``: ``{secretName, currentVersion, expires, daysLeft, state, instances}`` (a count), expired first."""

    checked: int = 0
    secrets: list[dict[str, Any]] = listed()


ACTIVITY_CONTRACTS.update({
    names.CHECK_SWEEP_PAGE_LAG: (CheckSweepPageLagInput, CheckSweepPageLagOutput),
    names.START_SWEEP_ROTATION: (StartSweepRotationInput, StartSweepRotationOutput),
    names.RECORD_SWEEP_RESULTS: (RecordSweepResultsInput, RecordSweepResultsOutput),
    names.CHECK_CREDENTIAL_EXPIRY: (CheckCredentialExpiryInput, CheckCredentialExpiryOutput),
    names.STAGE_SWEEP_REPORT: (StageSweepReportInput, StageSweepReportOutput),
    names.COMMIT_SWEEP_REPORT: (CommitSweepReportInput, CommitSweepReportOutput),
})

__all__ = ["CheckCredentialExpiryInput", "CheckCredentialExpiryOutput", "CheckSweepPageLagInput",
           "CheckSweepPageLagOutput", "CommitSweepReportInput", "CommitSweepReportOutput", "HealthSweepPageInput",
           "HealthSweepPageOutput", "PageLagInstance", "RecordSweepResultsInput", "RecordSweepResultsOutput",
           "StageSweepReportInput", "StageSweepReportOutput", "StartSweepRotationInput", "StartSweepRotationOutput",
           "SweepResult"]
