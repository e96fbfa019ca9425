"""``apply_profile``: apply a schema profile to one instance - plan first, then write.

Input: :class:`core.profile_contracts.ApplyProfileInput` (``servicePrincipalId``, ``profile``
``<name>.v<version>``, ``dryRun``, ``options``). Steps: ``plan_schema_profile`` (validation against
the template's schema and Graph's parseExpression, the mapping-level diff; nothing written), then,
unless ``dryRun``, ``apply_schema_profile`` (PUT the whole schema when the diff is not empty,
restart a running job with resetScope Watermark, record the profile tag). The custom status shows
the plan (the number of changes) while it applies; the output is the plan with ``applied``,
``restarted``, ``recorded`` - or ``error`` (with the field-level ``problems`` of a refused
profile) when a step failed. Deterministic: no I/O, no clock.
"""

from __future__ import annotations

from typing import Any, Generator

import azure.durable_functions as df

from core import names
from core.contracts import StepError
from core.profile_contracts import ApplyProfileInput, ApplySchemaProfileInput, PlanSchemaProfileInput, SchemaPlanOutput
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step
from orchestrators.blueprint import bp


def _failed(request: ApplyProfileInput, result: dict[str, Any]) -> dict[str, Any]:
    error = StepError.from_dict(result.get("error"))
    return {"servicePrincipalId": request.service_principal_id, "profile": request.profile, "applied": False,
            "error": error.to_dict()}


@bp.function_name(names.APPLY_PROFILE)
@bp.orchestration_trigger(context_name="context")
def apply_profile(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    request = ApplyProfileInput.from_dict(context.get_input() or {})
    options = WorkflowOptions.from_dict(request.options)
    sp_id, profile = str(request.service_principal_id or ""), str(request.profile or "")
    context.set_custom_status({"phase": "planning", "profile": profile})
    planned = yield from call_step(context, names.PLAN_SCHEMA_PROFILE,
                                   PlanSchemaProfileInput(service_principal_id=sp_id, profile=profile), options)
    if not planned.get("ok"):
        return _failed(request, planned)
    plan = SchemaPlanOutput.from_dict(planned)
    if request.dry_run:
        return {**plan.to_dict(), "dryRun": True, "applied": False}
    context.set_custom_status({"phase": "applying", "profile": profile, "changes": len(plan.changes)})
    done = yield from call_step(context, names.APPLY_SCHEMA_PROFILE,
                                ApplySchemaProfileInput(service_principal_id=sp_id, profile=profile,
                                                        job_id=plan.job_id), options)
    if not done.get("ok"):
        return _failed(request, done)
    return SchemaPlanOutput.from_dict(done).to_dict()
