"""Contracts of the fleet operations (docs/fleet-operations.md): the ``fleet_action`` orchestration's input and
output and its ``fleet_instance_action`` activity's, frozen dataclasses with camelCase JSON as in
:mod:`core.contracts`. No secret values: targets are ids, parameters are a reset scope or a subject id."""

from __future__ import annotations

import dataclasses
from typing import Any

from core.contracts import ACTIVITY_CONTRACTS, Contract, Input, always, listed, mapped


@dataclasses.dataclass(frozen=True, kw_only=True)
class FleetTarget(Contract):
    """One instance an action runs on (resolved by the HTTP trigger when the action was confirmed)."""

    instance_key: str
    service_principal_id: str
    display_name: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class FleetActionInput(Contract):
    """``fleet_action``'s input: what to do, on which targets, how many at a time."""

    action_id: str
    action: str
    params: dict[str, Any] = mapped()
    targets: list[FleetTarget] = listed()
    selector: dict[str, Any] = mapped()
    max_in_flight: int = 4
    options: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class FleetInstanceActionInput(Input):
    """``fleet_instance_action``'s input: one action on one instance."""

    action: str
    instance_key: str
    service_principal_id: str
    params: dict[str, Any] = mapped()
    #: the action's id (``fleet-action:...``), recorded as the instance's ``lastAction`` (absent in
    #: inputs recorded before it was)
    action_id: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class FleetActionReport(Contract):
    """``fleet_action``'s output: one result per target and counts by outcome."""

    action_id: str
    action: str
    params: dict[str, Any] = mapped()
    selector: dict[str, Any] = mapped()
    counts: dict[str, int] = mapped()
    results: list[dict[str, Any]] = listed()
    started_at: str | None = always()
    finished_at: str | None = always()


@dataclasses.dataclass(frozen=True, kw_only=True)
class FleetInstanceActionOutput(Contract):
    """``fleet_instance_action``'s result: the outcome on one instance (``done``, ``unchanged``,
    ``refused``, ``valid``, ``invalid``, ``failed``) and what it did."""

    instance_key: str | None = always()
    service_principal_id: str | None = always()
    job_id: str | None = always()
    action: str | None = always()
    outcome: str | None = always()
    detail: str | None = always()


def _register() -> None:
    from core import names

    ACTIVITY_CONTRACTS[names.FLEET_INSTANCE_ACTION] = (FleetInstanceActionInput, FleetInstanceActionOutput)


_register()
