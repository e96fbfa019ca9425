"""Activities of the health-sweep family: list the instances this app manages (one Graph page per
call), restart a job quarantined for credentials that Key Vault has since replaced, and write the
sweep's per-instance report to blob storage (a block staged per page, committed at the end).

The sweep's duties (orchestrators/health_sweep_page.py): ``check_sweep_page_lag`` (Key Vault
properties, once per secret name of a page), ``start_sweep_rotation`` (starts or finds the
``rotate_secret`` of a lagging version with the Durable client, under the id the Event Grid path
uses), ``record_sweep_results`` (the registry's ``lastSweepResult``, one batch per page) and
``check_credential_expiry`` (once per sweep).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import errors, names, steps, sweep_report
from core.contracts import ListManagedInstancesInput, RestartQuarantinedJobInput
from core.instance_ids import rotation_instance_id
from core.rotation_contracts import RotateSecretInput, parse_canary, parse_canary_by_template
from core.steps import rotation_retry as retry_chain
from core.steps import sweep as sweep_steps
from core.sweep_contracts import (CheckCredentialExpiryInput, CheckSweepPageLagInput, CommitSweepReportInput,
                                  RecordSweepResultsInput, StageSweepReportInput)

bp = df.Blueprint()
logger = logging.getLogger("activities")


def list_managed_instances_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    """``{}``: the whole fleet (a sweep recorded before the paged sweep); ``{cursor?, pageSize}``: one page."""
    i = ListManagedInstancesInput.from_dict(p)
    if i.cursor is None and i.page_size is None:
        return steps.list_managed_instances(ctx)
    return steps.list_managed_page(ctx, i.cursor, i.page_size or ctx.settings.health_sweep_page_size)


def stage_sweep_report_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = StageSweepReportInput.from_dict(p)
    return sweep_report.stage_lines(ctx.settings, i.blob_name, i.block, i.entries)


def commit_sweep_report_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = CommitSweepReportInput.from_dict(p)
    return sweep_report.commit(ctx.settings, i.blob_name, i.blocks)


def restart_quarantined_job_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = RestartQuarantinedJobInput.from_dict(p)
    return steps.restart_quarantined_job(ctx, service_principal_id=i.service_principal_id, job_id=i.job_id,
                                         credentials=i.credential_refs() if i.credentials is not None else None,
                                         sync_all=bool(i.sync_all),
                                         notification_email=i.notification_email,
                                         deletion_threshold=i.deletion_threshold)


def check_sweep_page_lag_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = CheckSweepPageLagInput.from_dict(p)
    return sweep_steps.page_lag(ctx, i.instances)


def record_sweep_results_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = RecordSweepResultsInput.from_dict(p)
    return sweep_steps.record_sweep_results(ctx, run_id=i.run_id, swept_at=i.swept_at, results=i.results)


def check_credential_expiry_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = CheckCredentialExpiryInput.from_dict(p)
    try:
        now = datetime.fromisoformat(i.now)
    except ValueError:
        raise errors.InvalidRequest([errors.Problem("now", "must be an ISO 8601 date and time")]) from None
    return sweep_steps.credential_expiry(ctx, now=now, warning_days=i.warning_days)


def start_sweep_rotation_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    """The ``rotate_secret`` input the sweep starts (validated; source ``sweep``; the canary defaults of
    ``ROTATION_CANARY_BY_TEMPLATE`` and ``ROTATION_CANARY`` for instances whose notes name no canary, as
    the Event Grid path passes them) and its instance id: :func:`rotation_instance_id`, the id the
    Event Grid trigger and ``POST /api/rotations`` start that version's rotation under."""
    request = RotateSecretInput.from_dict(p)
    rotation = {**request.to_dict(), "source": "sweep", "dryRun": False}
    by_template = parse_canary_by_template(ctx.settings.rotation_canary_by_template)
    if by_template and not request.canary_by_template:
        rotation["canaryByTemplate"] = by_template
    default = parse_canary(ctx.settings.rotation_canary)
    if default is not None and request.default_canary is None:
        rotation["defaultCanary"] = default
    return {"rotationId": rotation_instance_id(request.secret_name, request.version), "rotation": rotation}


BODIES = {
    names.LIST_MANAGED_INSTANCES: list_managed_instances_body,
    names.RESTART_QUARANTINED_JOB: restart_quarantined_job_body,
    names.STAGE_SWEEP_REPORT: stage_sweep_report_body,
    names.COMMIT_SWEEP_REPORT: commit_sweep_report_body,
    names.CHECK_SWEEP_PAGE_LAG: check_sweep_page_lag_body,
    names.START_SWEEP_ROTATION: start_sweep_rotation_body,
    names.RECORD_SWEEP_RESULTS: record_sweep_results_body,
    names.CHECK_CREDENTIAL_EXPIRY: check_credential_expiry_body,
}


@bp.function_name(names.LIST_MANAGED_INSTANCES)
@bp.activity_trigger(input_name="payload")
def list_managed_instances(payload: dict) -> dict:
    return run(names.LIST_MANAGED_INSTANCES, payload, list_managed_instances_body)


@bp.function_name(names.RESTART_QUARANTINED_JOB)
@bp.activity_trigger(input_name="payload")
def restart_quarantined_job(payload: dict) -> dict:
    return run(names.RESTART_QUARANTINED_JOB, payload, restart_quarantined_job_body)


@bp.function_name(names.STAGE_SWEEP_REPORT)
@bp.activity_trigger(input_name="payload")
def stage_sweep_report(payload: dict) -> dict:
    return run(names.STAGE_SWEEP_REPORT, payload, stage_sweep_report_body)


@bp.function_name(names.COMMIT_SWEEP_REPORT)
@bp.activity_trigger(input_name="payload")
def commit_sweep_report(payload: dict) -> dict:
    return run(names.COMMIT_SWEEP_REPORT, payload, commit_sweep_report_body)


@bp.function_name(names.CHECK_SWEEP_PAGE_LAG)
@bp.activity_trigger(input_name="payload")
def check_sweep_page_lag(payload: dict) -> dict:
    return run(names.CHECK_SWEEP_PAGE_LAG, payload, check_sweep_page_lag_body)


@bp.function_name(names.RECORD_SWEEP_RESULTS)
@bp.activity_trigger(input_name="payload")
def record_sweep_results(payload: dict) -> dict:
    return run(names.RECORD_SWEEP_RESULTS, payload, record_sweep_results_body)


@bp.function_name(names.CHECK_CREDENTIAL_EXPIRY)
@bp.activity_trigger(input_name="payload")
def check_credential_expiry(payload: dict) -> dict:
    return run(names.CHECK_CREDENTIAL_EXPIRY, payload, check_credential_expiry_body)


@bp.function_name(names.START_SWEEP_ROTATION)
@bp.durable_client_input(client_name="client")
@bp.activity_trigger(input_name="payload")  # the trigger's binding first, as every activity's
async def start_sweep_rotation(payload: dict, client: df.DurableOrchestrationClient) -> dict:
    """Start the rotation of one lagging secret version unless it exists (whoever started it).

    Why an activity with a Durable client and not a sub-orchestration: the rotation must run under
    :func:`rotation_instance_id` so the Event Grid event, its redelivery, a person and the sweep
    never rotate one version twice; a sub-orchestration cannot take an instance id that exists
    (it fails while the instance runs and would run it again once it has completed), and a Python
    orchestrator cannot start an independent orchestration
    (https://github.com/Azure/azure-functions-durable-python/issues/374). Any function may take the
    Durable client binding
    (https://learn.microsoft.com/azure/azure-functions/durable/durable-functions-bindings#orchestration-client).
    Idempotent: a retry finds the instance its first attempt started (``started: false``).

    Follow-ups (:mod:`core.steps.rotation_retry`): when that rotation has finished and left instances
    ``failed`` (or failed as an orchestration), a follow-up rotation of the same version is started
    under ``<rotation id>:retry-<n>`` (n <= ``ROTATION_SWEEP_RETRIES``), unless one of the chain is
    still running or the last one left no retryable failure; the output's ``retryOf`` names the
    rotation it follows. Two sweeps racing find the same next id: at most one of them starts it.
    """
    prepared = run(names.START_SWEEP_ROTATION, payload, start_sweep_rotation_body)
    if not prepared.get("ok"):
        return prepared
    from triggers.rotation import start_rotation

    rotation = prepared["rotation"]
    try:
        chain: list[tuple[str | None, Any]] = []
        for rotation_id in retry_chain.chain_ids(prepared["rotationId"]):
            if not retry_chain.read_further(chain):
                break
            existing = await client.get_status(rotation_id)
            if not existing or existing.runtime_status is None:
                break
            chain.append((existing.runtime_status.value, existing.output))
        plan = retry_chain.plan_sweep_rotation(prepared["rotationId"], chain)
        started = False
        if plan.start:
            _, started = await start_rotation(client, rotation, plan.rotation_id)
    except Exception as exc:  # the Durable HTTP API failed: retried by the orchestrator's retry policy
        logger.warning("%s: rotation %s not started (%s)", names.START_SWEEP_ROTATION, prepared["rotationId"],
                       type(exc).__name__)
        raise errors.TransientError(f"{names.START_SWEEP_ROTATION}: the Durable client failed "
                                    f"({type(exc).__name__})") from None
    if plan.retry_of and started:
        logger.info("%s: follow-up rotation %s started (%s left instances failed)", names.START_SWEEP_ROTATION,
                    plan.rotation_id, plan.retry_of)
    return {"ok": True, "rotationId": plan.rotation_id, "secretName": rotation["secretName"],
            "version": rotation["version"], "started": started,
            **({"retryOf": plan.retry_of} if plan.retry_of else {})}
