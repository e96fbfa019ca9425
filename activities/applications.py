"""Activities of the application family: resolve the gallery template, create (or find) the
application and its service principal, wait until it replicates, discard a concurrent run's copy."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import names, steps
from core.contracts import DiscardApplicationInput, EnsureApplicationInput, ResolveTemplateInput, WaitUntilVisibleInput

bp = df.Blueprint()


def resolve_application_template_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = ResolveTemplateInput.from_dict(p)
    return steps.resolve_template(ctx, i.template_ref)


def ensure_application_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = EnsureApplicationInput.from_dict(p)
    return steps.ensure_application(ctx, batch_id=i.batch_id or "", instance_key=i.instance_key,
                                    display_name=i.display_name, template_id=i.template_id, labels=i.labels)


def wait_until_visible_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = WaitUntilVisibleInput.from_dict(p)
    return steps.wait_until_visible(ctx, service_principal_id=i.service_principal_id,
                                    application_id=i.application_id, instance_key=i.instance_key,
                                    labels=i.labels, credentials=i.credential_refs() if i.credentials is not None else None,
                                    sync_all=i.sync_all, notification_email=i.notification_email,
                                    display_name=i.display_name, template_id=i.template_id, created=i.created,
                                    canary=i.canary, deletion_threshold=i.deletion_threshold,
                                    assignments=i.assignments)


def discard_application_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = DiscardApplicationInput.from_dict(p)
    return steps.discard_application(ctx, application_id=i.application_id,
                                     service_principal_id=i.service_principal_id, instance_key=i.instance_key)


BODIES = {
    names.RESOLVE_APPLICATION_TEMPLATE: resolve_application_template_body,
    names.ENSURE_APPLICATION: ensure_application_body,
    names.WAIT_UNTIL_VISIBLE: wait_until_visible_body,
    names.DISCARD_APPLICATION: discard_application_body,
}


@bp.function_name(names.RESOLVE_APPLICATION_TEMPLATE)
@bp.activity_trigger(input_name="payload")
def resolve_application_template(payload: dict) -> dict:
    return run(names.RESOLVE_APPLICATION_TEMPLATE, payload, resolve_application_template_body)


@bp.function_name(names.ENSURE_APPLICATION)
@bp.activity_trigger(input_name="payload")
def ensure_application(payload: dict) -> dict:
    return run(names.ENSURE_APPLICATION, payload, ensure_application_body)


@bp.function_name(names.WAIT_UNTIL_VISIBLE)
@bp.activity_trigger(input_name="payload")
def wait_until_visible(payload: dict) -> dict:
    return run(names.WAIT_UNTIL_VISIBLE, payload, wait_until_visible_body)


@bp.function_name(names.DISCARD_APPLICATION)
@bp.activity_trigger(input_name="payload")
def discard_application(payload: dict) -> dict:
    return run(names.DISCARD_APPLICATION, payload, discard_application_body)
