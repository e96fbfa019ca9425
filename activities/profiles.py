"""Activities of the schema-profile family: plan (validate + mapping-level diff, no write), apply
(PUT the whole schema, restart, record the profile), drift (what differs from the desired state)."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import names, steps
from core.profile_contracts import (ApplySchemaProfileInput, CheckInstanceDriftInput, CycleSummaryOutput,
                                    EnforceInstanceDriftInput, EnforceInstanceDriftOutput, InstanceDriftOutput,
                                    PlanSchemaProfileInput, SchemaPlanOutput, SummarizeCycleInput)
from core.steps import profiles as profile_steps

bp = df.Blueprint()


def plan_schema_profile_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = PlanSchemaProfileInput.from_dict(p)
    found = profile_steps.plan(ctx, service_principal_id=i.service_principal_id, profile=i.profile, job_id=i.job_id)
    return SchemaPlanOutput.from_dict(found).to_dict()


def apply_schema_profile_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = ApplySchemaProfileInput.from_dict(p)
    done = profile_steps.apply_profile(ctx, service_principal_id=i.service_principal_id, profile=i.profile,
                                       job_id=i.job_id, dry_run=bool(i.dry_run))
    return SchemaPlanOutput.from_dict(done).to_dict()


def check_instance_drift_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = CheckInstanceDriftInput.from_dict(p)
    return InstanceDriftOutput.from_dict(profile_steps.drift(ctx, service_principal_id=i.service_principal_id)).to_dict()


def summarize_cycle_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = SummarizeCycleInput.from_dict(p)
    return CycleSummaryOutput.from_dict(profile_steps.cycle_summary(
        ctx, service_principal_id=i.service_principal_id, job_id=i.job_id, windows=list(i.windows))).to_dict()


def enforce_instance_drift_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = EnforceInstanceDriftInput.from_dict(p)
    done = profile_steps.enforce_drift(ctx, service_principal_id=i.service_principal_id, dry_run=i.dry_run)
    return EnforceInstanceDriftOutput.from_dict({**done, "instanceKey": i.instance_key}).to_dict()


BODIES = {
    names.PLAN_SCHEMA_PROFILE: plan_schema_profile_body,
    names.APPLY_SCHEMA_PROFILE: apply_schema_profile_body,
    names.CHECK_INSTANCE_DRIFT: check_instance_drift_body,
    names.SUMMARIZE_CYCLE: summarize_cycle_body,
    names.ENFORCE_INSTANCE_DRIFT: enforce_instance_drift_body,
}


@bp.function_name(names.PLAN_SCHEMA_PROFILE)
@bp.activity_trigger(input_name="payload")
def plan_schema_profile(payload: dict) -> dict:
    return run(names.PLAN_SCHEMA_PROFILE, payload, plan_schema_profile_body)


@bp.function_name(names.APPLY_SCHEMA_PROFILE)
@bp.activity_trigger(input_name="payload")
def apply_schema_profile(payload: dict) -> dict:
    return run(names.APPLY_SCHEMA_PROFILE, payload, apply_schema_profile_body)


@bp.function_name(names.CHECK_INSTANCE_DRIFT)
@bp.activity_trigger(input_name="payload")
def check_instance_drift(payload: dict) -> dict:
    return run(names.CHECK_INSTANCE_DRIFT, payload, check_instance_drift_body)


@bp.function_name(names.SUMMARIZE_CYCLE)
@bp.activity_trigger(input_name="payload")
def summarize_cycle(payload: dict) -> dict:
    return run(names.SUMMARIZE_CYCLE, payload, summarize_cycle_body)


@bp.function_name(names.ENFORCE_INSTANCE_DRIFT)
@bp.activity_trigger(input_name="payload")
def enforce_instance_drift(payload: dict) -> dict:
    return run(names.ENFORCE_INSTANCE_DRIFT, payload, enforce_instance_drift_body)
