"""Activities of the health-sweep family: list the instances this app manages (one Graph page per
call), restart a job quarantined for credentials that Key Vault has since replaced, and write the
sweep's per-instance report to blob storage (a block staged per page, committed at the end)."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import names, steps, sweep_report
from core.contracts import ListManagedInstancesInput, RestartQuarantinedJobInput
from core.sweep_contracts import CommitSweepReportInput, StageSweepReportInput

bp = df.Blueprint()


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


BODIES = {
    names.LIST_MANAGED_INSTANCES: list_managed_instances_body,
    names.RESTART_QUARANTINED_JOB: restart_quarantined_job_body,
    names.STAGE_SWEEP_REPORT: stage_sweep_report_body,
    names.COMMIT_SWEEP_REPORT: commit_sweep_report_body,
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
