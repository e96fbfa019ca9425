"""``provision_instance``: set up one app instance step by step, then watch its job.

Contract
--------
Input: ``{"batchId": str, "instance": {key, displayName, applicationTemplate, templateId?,
credentials, assignments?: {users, groups}, syncAll?, labels?, notificationEmail?,
synchronizationTemplateId?}, "options": {...}}`` (the request form of ``core.model`` plus ``key``).
``credentials`` holds Key Vault references and non-secret literals only.

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

from core import names
from orchestrators.blueprint import bp
from orchestrators.options import WorkflowOptions
from orchestrators.report import monitor_instance_id
from orchestrators.steps import call_step, failure_message, iso, seconds_between


@bp.function_name(names.PROVISION_INSTANCE)
@bp.orchestration_trigger(context_name="context")
def provision_instance(context: df.DurableOrchestrationContext):
    """Run the setup activities for one instance, then ``monitor_job``; return its outcome."""
    data: dict[str, Any] = context.get_input() or {}
    options = WorkflowOptions.from_dict(data.get("options"))
    inst: dict[str, Any] = data.get("instance") or {}
    started_at = iso(context.current_utc_datetime)
    outcome: dict[str, Any] = {
        "instanceKey": inst.get("key"),
        "displayName": inst.get("displayName"),
        "orchestrationId": context.instance_id,
        "outcome": None,
        "reason": None,
        "ids": {},
        "timings": {"startedAt": started_at},
        "polls": 0,
        "provisioningErrors": [],
    }

    def step(activity: str, payload: dict[str, Any]):
        context.set_custom_status({"step": activity, "instanceKey": inst.get("key")})
        return (yield from call_step(context, activity, payload, options))

    setup = yield from _setup(context, inst, data.get("batchId"), outcome["ids"], step)
    if not setup.get("ok"):
        return _finish(context, outcome, {"outcome": "failed", "error": setup["error"],
                                          "reason": _reason(setup["error"])})
    outcome["timings"]["configuredAt"] = iso(context.current_utc_datetime)

    context.set_custom_status({"step": names.MONITOR_JOB, "instanceKey": inst.get("key")})
    started = setup["startedAt"]
    deadline = context.current_utc_datetime + dt.timedelta(seconds=options.monitor_deadline)
    monitor_input = {
        "servicePrincipalId": outcome["ids"]["servicePrincipalId"],
        "jobId": outcome["ids"]["jobId"],
        "startedAt": started,
        "deadline": iso(deadline),
        "options": data.get("options") or {},
    }
    try:
        watched = yield context.call_sub_orchestrator(names.MONITOR_JOB, monitor_input,
                                                      instance_id=monitor_instance_id(context.instance_id))
    except Exception as exc:
        watched = {"outcome": "failed", "reason": f"monitor_job failed: {failure_message(exc)}"}
    return _finish(context, outcome, watched or {})


def _setup(context, inst: dict[str, Any], batch_id: str | None, ids: dict[str, Any], step):
    """The configuration steps; returns ``{"ok": True, "startedAt": ...}`` or the failed result."""
    template_id = inst.get("templateId")
    if not template_id:
        result = yield from step(names.RESOLVE_APPLICATION_TEMPLATE,
                                 {"applicationTemplate": inst.get("applicationTemplate") or {}})
        if not result.get("ok"):
            return result
        template_id = result["templateId"]

    result = yield from step(names.ENSURE_APPLICATION, {"batchId": batch_id, "instanceKey": inst.get("key"),
                                                        "displayName": inst.get("displayName"),
                                                        "templateId": template_id,
                                                        "labels": inst.get("labels") or {}})
    if not result.get("ok"):
        return result
    for key in ("applicationId", "appId", "servicePrincipalId"):
        ids[key] = result.get(key)
    sp_id = ids["servicePrincipalId"]

    result = yield from step(names.WAIT_UNTIL_VISIBLE, {"servicePrincipalId": sp_id,
                                                        "applicationId": ids["applicationId"]})
    if not result.get("ok"):
        return result

    job_request = {"servicePrincipalId": sp_id}
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
    result = yield from step(names.SAVE_SECRETS, secrets_request)
    if not result.get("ok"):
        return result

    assignments = inst.get("assignments") or {}
    if assignments.get("users") or assignments.get("groups"):
        result = yield from step(names.ASSIGN_PRINCIPALS, {"servicePrincipalId": sp_id,
                                                           "users": assignments.get("users") or [],
                                                           "groups": assignments.get("groups") or []})
        if not result.get("ok"):
            return result

    result = yield from step(names.START_JOB, {"servicePrincipalId": sp_id, "jobId": ids["jobId"]})
    if not result.get("ok"):
        return result
    return {"ok": True, "startedAt": result.get("startedAt") or iso(context.current_utc_datetime)}


def _reason(error: dict[str, Any]) -> str:
    step = error.get("step") or "setup"
    detail = error.get("message") or error.get("code") or "failed"
    return f"{step}: {detail}"


def _finish(context, outcome: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    finished_at = iso(context.current_utc_datetime)
    timings = outcome["timings"]
    timings["finishedAt"] = finished_at
    timings["setupSeconds"] = seconds_between(timings["startedAt"], timings.get("configuredAt"))
    timings["totalSeconds"] = seconds_between(timings["startedAt"], finished_at)
    outcome["outcome"] = result.get("outcome") or "failed"
    outcome["reason"] = result.get("reason")
    if result.get("error"):
        outcome["error"] = result["error"]
    for key in ("polls", "status", "steadyStateAt"):
        if key in result:
            outcome[key] = result[key]
    outcome["provisioningErrors"] = result.get("provisioningErrors") or []
    context.set_custom_status({"step": "done", "instanceKey": outcome["instanceKey"], "outcome": outcome["outcome"]})
    return outcome
