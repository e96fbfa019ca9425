"""``provision_instance``: set up one app instance step by step, then watch its job.

Contract
--------
Input: ``{"batchId": str, "instance": {key, displayName, applicationTemplate, templateId?,
credentials, assignments?: {users, groups}, syncAll?, labels?, notificationEmail?,
provisioningSettings?: {deletionThreshold?}, synchronizationTemplateId?}, "options": {...}}`` (the request form of ``core.model`` plus ``key``).
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

import dataclasses
import datetime as dt
from typing import Any, Callable, Generator, cast

import azure.durable_functions as df

from core import model, names
from core.contracts import (CONFIGURED, AssignPrincipalsInput, DiscardApplicationInput, EnsureApplicationInput,
                            EnsureApplicationOutput, EnsureJobInput, EnsureJobOutput, InstanceOutcome,
                            MonitorJobInput, ProvisionInstanceInput, ResolveTemplateInput, ResolveTemplateOutput,
                            SaveSecretsInput, StartJobInput, StartJobOutput, StepError, ValidateCredentialsInput,
                            WaitUntilVisibleInput, WaitUntilVisibleOutput, failure)
from core.instance_ids import monitor_instance_id
from core.profile_contracts import ApplySchemaProfileInput
from core.times import iso
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step, failure_message
from orchestrators.blueprint import bp
from orchestrators.report import final_outcome

Step = Callable[[str, Any], Generator[Any, Any, dict[str, Any]]]


@bp.function_name(names.PROVISION_INSTANCE)
@bp.orchestration_trigger(context_name="context")
def provision_instance(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Run the setup activities for one instance, then (unless told not to) ``monitor_job``."""
    data = ProvisionInstanceInput.from_dict(context.get_input())
    options = WorkflowOptions.from_dict(data.options)
    inst = data.instance
    outcome = InstanceOutcome(instance_key=inst.get("key"), display_name=inst.get("displayName"),
                              orchestration_id=context.instance_id, outcome=None, reason=None, ids={},
                              timings={"startedAt": iso(context.current_utc_datetime)}, polls=0,
                              provisioning_errors=[])

    def step(activity: str, payload: Any) -> Generator[Any, Any, dict[str, Any]]:
        context.set_custom_status({"step": activity, "instanceKey": inst.get("key")})
        return (yield from call_step(context, activity, payload, options))

    setup = yield from _setup(context, inst, data.batch_id, outcome.ids, step)
    if not setup.get("ok"):
        error = StepError.from_dict(setup["error"])
        return _done(context, outcome, {"outcome": "failed", "error": error.to_dict(), "reason": error.reason()})
    outcome = dataclasses.replace(outcome, timings={**outcome.timings,
                                                    "configuredAt": iso(context.current_utc_datetime)})
    role_import = setup.get("roleImport")
    if role_import is not None:  # the job imports roles: the monitor counts them (and assigns)
        outcome = dataclasses.replace(outcome, job_kind=model.ROLE_IMPORT, role_import=role_import)
    if data.monitor is False:  # the batch watches the job itself (its concurrency bound is for setup)
        context.set_custom_status({"step": CONFIGURED, "instanceKey": inst.get("key")})
        return dataclasses.replace(outcome, outcome=CONFIGURED, job_started_at=setup["startedAt"]).to_dict()

    context.set_custom_status({"step": names.MONITOR_JOB, "instanceKey": inst.get("key")})
    monitor_input = monitor_job_input(outcome.ids, setup["startedAt"], context.current_utc_datetime,
                                      data.options, options, role_import)
    try:
        watched = yield context.call_sub_orchestrator(names.MONITOR_JOB, monitor_input.to_dict(),
                                                      instance_id=monitor_instance_id(context.instance_id))
    except Exception as exc:
        watched = {"outcome": "failed", "reason": f"monitor_job failed: {failure_message(exc)}"}
    return _done(context, outcome, watched or {})


def monitor_job_input(ids: dict[str, Any], job_started_at: str, now: dt.datetime, raw_options: dict[str, Any],
                      options: WorkflowOptions, role_import: dict[str, Any] | None = None) -> MonitorJobInput:
    """The input of ``monitor_job`` for a job started at ``job_started_at`` (deadline counted from ``now``).

    ``role_import`` (a role-import template): ``{users?, groups?, appRole?}``, the assignments the
    monitor makes once the first cycle has imported the roles, after which it counts them.
    """
    return MonitorJobInput(service_principal_id=ids.get("servicePrincipalId"), job_id=ids.get("jobId"),
                           started_at=job_started_at,
                           deadline=iso(now + dt.timedelta(seconds=options.monitor_deadline)),
                           options=raw_options, role_import=role_import)


def _threshold(inst: dict[str, Any]) -> dict[str, Any] | None:
    """The request's ``provisioningSettings.deletionThreshold`` (None: the default, on with 500)."""
    settings = inst.get("provisioningSettings")
    threshold = settings.get("deletionThreshold") if isinstance(settings, dict) else None
    return threshold if isinstance(threshold, dict) else None


def _assignment_refs(inst: dict[str, Any]) -> dict[str, list[str]] | None:
    """The request's users and groups to assign, as named, and their ``appRole`` (kept in the notes: drift compares them)."""
    given = inst.get("assignments")
    wanted: dict[str, Any] = given if isinstance(given, dict) else {}
    refs: dict[str, Any] = {kind: [str(r) for r in wanted.get(kind) or []] for kind in ("users", "groups")}
    if not (refs["users"] or refs["groups"]):
        return None
    if wanted.get("appRole"):  # the role they get: enforce assigns it again, drift compares it
        refs["appRole"] = str(wanted["appRole"])
    return refs


def _setup(context: df.DurableOrchestrationContext, inst: dict[str, Any], batch_id: str | None,
           ids: dict[str, Any], step: Step) -> Generator[Any, Any, dict[str, Any]]:
    """The configuration steps; returns ``{"ok": True, "startedAt": ...}`` or the failed result."""
    template_id = inst.get("templateId")
    job_kind = inst.get("jobKind")
    if not template_id:
        result = yield from step(names.RESOLVE_APPLICATION_TEMPLATE,
                                 ResolveTemplateInput(application_template=inst.get("applicationTemplate") or {}))
        if not result.get("ok"):
            return result
        resolved = ResolveTemplateOutput.from_dict(result)
        template_id, job_kind = resolved.template_id, resolved.job_kind

    result = yield from step(names.ENSURE_APPLICATION, EnsureApplicationInput(
        batch_id=batch_id, instance_key=cast(str, inst.get("key")), display_name=cast(str, inst.get("displayName")),
        template_id=cast(str, template_id), labels=inst.get("labels") or {}))
    if not result.get("ok"):
        return result
    app = EnsureApplicationOutput.from_dict(result)
    ids.update(applicationId=app.application_id, appId=app.app_id, servicePrincipalId=app.service_principal_id)
    sp_id = cast(str, app.service_principal_id)  # the activity reports a missing one as a field error

    # wait_until_visible also tags the new service principal and stores the credential references
    # (names, never values) in its notes for the health sweep - one PATCH, once the SP reads back: a
    # write right after instantiate fails while it replicates, and ensure_application must not fail
    # after its instantiate succeeded (a retry would instantiate a second app)
    # for a new app the visibility reads are the name look-up, which also settles a concurrent run
    # that created the same instance at the same moment: one app stays, the other run yields
    credentials = inst.get("credentials") or {}
    result = yield from step(names.WAIT_UNTIL_VISIBLE, WaitUntilVisibleInput(
        service_principal_id=sp_id, application_id=ids["applicationId"], instance_key=inst.get("key"),
        labels=inst.get("labels") or {}, credentials=credentials, sync_all=bool(inst.get("syncAll")),
        display_name=inst.get("displayName"), template_id=template_id, created=app.created_here,
        notification_email=inst.get("notificationEmail") or None, canary=inst.get("canary") or None,
        deletion_threshold=_threshold(inst), assignments=_assignment_refs(inst)))
    if not result.get("ok"):
        return result
    visible = WaitUntilVisibleOutput.from_dict(result)
    if visible.yielded:
        kept = visible.kept or _NOBODY
        discard = visible.discard or _NOBODY
        ids.update(servicePrincipalId=kept.service_principal_id, appId=kept.app_id, applicationId=None)
        removed = yield from step(names.DISCARD_APPLICATION, DiscardApplicationInput(
            application_id=cast(str, discard.application_id),
            service_principal_id=cast(str, discard.service_principal_id),
            instance_key=inst.get("key")))
        what = "this run deleted its copy" if removed.get("ok") else \
            f"this run's copy (application {discard.application_id}) could not be deleted: " \
            f"{(removed.get('error') or {}).get('message')}"
        return failure(names.WAIT_UNTIL_VISIBLE, "ConcurrentRequest",
                       f"another run created '{inst.get('displayName')}' at the same moment; its service principal "
                       f"{kept.service_principal_id} is kept and set up there, and {what}")

    # the application template id lets the activity reuse its cached list of synchronization templates
    result = yield from step(names.ENSURE_JOB, EnsureJobInput(
        service_principal_id=sp_id, application_template_id=template_id,
        synchronization_template_id=inst.get("synchronizationTemplateId") or None))
    if not result.get("ok"):
        return result
    job_id = cast(str, EnsureJobOutput.from_dict(result).job_id)
    ids["jobId"] = job_id

    result = yield from step(names.VALIDATE_CREDENTIALS, ValidateCredentialsInput(
        service_principal_id=sp_id, job_id=job_id, credentials=credentials))
    if not result.get("ok"):
        return result

    # the Key Vault versions recorded on the SP (tags): save_secrets writes the record only if it saved others
    result = yield from step(names.SAVE_SECRETS, SaveSecretsInput(
        service_principal_id=sp_id, credentials=credentials, sync_all=bool(inst.get("syncAll")),
        notification_email=inst.get("notificationEmail") or None, deletion_threshold=_threshold(inst),
        recorded_versions=visible.recorded_versions if isinstance(visible.recorded_versions, dict) else None,
        # and the tags it left there, the base of a new record (none from an answer recorded before)
        current_tags=visible.tags if isinstance(visible.tags, list) else None))
    if not result.get("ok"):
        return result

    if inst.get("schemaProfile"):  # the request names a schema profile: applied before the job starts
        result = yield from step(names.APPLY_SCHEMA_PROFILE, ApplySchemaProfileInput(
            service_principal_id=sp_id, profile=str(inst["schemaProfile"]), job_id=job_id))
        if not result.get("ok"):
            return result

    assignments = inst.get("assignments") or {}
    principals = AssignPrincipalsInput(service_principal_id=sp_id, users=assignments.get("users") or [],
                                       groups=assignments.get("groups") or [],
                                       app_role=assignments.get("appRole") or None)
    # a role-import job (AWS Single-Account Access) writes the app's roles into the SP during its
    # first cycle: a role named in the request does not exist before, so those assignments wait
    # for steady state (monitor_job); without a named role, principals get the default role now
    role_import: dict[str, Any] | None = {} if job_kind == model.ROLE_IMPORT else None
    if role_import is not None and principals.app_role:
        role_import = {k: v for k, v in principals.to_dict().items() if k != "servicePrincipalId"}
    elif principals.has_principals:
        result = yield from step(names.ASSIGN_PRINCIPALS, principals)
        if not result.get("ok"):
            return result

    result = yield from step(names.START_JOB, StartJobInput(service_principal_id=sp_id, job_id=job_id))
    if not result.get("ok"):
        return result
    return {"ok": True, "startedAt": StartJobOutput.from_dict(result).started_at or iso(context.current_utc_datetime),
            "roleImport": role_import}


class _Nobody:
    service_principal_id = app_id = application_id = None


_NOBODY: Any = _Nobody()


def _done(context: df.DurableOrchestrationContext, outcome: InstanceOutcome,
          result: dict[str, Any]) -> dict[str, Any]:
    done = final_outcome(outcome, result, iso(context.current_utc_datetime))
    context.set_custom_status({"step": "done", "instanceKey": done.instance_key, "outcome": done.outcome})
    return done.to_dict()
