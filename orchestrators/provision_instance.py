"""``provision_instance``: set up one app instance step by step, then watch its job.

Contract
--------
Input: ``{"batchId": str, "instance": {key, displayName, applicationTemplate, templateId?,
credentials, assignments?: {users, groups}, syncAll?, labels?, notificationEmail?,
synchronizationTemplateId?}, "options": {...}}`` (the request form of ``core.model`` plus ``key``).
``credentials`` holds Key Vault references and non-secret literals only.

With ``"monitor": false`` in the input it stops after setup and returns the outcome ``configured``
(plus ``jobStartedAt``); ``provision_batch`` does that so that its concurrency bound, which exists
for Graph's write limit, covers only the write-heavy setup and not hours of monitoring.

Output (always returned, never raised, so the batch report has the reason): ``{instanceKey,
displayName, orchestrationId, outcome, reason, error?, ids: {applicationId, appId,
servicePrincipalId, jobId}, timings: {startedAt, configuredAt, finishedAt, setupSeconds,
totalSeconds}, polls, status?, provisioningErrors}`` with ``outcome`` one of steadyState /
quarantined / failed / timedOut.

Custom status: ``{"step": <activity or "monitor_job">, "instanceKey": ...}``.

Every step is an idempotent activity (ensure_* find before they create), so a replay after a crash
or a redelivered activity message never creates a second application or job.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import azure.durable_functions as df

from core import model, names
from orchestrators.blueprint import bp
from orchestrators.options import WorkflowOptions
from orchestrators.report import CONFIGURED, final_outcome, monitor_instance_id
from orchestrators.steps import call_step, failure, failure_message, iso


@bp.function_name(names.PROVISION_INSTANCE)
@bp.orchestration_trigger(context_name="context")
def provision_instance(context: df.DurableOrchestrationContext):
    """Run the setup activities for one instance, then (unless told not to) ``monitor_job``."""
    data: dict[str, Any] = context.get_input() or {}
    options = WorkflowOptions.from_dict(data.get("options"))
    inst: dict[str, Any] = data.get("instance") or {}
    outcome: dict[str, Any] = {
        "instanceKey": inst.get("key"),
        "displayName": inst.get("displayName"),
        "orchestrationId": context.instance_id,
        "outcome": None,
        "reason": None,
        "ids": {},
        "timings": {"startedAt": iso(context.current_utc_datetime)},
        "polls": 0,
        "provisioningErrors": [],
    }

    def step(activity: str, payload: dict[str, Any]):
        context.set_custom_status({"step": activity, "instanceKey": inst.get("key")})
        return (yield from call_step(context, activity, payload, options))

    setup = yield from _setup(context, inst, data.get("batchId"), outcome["ids"], step)
    if not setup.get("ok"):
        error = setup["error"]
        return _done(context, outcome, {"outcome": "failed", "error": error, "reason": _reason(error)})
    outcome["timings"]["configuredAt"] = iso(context.current_utc_datetime)
    if setup.get("roleImport") is not None:  # the job imports roles: the monitor counts them (and assigns)
        outcome["jobKind"] = model.ROLE_IMPORT
        outcome["roleImport"] = setup["roleImport"]
    if data.get("monitor") is False:  # the batch watches the job itself (its concurrency bound is for setup)
        context.set_custom_status({"step": "configured", "instanceKey": inst.get("key")})
        return {**outcome, "outcome": CONFIGURED, "jobStartedAt": setup["startedAt"]}

    context.set_custom_status({"step": names.MONITOR_JOB, "instanceKey": inst.get("key")})
    monitor_input = monitor_job_input(outcome["ids"], setup["startedAt"], context.current_utc_datetime,
                                      data.get("options") or {}, options, setup.get("roleImport"))
    try:
        watched = yield context.call_sub_orchestrator(names.MONITOR_JOB, monitor_input,
                                                      instance_id=monitor_instance_id(context.instance_id))
    except Exception as exc:
        watched = {"outcome": "failed", "reason": f"monitor_job failed: {failure_message(exc)}"}
    return _done(context, outcome, watched or {})


def monitor_job_input(ids: dict[str, Any], job_started_at: str, now: dt.datetime, raw_options: dict[str, Any],
                      options: WorkflowOptions, role_import: dict[str, Any] | None = None) -> dict[str, Any]:
    """The input of ``monitor_job`` for a job started at ``job_started_at`` (deadline counted from ``now``).

    ``role_import`` (a role-import template): ``{users?, groups?, appRole?}``, the assignments the
    monitor makes once the first cycle has imported the roles, after which it counts them.
    """
    monitor = {
        "servicePrincipalId": ids.get("servicePrincipalId"),
        "jobId": ids.get("jobId"),
        "startedAt": job_started_at,
        "deadline": iso(now + dt.timedelta(seconds=options.monitor_deadline)),
        "options": raw_options,
    }
    if role_import is not None:
        monitor["roleImport"] = role_import
    return monitor


def _setup(context, inst: dict[str, Any], batch_id: str | None, ids: dict[str, Any], step):
    """The configuration steps; returns ``{"ok": True, "startedAt": ...}`` or the failed result."""
    template_id = inst.get("templateId")
    job_kind = inst.get("jobKind")
    if not template_id:
        result = yield from step(names.RESOLVE_APPLICATION_TEMPLATE,
                                 {"applicationTemplate": inst.get("applicationTemplate") or {}})
        if not result.get("ok"):
            return result
        template_id = result["templateId"]
        job_kind = result.get("jobKind")

    result = yield from step(names.ENSURE_APPLICATION, {"batchId": batch_id, "instanceKey": inst.get("key"),
                                                        "displayName": inst.get("displayName"),
                                                        "templateId": template_id,
                                                        "labels": inst.get("labels") or {}})
    if not result.get("ok"):
        return result
    for key in ("applicationId", "appId", "servicePrincipalId"):
        ids[key] = result.get(key)
    sp_id = ids["servicePrincipalId"]

    # wait_until_visible also tags the new service principal and stores the credential references
    # (names, never values) in its notes for the health sweep - one PATCH, once the SP reads back: a
    # write right after instantiate fails while it replicates, and ensure_application must not fail
    # after its instantiate succeeded (a retry would instantiate a second app)
    # for a new app the visibility reads are the name look-up, which also settles a concurrent run
    # that created the same instance at the same moment: one app stays, the other run yields
    visible_request = {"servicePrincipalId": sp_id, "applicationId": ids["applicationId"],
                       "instanceKey": inst.get("key"), "labels": inst.get("labels") or {},
                       "credentials": inst.get("credentials") or {}, "syncAll": bool(inst.get("syncAll")),
                       "displayName": inst.get("displayName"), "templateId": template_id,
                       "created": bool(result.get("createdHere"))}
    if inst.get("notificationEmail"):
        visible_request["notificationEmail"] = inst["notificationEmail"]
    result = yield from step(names.WAIT_UNTIL_VISIBLE, visible_request)
    if not result.get("ok"):
        return result
    # the Key Vault versions recorded on the SP (tags): save_secrets writes the record only if it saved others
    recorded_versions = result.get("recordedVersions")
    left_tags = result.get("tags")  # and the tags it left there, the base of a new record
    if result.get("yielded"):
        kept = result.get("kept") or {}
        discard = result.get("discard") or {}
        ids.update(servicePrincipalId=kept.get("servicePrincipalId"), appId=kept.get("appId"), applicationId=None)
        removed = yield from step(names.DISCARD_APPLICATION, {**discard, "instanceKey": inst.get("key")})
        what = "this run deleted its copy" if removed.get("ok") else \
            f"this run's copy (application {discard.get('applicationId')}) could not be deleted: " \
            f"{(removed.get('error') or {}).get('message')}"
        return failure(names.WAIT_UNTIL_VISIBLE, "ConcurrentRequest",
                       f"another run created '{inst.get('displayName')}' at the same moment; its service principal "
                       f"{kept.get('servicePrincipalId')} is kept and set up there, and {what}")

    # the application template id lets the activity reuse its cached list of synchronization templates
    job_request = {"servicePrincipalId": sp_id, "applicationTemplateId": template_id}
    if inst.get("synchronizationTemplateId"):
        job_request["synchronizationTemplateId"] = inst["synchronizationTemplateId"]
    result = yield from step(names.ENSURE_JOB, job_request)
    if not result.get("ok"):
        return result
    ids["jobId"] = result.get("jobId")
    credentials = inst.get("credentials") or {}

    result = yield from step(names.VALIDATE_CREDENTIALS, {"servicePrincipalId": sp_id, "jobId": ids["jobId"],
                                                          "credentials": credentials})
    if not result.get("ok"):
        return result

    secrets_request = {"servicePrincipalId": sp_id, "credentials": credentials,
                       "syncAll": bool(inst.get("syncAll"))}
    if inst.get("notificationEmail"):
        secrets_request["notificationEmail"] = inst["notificationEmail"]
    if isinstance(recorded_versions, dict):
        secrets_request["recordedVersions"] = recorded_versions
    if isinstance(left_tags, list):
        secrets_request["currentTags"] = left_tags
    result = yield from step(names.SAVE_SECRETS, secrets_request)
    if not result.get("ok"):
        return result

    assignments = inst.get("assignments") or {}
    principals = {"users": assignments.get("users") or [], "groups": assignments.get("groups") or []}
    if assignments.get("appRole"):
        principals["appRole"] = assignments["appRole"]
    # a role-import job (AWS Single-Account Access) writes the app's roles into the SP during its
    # first cycle: a role named in the request does not exist before, so those assignments wait
    # for steady state (monitor_job); without a named role, principals get the default role now
    role_import: dict[str, Any] | None = {} if job_kind == model.ROLE_IMPORT else None
    if role_import is not None and principals.get("appRole"):
        role_import = principals
    elif principals["users"] or principals["groups"]:
        result = yield from step(names.ASSIGN_PRINCIPALS, {"servicePrincipalId": sp_id, **principals})
        if not result.get("ok"):
            return result

    result = yield from step(names.START_JOB, {"servicePrincipalId": sp_id, "jobId": ids["jobId"]})
    if not result.get("ok"):
        return result
    return {"ok": True, "startedAt": result.get("startedAt") or iso(context.current_utc_datetime),
            "roleImport": role_import}


def _reason(error: dict[str, Any]) -> str:
    step = error.get("step") or "setup"
    detail = error.get("message") or error.get("code") or "failed"
    return f"{step}: {detail}"


def _done(context, outcome: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    done = final_outcome(outcome, result, iso(context.current_utc_datetime))
    context.set_custom_status({"step": "done", "instanceKey": done["instanceKey"], "outcome": done["outcome"]})
    return done
