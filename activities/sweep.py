"""Activities of the health-sweep family: list the instances this app manages, restart a job
quarantined for credentials that Key Vault has since replaced."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import names, steps
from core.contracts import ListManagedInstancesInput, RestartQuarantinedJobInput

bp = df.Blueprint()


def list_managed_instances_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    ListManagedInstancesInput.from_dict(p)
    return steps.list_managed_instances(ctx)


def restart_quarantined_job_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = RestartQuarantinedJobInput.from_dict(p)
    return steps.restart_quarantined_job(ctx, service_principal_id=i.service_principal_id, job_id=i.job_id,
                                         credentials=i.credential_refs() if i.credentials is not None else None,
                                         sync_all=bool(i.sync_all),
                                         notification_email=i.notification_email)


BODIES = {
    names.LIST_MANAGED_INSTANCES: list_managed_instances_body,
    names.RESTART_QUARANTINED_JOB: restart_quarantined_job_body,
}


@bp.function_name(names.LIST_MANAGED_INSTANCES)
@bp.activity_trigger(input_name="payload")
def list_managed_instances(payload: dict) -> dict:
    return run(names.LIST_MANAGED_INSTANCES, payload, list_managed_instances_body)


@bp.function_name(names.RESTART_QUARANTINED_JOB)
@bp.activity_trigger(input_name="payload")
def restart_quarantined_job(payload: dict) -> dict:
    return run(names.RESTART_QUARANTINED_JOB, payload, restart_quarantined_job_body)
