"""Activities of the synchronization-job family: find or create the job, start it, read its
status and the failures of its latest cycle."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import names, steps
from core.contracts import EnsureJobInput, GetJobStatusInput, GetProvisioningErrorsInput, StartJobInput

bp = df.Blueprint()


def ensure_job_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = EnsureJobInput.from_dict(p)
    return steps.ensure_job(ctx, service_principal_id=i.service_principal_id,
                            synchronization_template_id=i.synchronization_template_id,
                            application_template_id=i.application_template_id)


def start_job_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = StartJobInput.from_dict(p)
    return steps.start_job(ctx, service_principal_id=i.service_principal_id, job_id=i.job_id)


def get_job_status_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = GetJobStatusInput.from_dict(p)
    return steps.get_job_status(ctx, service_principal_id=i.service_principal_id, job_id=i.job_id,
                                started_at=i.started_at)


def get_provisioning_errors_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = GetProvisioningErrorsInput.from_dict(p)
    return steps.get_provisioning_errors(ctx, service_principal_id=i.service_principal_id, job_id=i.job_id,
                                         since=i.since, top=i.top, until=i.until)


BODIES = {
    names.ENSURE_JOB: ensure_job_body,
    names.START_JOB: start_job_body,
    names.GET_JOB_STATUS: get_job_status_body,
    names.GET_PROVISIONING_ERRORS: get_provisioning_errors_body,
}


@bp.function_name(names.ENSURE_JOB)
@bp.activity_trigger(input_name="payload")
def ensure_job(payload: dict) -> dict:
    return run(names.ENSURE_JOB, payload, ensure_job_body)


@bp.function_name(names.START_JOB)
@bp.activity_trigger(input_name="payload")
def start_job(payload: dict) -> dict:
    return run(names.START_JOB, payload, start_job_body)


@bp.function_name(names.GET_JOB_STATUS)
@bp.activity_trigger(input_name="payload")
def get_job_status(payload: dict) -> dict:
    return run(names.GET_JOB_STATUS, payload, get_job_status_body)


@bp.function_name(names.GET_PROVISIONING_ERRORS)
@bp.activity_trigger(input_name="payload")
def get_provisioning_errors(payload: dict) -> dict:
    return run(names.GET_PROVISIONING_ERRORS, payload, get_provisioning_errors_body)
