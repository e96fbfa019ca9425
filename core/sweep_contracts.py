"""Contracts of the paged health sweep (issue #15): ``health_sweep`` -> ``health_sweep_page`` ->
``list_managed_instances`` (one page), ``get_job_status``, ``stage_sweep_report``, and the parent's
``commit_sweep_report``. Same rules as :mod:`core.contracts` (frozen dataclasses, camelCase JSON)."""

from __future__ import annotations

import dataclasses
from typing import Any

from core import names
from core.contracts import ACTIVITY_CONTRACTS, Contract, Input, Problem, always, listed, mapped


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


ACTIVITY_CONTRACTS.update({
    names.STAGE_SWEEP_REPORT: (StageSweepReportInput, StageSweepReportOutput),
    names.COMMIT_SWEEP_REPORT: (CommitSweepReportInput, CommitSweepReportOutput),
})

__all__ = ["CommitSweepReportInput", "CommitSweepReportOutput", "HealthSweepPageInput", "HealthSweepPageOutput",
           "StageSweepReportInput", "StageSweepReportOutput"]
