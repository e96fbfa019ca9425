"""Typed contracts of the schema-profile family (activities ``plan_schema_profile``,
``apply_schema_profile``, ``check_instance_drift`` and the ``apply_profile`` orchestration).

Same rules as :mod:`core.contracts` (frozen dataclasses, camelCase JSON, strict inputs naming the
bad field, lenient outputs). Nothing here holds a secret: secret keys travel as names only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from core.contracts import Contract, Input, always, listed, mapped
from core.errors import Problem


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlanSchemaProfileInput(Input):
    service_principal_id: str
    profile: str
    job_id: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApplySchemaProfileInput(Input):
    service_principal_id: str
    profile: str
    job_id: str | None = None
    dry_run: bool | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SchemaPlanOutput(Contract):
    """A plan (and, from ``apply_schema_profile``, what was written): the mapping-level changes."""

    service_principal_id: str | None = always()
    job_id: str | None = always()
    template_id: str | None = None
    profile: str | None = always()
    changes: list[dict[str, Any]] = listed()
    fingerprint: dict[str, Any] = mapped()
    job_schedule_state: str | None = None
    dry_run: bool | None = None
    applied: bool | None = None
    restarted: bool | None = None
    recorded: bool | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckInstanceDriftInput(Input):
    service_principal_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstanceDriftOutput(Contract):
    """What differs from the desired state: ``parts`` names them (``schema``, ``secretKeys``, ``schedule``, ``job``)."""

    service_principal_id: str | None = always()
    display_name: str | None = None
    profile: str | None = always()
    job_id: str | None = always()
    drifted: bool = False
    parts: list[str] = listed()
    schema: dict[str, Any] | None = None
    secret_keys: dict[str, Any] | None = None
    provisioning_settings: dict[str, Any] | None = None
    assignments: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    job: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnforceInstanceDriftInput(Input):
    service_principal_id: str
    instance_key: str | None = None
    dry_run: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnforceInstanceDriftOutput(Contract):
    """What enforce found and did on one instance: ``actions`` per drifted part (``part``, ``action``,
    ``outcome`` planned / done / refused / reported, ``detail``)."""

    service_principal_id: str | None = always()
    instance_key: str | None = None
    display_name: str | None = None
    profile: str | None = None
    dry_run: bool = True
    drifted: bool = False
    parts: list[str] = listed()
    actions: list[dict[str, Any]] = listed()


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnforceDriftInput(Contract):
    """``enforce_drift``'s input: the targets the trigger resolved (``[{instanceKey, servicePrincipalId}]``),
    at most ``maxInFlight`` at a time with ``paceSeconds`` between two groups."""

    enforce_id: str | None = always()
    selector: dict[str, Any] = mapped()
    targets: list[dict[str, Any]] = listed()
    dry_run: bool = True
    max_in_flight: int = 4
    pace_seconds: int = 0
    options: dict[str, Any] = mapped()


def _windows(value: Any, path: str) -> list[Problem]:
    ok = (isinstance(value, list) and 0 < len(value) <= 10
          and all(isinstance(w, dict) and isinstance(w.get("since"), str) and isinstance(w.get("until", ""), (str, type(None)))
                  for w in value))
    return [] if ok else [Problem(path, "1 to 10 windows {since, until?} (a cycle's timeBegan / timeEnded)")]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SummarizeCycleInput(Input):
    """Cycles of one job, each a window of its provisioning logs (``since`` = timeBegan, ``until`` = timeEnded)."""

    service_principal_id: str
    job_id: str
    windows: list[dict[str, Any]] = dataclasses.field(metadata={"check": _windows})


@dataclasses.dataclass(frozen=True, kw_only=True)
class CycleSummary(Contract):
    """What one cycle did: distinct objects failed, disabled or deleted, skipped as out of scope."""

    since: str | None = None
    until: str | None = None
    rows: int = 0
    failed_objects: int = 0
    removed_objects: int = 0
    scoped_out_objects: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class CycleSummaryOutput(Contract):
    """One :class:`CycleSummary` per window asked for; ``complete`` False: the page bound cut the read short."""

    cycles: list[CycleSummary] = listed()
    rows: int = 0
    pages: int = 0
    complete: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApplyProfileInput(Contract):
    """``apply_profile``'s input (from ``POST /api/instances/{key}/schema/apply`` or drift's enforce)."""

    service_principal_id: str | None = always()
    profile: str | None = always()
    instance_key: str | None = None
    dry_run: bool | None = None
    options: dict[str, Any] = mapped()


def _register() -> None:
    from core import names
    from core.contracts import ACTIVITY_CONTRACTS

    ACTIVITY_CONTRACTS.update({
        names.PLAN_SCHEMA_PROFILE: (PlanSchemaProfileInput, SchemaPlanOutput),
        names.APPLY_SCHEMA_PROFILE: (ApplySchemaProfileInput, SchemaPlanOutput),
        names.CHECK_INSTANCE_DRIFT: (CheckInstanceDriftInput, InstanceDriftOutput),
        names.SUMMARIZE_CYCLE: (SummarizeCycleInput, CycleSummaryOutput),
        names.ENFORCE_INSTANCE_DRIFT: (EnforceInstanceDriftInput, EnforceInstanceDriftOutput),
    })


_register()


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutInput(Contract):
    """``schema_rollout``'s input: the selected instances (``[{key, servicePrincipalId}]``, resolved by
    the trigger), the canary keys, the wave size and the pause (seconds) after each wave."""

    rollout_id: str | None = always()
    profile: str | None = always()
    instances: list[dict[str, Any]] = listed()
    canaries: list[str] = listed()
    wave_size: int = 5
    pause_seconds: int = 60
    max_checks: int = 10
    #: activities of one wave at the same time (reads, applies, checks)
    max_in_flight: int = 10
    #: objects the cycle after the change may disable, delete or skip as out of scope beyond the cycle before
    removal_threshold: int = 0
    #: instance key -> the provisionOnDemand subject ``{objectId, objectTypeName}`` run after a canary's apply
    canary_test_users: dict[str, Any] = mapped()
    dry_run: bool | None = None
    options: dict[str, Any] = mapped()
