"""The Durable activities: thin adapters from a JSON dict to one :mod:`core.steps` call.

Contract (architecture.md section 3): success returns ``{"ok": true, ...}``; a permanent failure or
a throttle beyond the in-call budget is *returned* as ``{"ok": false, "error": {"kind", "code",
"message", "step", "retryAfterSeconds"?}}``; a transient failure is *raised* as
:class:`core.errors.TransientError` so ``call_activity_with_retry`` retries it. Inputs and outputs
hold no secret values: credentials travel as Key Vault references.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any, Callable

import azure.durable_functions as df

from core import errors, model, names, reports, steps, sweep

logger = logging.getLogger(__name__)
bp = df.Blueprint()


def _field(payload: dict, name: str, required: bool = True, kind: type = str) -> Any:
    value = payload.get(name)
    if value is None or value == "":
        if required:
            raise errors.InvalidRequest([errors.Problem(name, "is required")])
        return None
    if not isinstance(value, kind):
        raise errors.InvalidRequest([errors.Problem(name, f"must be a {kind.__name__}")])
    return value


def _credentials(payload: dict, required: bool = True) -> dict | None:
    raw = payload.get("credentials")
    if raw is None and not required:
        return None
    return model.parse_credentials(raw, "credentials")


def run(step: str, payload: Any, body: Callable[[dict, steps.StepContext], dict],
        context: steps.StepContext | None = None) -> dict:
    """Run one step under the activity contract; raise only TransientError."""
    try:
        payload = {} if payload is None else payload
        if not isinstance(payload, dict):
            raise errors.InvalidRequest([errors.Problem("$", "activity input must be a JSON object")])
        result = body(payload, context or steps.default_context())
        return {"ok": True, **result}
    except errors.ThrottledError as exc:
        logger.warning("%s throttled: retry after %.1f s", step, exc.retry_after)
        return {"ok": False, "error": exc.to_dict(step)}
    except errors.TransientError as exc:
        logger.warning("%s transient failure: %s", step, exc)
        raise
    except errors.PermissionDenied as exc:  # 401 or 403, whatever Graph's code: name the permissions
        denied = exc.for_step(step)
        logger.error("%s refused: %s", step, denied)
        return {"ok": False, "error": denied.to_dict(step)}
    except errors.PermanentError as exc:
        logger.error("%s failed permanently: %s", step, exc)
        return {"ok": False, "error": exc.to_dict(step)}
    except Exception as exc:  # a bug or an unexpected SDK error: retry, but never echo its text
        # The exception's text may quote a request or response body, so only where it happened is logged.
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}"
                            for f in reversed(traceback.extract_tb(exc.__traceback__)[-4:]))
        logger.error("%s: unexpected %s at %s", step, type(exc).__name__, where)
        raise errors.TransientError(f"{step}: unexpected {type(exc).__name__}", code="UnexpectedError") from None


# -- bodies (plain functions: tests call them with a StepContext) -----------------------------------

def resolve_application_template_body(p: dict, ctx: steps.StepContext) -> dict:
    raw = _field(p, "applicationTemplate", kind=dict)
    c = model._Collector()
    ref = model._parse_template(raw, "applicationTemplate", c)
    if c.problems or ref is None:
        raise errors.InvalidRequest(c.problems)
    return steps.resolve_template(ctx, ref)


def ensure_application_body(p: dict, ctx: steps.StepContext) -> dict:
    labels = p.get("labels")
    return steps.ensure_application(ctx, batch_id=str(p.get("batchId") or ""), instance_key=_field(p, "instanceKey"),
                                    display_name=_field(p, "displayName"), template_id=_field(p, "templateId"),
                                    labels=labels if isinstance(labels, dict) else None)


def wait_until_visible_body(p: dict, ctx: steps.StepContext) -> dict:
    labels = p.get("labels")
    return steps.wait_until_visible(ctx, service_principal_id=_field(p, "servicePrincipalId"),
                                    application_id=_field(p, "applicationId", required=False),
                                    instance_key=_field(p, "instanceKey", required=False),
                                    labels=labels if isinstance(labels, dict) else None,
                                    credentials=_credentials(p, required=False),
                                    sync_all=bool(p.get("syncAll", False)),
                                    notification_email=_field(p, "notificationEmail", required=False),
                                    display_name=_field(p, "displayName", required=False),
                                    template_id=_field(p, "templateId", required=False),
                                    created=bool(p.get("created", False)))


def discard_application_body(p: dict, ctx: steps.StepContext) -> dict:
    return steps.discard_application(ctx, application_id=_field(p, "applicationId"),
                                     service_principal_id=_field(p, "servicePrincipalId"),
                                     instance_key=_field(p, "instanceKey", required=False))


def ensure_job_body(p: dict, ctx: steps.StepContext) -> dict:
    return steps.ensure_job(ctx, service_principal_id=_field(p, "servicePrincipalId"),
                            synchronization_template_id=_field(p, "synchronizationTemplateId", required=False),
                            application_template_id=_field(p, "applicationTemplateId", required=False))


def validate_credentials_body(p: dict, ctx: steps.StepContext) -> dict:
    return steps.validate_credentials(ctx, service_principal_id=_field(p, "servicePrincipalId"),
                                      job_id=_field(p, "jobId"), credentials=_credentials(p) or {})


def _versions(payload: dict, name: str) -> dict | None:
    """An optional ``{Key Vault secret name: version}`` map (names and version ids, never values)."""
    raw = payload.get(name)
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise errors.InvalidRequest([errors.Problem(name, "must be an object of secret name -> version strings")])
    return raw


def _tag_list(payload: dict, name: str) -> list[str] | None:
    """An optional list of tag strings (the tags a previous step left on the service principal)."""
    raw = payload.get(name)
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise errors.InvalidRequest([errors.Problem(name, "must be a list of strings")])
    return raw


def save_secrets_body(p: dict, ctx: steps.StepContext) -> dict:
    return steps.save_secrets(ctx, service_principal_id=_field(p, "servicePrincipalId"),
                              credentials=_credentials(p) or {},
                              notification_email=_field(p, "notificationEmail", required=False),
                              sync_all=bool(p.get("syncAll", False)),
                              recorded_versions=_versions(p, "recordedVersions"),
                              current_tags=_tag_list(p, "currentTags"))


def assign_principals_body(p: dict, ctx: steps.StepContext) -> dict:
    return steps.assign_principals(ctx, service_principal_id=_field(p, "servicePrincipalId"),
                                   users=_field(p, "users", False, list) or [],
                                   groups=_field(p, "groups", False, list) or [],
                                   app_role=_field(p, "appRole", required=False),
                                   count_imported_roles=bool(p.get("countImportedRoles", False)))


def start_job_body(p: dict, ctx: steps.StepContext) -> dict:
    return steps.start_job(ctx, service_principal_id=_field(p, "servicePrincipalId"), job_id=_field(p, "jobId"))


def get_job_status_body(p: dict, ctx: steps.StepContext) -> dict:
    return steps.get_job_status(ctx, service_principal_id=_field(p, "servicePrincipalId"),
                                job_id=_field(p, "jobId", required=False),
                                started_at=_field(p, "startedAt", required=False))


def get_provisioning_errors_body(p: dict, ctx: steps.StepContext) -> dict:
    top = p.get("top", 20)
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise errors.InvalidRequest([errors.Problem("top", "must be a positive integer")])
    return steps.get_provisioning_errors(ctx, service_principal_id=_field(p, "servicePrincipalId"),
                                         job_id=_field(p, "jobId"), since=_field(p, "since"), top=top,
                                         until=_field(p, "until", required=False))


def list_managed_instances_body(p: dict, ctx: steps.StepContext) -> dict:
    """One page of the fleet (core.sweep): ``{cursor?, pageSize?}`` -> ``{instances, nextCursor}``."""
    page_size = p.get("pageSize", ctx.settings.health_sweep_page_size)
    return sweep.list_page(ctx, _field(p, "cursor", required=False), page_size)


def _entries(p: dict) -> list:
    entries = p.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise errors.InvalidRequest([errors.Problem("entries", "must be a list of objects")])
    return entries


def _index(p: dict, name: str) -> int:
    value = p.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise errors.InvalidRequest([errors.Problem(name, "must be a non-negative integer")])
    return value


def stage_sweep_report_body(p: dict, ctx: steps.StepContext) -> dict:
    return reports.stage_lines(ctx.settings, _field(p, "blobName"), _index(p, "block"), _entries(p))


def commit_sweep_report_body(p: dict, ctx: steps.StepContext) -> dict:
    blocks = p.get("blocks")
    if not isinstance(blocks, list) or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0
                                                for b in blocks):
        raise errors.InvalidRequest([errors.Problem("blocks", "must be a list of non-negative integers")])
    return reports.commit(ctx.settings, _field(p, "blobName"), blocks)


def restart_quarantined_job_body(p: dict, ctx: steps.StepContext) -> dict:
    return steps.restart_quarantined_job(ctx, service_principal_id=_field(p, "servicePrincipalId"),
                                         job_id=_field(p, "jobId", required=False),
                                         credentials=_credentials(p, required=False),
                                         sync_all=bool(p.get("syncAll", False)),
                                         notification_email=_field(p, "notificationEmail", required=False))


BODIES: dict[str, Callable[[dict, steps.StepContext], dict]] = {
    names.RESOLVE_APPLICATION_TEMPLATE: resolve_application_template_body,
    names.ENSURE_APPLICATION: ensure_application_body,
    names.WAIT_UNTIL_VISIBLE: wait_until_visible_body,
    names.ENSURE_JOB: ensure_job_body,
    names.VALIDATE_CREDENTIALS: validate_credentials_body,
    names.SAVE_SECRETS: save_secrets_body,
    names.ASSIGN_PRINCIPALS: assign_principals_body,
    names.START_JOB: start_job_body,
    names.GET_JOB_STATUS: get_job_status_body,
    names.GET_PROVISIONING_ERRORS: get_provisioning_errors_body,
    names.LIST_MANAGED_INSTANCES: list_managed_instances_body,
    names.RESTART_QUARANTINED_JOB: restart_quarantined_job_body,
    names.DISCARD_APPLICATION: discard_application_body,
    names.STAGE_SWEEP_REPORT: stage_sweep_report_body,
    names.COMMIT_SWEEP_REPORT: commit_sweep_report_body,
}
assert set(BODIES) == set(names.ACTIVITIES), "every activity name needs a body"


# -- the registered activities (one line each) ------------------------------------------------------

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


@bp.function_name(names.ENSURE_JOB)
@bp.activity_trigger(input_name="payload")
def ensure_job(payload: dict) -> dict:
    return run(names.ENSURE_JOB, payload, ensure_job_body)


@bp.function_name(names.VALIDATE_CREDENTIALS)
@bp.activity_trigger(input_name="payload")
def validate_credentials(payload: dict) -> dict:
    return run(names.VALIDATE_CREDENTIALS, payload, validate_credentials_body)


@bp.function_name(names.SAVE_SECRETS)
@bp.activity_trigger(input_name="payload")
def save_secrets(payload: dict) -> dict:
    return run(names.SAVE_SECRETS, payload, save_secrets_body)


@bp.function_name(names.ASSIGN_PRINCIPALS)
@bp.activity_trigger(input_name="payload")
def assign_principals(payload: dict) -> dict:
    return run(names.ASSIGN_PRINCIPALS, payload, assign_principals_body)


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


@bp.function_name(names.LIST_MANAGED_INSTANCES)
@bp.activity_trigger(input_name="payload")
def list_managed_instances(payload: dict) -> dict:
    return run(names.LIST_MANAGED_INSTANCES, payload, list_managed_instances_body)


@bp.function_name(names.RESTART_QUARANTINED_JOB)
@bp.activity_trigger(input_name="payload")
def restart_quarantined_job(payload: dict) -> dict:
    return run(names.RESTART_QUARANTINED_JOB, payload, restart_quarantined_job_body)


@bp.function_name(names.DISCARD_APPLICATION)
@bp.activity_trigger(input_name="payload")
def discard_application(payload: dict) -> dict:
    return run(names.DISCARD_APPLICATION, payload, discard_application_body)


@bp.function_name(names.STAGE_SWEEP_REPORT)
@bp.activity_trigger(input_name="payload")
def stage_sweep_report(payload: dict) -> dict:
    return run(names.STAGE_SWEEP_REPORT, payload, stage_sweep_report_body)


@bp.function_name(names.COMMIT_SWEEP_REPORT)
@bp.activity_trigger(input_name="payload")
def commit_sweep_report(payload: dict) -> dict:
    return run(names.COMMIT_SWEEP_REPORT, payload, commit_sweep_report_body)
