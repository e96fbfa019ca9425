"""Activities of the credential-rotation family: who references a secret, rotate one instance to a
new Key Vault version, whether an instance lags Key Vault (for the health sweep), rebuild the fleet
registry from Graph and Key Vault."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import names, steps
from core.rotation_contracts import ListSecretDependentsInput, RebuildRegistryInput, RotateInstanceInput
from core.steps import rotation

bp = df.Blueprint()


def list_secret_dependents_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = ListSecretDependentsInput.from_dict(p)
    return rotation.secret_dependents(ctx, secret_name=i.secret_name)


def rotate_instance_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = RotateInstanceInput.from_dict(p)
    return rotation.rotate_instance(ctx, service_principal_id=i.service_principal_id, secret_name=i.secret_name,
                                    version=i.version, dry_run=i.dry_run, canary=i.canary,
                                    canary_by_template=i.canary_by_template, default_canary=i.default_canary)


def rebuild_fleet_registry_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    RebuildRegistryInput.from_dict(p)
    return rotation.rebuild_registry(ctx)


BODIES = {
    names.LIST_SECRET_DEPENDENTS: list_secret_dependents_body,
    names.ROTATE_INSTANCE: rotate_instance_body,
    names.REBUILD_FLEET_REGISTRY: rebuild_fleet_registry_body,
}


@bp.function_name(names.LIST_SECRET_DEPENDENTS)
@bp.activity_trigger(input_name="payload")
def list_secret_dependents(payload: dict) -> dict:
    return run(names.LIST_SECRET_DEPENDENTS, payload, list_secret_dependents_body)


@bp.function_name(names.ROTATE_INSTANCE)
@bp.activity_trigger(input_name="payload")
def rotate_instance(payload: dict) -> dict:
    return run(names.ROTATE_INSTANCE, payload, rotate_instance_body)


@bp.function_name(names.REBUILD_FLEET_REGISTRY)
@bp.activity_trigger(input_name="payload")
def rebuild_fleet_registry(payload: dict) -> dict:
    return run(names.REBUILD_FLEET_REGISTRY, payload, rebuild_fleet_registry_body)
