"""Fleet operations (docs/fleet-operations.md): inventory, operator actions, teardown and a plan, over Graph.

Everything here starts from the service principals that carry our correlation tag (one listing,
``tags/any(t: t eq '<tag>')``): an instance is such a service principal with an instance tag
(``<tag>:key:<key>``); its labels are its ``<tag>:label:<name>=<value>`` tags, its credential
references (Key Vault secret *names*, never values) its notes. Nothing here writes to an object
that does not carry both tags: every action re-reads the service principal first.

Graph calls each action makes (learn.microsoft.com):

* pause - ``POST .../jobs/{id}/pause`` (https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-pause)
* resume - ``POST .../jobs/{id}/start`` (https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-start)
* restart, allowDeletes - ``POST .../jobs/{id}/restart`` with ``criteria.resetScope``
  (https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-restart, values:
  https://learn.microsoft.com/graph/api/resources/synchronization-synchronizationjobrestartcriteria);
  allowDeletes is ``ForceDeletes,QuarantineState`` after a ``TooManyDeletes`` quarantine ("the
  quarantined job can then be allowed or rejected":
  https://learn.microsoft.com/entra/identity/app-provisioning/accidental-deletions)
* validate - ``POST .../jobs/{id}/validateCredentials`` with the Key Vault set
  (https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-validatecredentials)
* provision-on-demand - ``POST .../jobs/{id}/provisionOnDemand``
  (https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-provisionondemand)
* rejectDeletes - one tag on our service principal records the decision; the job stays quarantined
* teardown - pause, ``DELETE .../jobs/{id}`` (https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-delete),
  ``DELETE /applications/{id}`` (soft delete, https://learn.microsoft.com/graph/api/application-delete):
  restorable for 30 days with ``POST /directory/deletedItems/{id}/restore``, the application and then
  its service principal ("restoring an application doesn't restore the associated service principal
  automatically": https://learn.microsoft.com/graph/api/directory-deleteditems-restore)
"""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core import errors, model, odata
from core import status as job_status
from core.errors import InvalidRequest, Problem
from core.graph import applications as apps
from core.graph import synchronization as sync
from core.steps.context import StepContext
from core.steps.records import read_notes

logger = logging.getLogger("core.fleet")

ACTIONS = ("restart", "pause", "resume", "validate", "provision-on-demand", "allowDeletes", "rejectDeletes",
           "teardown")
#: criteria.resetScope values (synchronization-synchronizationjob-restart)
RESET_SCOPES = ("Watermark", "Escrows", "QuarantineState", "Full", "ForceDeletes", "ConnectorDataStore", "None")
#: allowDeletes' scope: ForceDeletes lets the held deletes through; QuarantineState ("temporarily lifts the
#: quarantine") makes them go now - whether ForceDeletes alone lifts it is UNCONFIRMED (the emulator's
#: restartLiftsQuarantine setting plays both readings)
ALLOW_DELETES_SCOPE = "ForceDeletes,QuarantineState"
#: actions that write nothing
READ_ONLY = frozenset({"validate"})
#: actions that need ``confirm`` (= the number of targets) even for one target
DESTRUCTIVE = frozenset({"restart", "allowDeletes", "teardown"})
HEALTH = ("healthy", "running", "notStarted", "failing", "quarantined", "paused", "disabled", "missingJob")
_CATEGORY = {
    job_status.JobState.STEADY_STATE: "healthy", job_status.JobState.RUNNING: "running",
    job_status.JobState.NOT_STARTED: "notStarted", job_status.JobState.FAILED: "failing",
    job_status.JobState.QUARANTINED: "quarantined", job_status.JobState.PAUSED: "paused",
    job_status.JobState.DISABLED: "disabled",
}
DECISION = "decision"  # <tag>:decision:rejectDeletes=<quarantine currentBegan>
RESTORE_DOC = "https://learn.microsoft.com/graph/api/directory-deleteditems-restore"
_KEY = re.compile(r"^[0-9a-f]{20}\Z")
_SP_SELECT = "id,appId,displayName,applicationTemplateId,tags,notes"


# -- input ----------------------------------------------------------------------------------------

def parse_selector(text: Any, path: str = "selector") -> dict[str, str]:
    """``"env=prod,team=cloud"`` -> ``{"env": "prod", "team": "cloud"}``; an empty or malformed one is a 400."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest([Problem(path, "is required: label pairs like env=prod,team=cloud")])
    found: dict[str, str] = {}
    problems = []
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not re.fullmatch(model.LABEL_KEY_PATTERN, name) or not re.fullmatch(model.LABEL_VALUE_PATTERN, value):
            problems.append(Problem(path, f"'{part.strip()[:80]}' is not name=value (a label name and value as in requests)"))
        elif name in found and found[name] != value:
            problems.append(Problem(path, f"label '{name}' given twice"))
        else:
            found[name] = value
    if problems:
        raise InvalidRequest(problems)
    return found


def check_key(key: Any) -> str:
    """An instance key (20 lower-case hex characters, as ``model.instance_key`` makes them)."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise InvalidRequest([Problem("key", "must be an instanceKey: 20 lower-case hex characters")])
    return key


ACTION_ID_RULE = "must be 1-64 letters, digits, '.', '_' or '-'"


def valid_action_id(value: Any) -> bool:
    """A caller's ``actionId`` (it names the orchestration: ``fleet-action:<actionId>``)."""
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value) is not None


def parse_action(body: Any, *, by_selector: bool) -> dict[str, Any]:
    """The body of ``POST /api/actions`` or ``POST /api/instances/{key}/actions``, checked field by field."""
    if not isinstance(body, dict):
        raise InvalidRequest([Problem("$", "must be a JSON object")])
    problems: list[Problem] = []
    allowed = {"action", "dryRun", "confirm", "actionId", "resetScope", "subject"} | ({"selector"} if by_selector else set())
    for name in sorted(set(body) - allowed):
        problems.append(Problem(name, "unknown field"))
    action = body.get("action")
    if action not in ACTIONS:
        problems.append(Problem("action", f"must be one of {', '.join(ACTIONS)}"))
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        problems.append(Problem("dryRun", "must be true or false"))
    confirm = body.get("confirm")
    if confirm is not None and (not isinstance(confirm, int) or isinstance(confirm, bool) or confirm < 0):
        problems.append(Problem("confirm", "must be the number of targets (an integer)"))
    action_id = body.get("actionId")
    if action_id is not None and not valid_action_id(action_id):
        problems.append(Problem("actionId", ACTION_ID_RULE))
    params: dict[str, Any] = {}
    scope = body.get("resetScope")
    if action == "restart":
        parts = [p.strip() for p in str(scope or "").split(",") if p.strip()] if isinstance(scope, (str, type(None))) else None
        if not parts or any(p not in RESET_SCOPES for p in parts):
            problems.append(Problem("resetScope", f"restart needs resetScope: comma-separated {', '.join(RESET_SCOPES)}"))
        else:
            params["resetScope"] = ",".join(parts)
    elif scope is not None:
        problems.append(Problem("resetScope", "only for action restart"))
    subject = body.get("subject")
    if action == "provision-on-demand":
        if (not isinstance(subject, dict) or not isinstance(subject.get("objectId"), str)
                or not _GUID.match(subject["objectId"]) or subject.get("objectTypeName") not in ("User", "Group")):
            problems.append(Problem("subject", "needs {\"objectId\": <user or group object id (a GUID)>, \"objectTypeName\": \"User\" | \"Group\"}"))
        else:
            params["subject"] = {"objectId": subject["objectId"], "objectTypeName": subject["objectTypeName"]}
    elif subject is not None:
        problems.append(Problem("subject", "only for action provision-on-demand"))
    selector: dict[str, str] = {}
    if by_selector:
        try:
            selector = parse_selector(body.get("selector"))
        except InvalidRequest as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidRequest(problems)
    return {"action": action, "dryRun": dry_run, "confirm": confirm, "actionId": action_id, "params": params,
            "selector": selector}


def needs_confirm(action: str, count: int) -> bool:
    """Destructive actions always, any writing action on more than one target ("wide")."""
    return action not in READ_ONLY and (action in DESTRUCTIVE or count > 1)


# -- inventory --------------------------------------------------------------------------------------

def _instance_of(ctx: StepContext, sp: dict) -> dict | None:
    tags = [str(t) for t in sp.get("tags") or []]
    key_prefix, label_prefix = f"{ctx.tag}:key:", f"{ctx.tag}:label:"
    key = next((t[len(key_prefix):] for t in tags if t.startswith(key_prefix)), None)
    if ctx.tag not in tags or not key:
        return None
    labels = dict(t[len(label_prefix):].split("=", 1) for t in tags if t.startswith(label_prefix) and "=" in t)
    decisions = dict(t[len(f"{ctx.tag}:{DECISION}:"):].split("=", 1) for t in tags
                     if t.startswith(f"{ctx.tag}:{DECISION}:") and "=" in t)
    notes = read_notes(ctx, sp.get("notes")) or {}
    refs = notes.get("credentials") if isinstance(notes.get("credentials"), dict) else None
    view: dict[str, Any] = {"instanceKey": key, "displayName": sp.get("displayName"),
                            "servicePrincipalId": apps.object_id(sp), "appId": sp.get("appId"),
                            "applicationTemplateId": sp.get("applicationTemplateId"), "labels": labels,
                            "credentialReferences": refs}
    if decisions:
        view["decisions"] = decisions
    return view


def list_instances(ctx: StepContext) -> list[dict]:
    """Every instance (service principal with our correlation and instance tags), by display name."""
    found = apps.find_service_principals(ctx.graph, odata.any_eq("tags", ctx.tag), select=_SP_SELECT)
    views = [v for v in (_instance_of(ctx, sp) for sp in found) if v is not None]
    return sorted(views, key=lambda v: (str(v.get("displayName")), v["instanceKey"]))


def select(instances: list[dict], selector: dict[str, str] | None = None, template: str | None = None,
           key: str | None = None) -> list[dict]:
    """The instances whose labels hold every pair of ``selector`` (and the template / key, if given)."""
    out = []
    for inst in instances:
        if key is not None and inst["instanceKey"] != key:
            continue
        if template and str(inst.get("applicationTemplateId") or "").lower() != template.lower():
            continue
        if selector and any(inst["labels"].get(k) != v for k, v in selector.items()):
            continue
        out.append(inst)
    return out


def job_view(ctx: StepContext, sp_id: str) -> dict:
    """The instance's job (the first by id): state, health category, quarantine reason and cause."""
    jobs = sorted(sync.list_jobs(ctx.graph, sp_id), key=lambda j: str(j.get("id")))
    if not jobs:
        return {"job": None, "health": "missingJob"}
    job = jobs[0]
    classified = job_status.classify(job)
    quarantine = classified.quarantine or None
    view: dict[str, Any] = {"id": job.get("id"), "templateId": job.get("templateId"),
                            "code": (job.get("status") or {}).get("code"),
                            "scheduleState": (job.get("schedule") or {}).get("state"),
                            "state": classified.state.value, "lastExecution": classified.last_execution}
    if quarantine:
        view["quarantine"] = {"reason": quarantine.get("reason"), "cause": quarantine.get("cause"),
                              "errorCode": (quarantine.get("error") or {}).get("code"),
                              "currentBegan": quarantine.get("currentBegan"),
                              "seriesBegan": quarantine.get("seriesBegan")}
    if len(jobs) > 1:
        view["otherJobs"] = [str(j.get("id")) for j in jobs[1:]]
    return {"job": view, "health": _CATEGORY.get(classified.state, "running")}


def with_jobs(ctx: StepContext, instances: list[dict], max_in_flight: int) -> list[dict]:
    """``instances`` each with its job view, read at most ``max_in_flight`` at a time."""
    def one(inst: dict) -> dict:
        try:
            return {**inst, **job_view(ctx, inst["servicePrincipalId"])}
        except errors.ProvisioningError as exc:
            return {**inst, "job": None, "health": "unreadable", "error": {"code": exc.code, "message": exc.message[:300]}}

    with ThreadPoolExecutor(max_workers=max(1, min(max_in_flight, len(instances) or 1))) as pool:
        return list(pool.map(one, instances))


# -- actions ----------------------------------------------------------------------------------------

def _jobs_path(sp_id: str, job_id: str | None) -> str:
    return f"/servicePrincipals/{sp_id}/synchronization/jobs/{job_id or '{jobId}'}"


def planned_calls(target: dict, action: str, params: dict) -> list[str]:
    """The Graph calls ``action`` would make on one target (what a dry-run lists)."""
    sp_id = target["servicePrincipalId"]
    job = (target.get("job") or {}).get("id")
    jobs = _jobs_path(sp_id, job)
    if action == "pause":
        return [f"POST {jobs}/pause"]
    if action == "resume":
        return [f"POST {jobs}/start"]
    if action == "restart":
        return [f"POST {jobs}/restart resetScope={params.get('resetScope')}"]
    if action == "allowDeletes":
        return [f"POST {jobs}/restart resetScope={ALLOW_DELETES_SCOPE} (only while quarantined for TooManyDeletes)"]
    if action == "rejectDeletes":
        return [f"PATCH /servicePrincipals/{sp_id} tags += {DECISION}:rejectDeletes (job stays quarantined)"]
    if action == "validate":
        return [f"POST {jobs}/validateCredentials (Key Vault values of {', '.join(sorted(target.get('credentialReferences') or {})) or 'no references'})"]
    if action == "provision-on-demand":
        subject = params.get("subject") or {}
        return [f"GET {jobs}/schema", f"POST {jobs}/provisionOnDemand {subject.get('objectTypeName')} {subject.get('objectId')}"]
    if action == "teardown":
        calls = [f"POST {_jobs_path(sp_id, j)}/pause" for j in _all_jobs(target)]
        calls += [f"DELETE {_jobs_path(sp_id, j)}" for j in _all_jobs(target)]
        return calls + [f"DELETE /applications/{{id of appId {target.get('appId')}}} (soft delete, restorable 30 days)"]
    raise ValueError(action)


def _all_jobs(target: dict) -> list[str]:
    job = target.get("job") or {}
    return [str(j) for j in [job.get("id"), *(job.get("otherJobs") or [])] if j]


def _ours(ctx: StepContext, sp_id: str, key: str) -> dict:
    """Re-read the service principal; refuse (permanent) unless it carries our correlation and instance tags."""
    sp = apps.get_service_principal(ctx.graph, sp_id, select=_SP_SELECT)
    tags = {str(t) for t in sp.get("tags") or []}
    if ctx.tag not in tags or model.instance_tag(ctx.tag, key) not in tags:
        raise errors.PermanentError(f"service principal {sp_id} does not carry the tags of instance {key}: "
                                    "not touched", code="NotOurs")
    return sp


def perform(ctx: StepContext, *, instance_key: str, service_principal_id: str, action: str,
            params: dict) -> dict:
    """Run ``action`` on one instance; idempotent (a repeat finds the work done and says so)."""
    try:
        sp = _ours(ctx, service_principal_id, instance_key)
    except errors.NotFound:
        if action != "teardown":
            raise
        return _torn_down(ctx, instance_key, service_principal_id)
    sp_id = service_principal_id
    jobs = sorted(sync.list_jobs(ctx.graph, sp_id), key=lambda j: str(j.get("id")))
    job = jobs[0] if jobs else None
    result: dict[str, Any] = {"instanceKey": instance_key, "servicePrincipalId": sp_id,
                              "jobId": job.get("id") if job else None, "action": action}

    def done(outcome: str, detail: str, **extra: Any) -> dict:
        return {**result, "outcome": outcome, "detail": detail, **extra}

    if action == "teardown":
        return _teardown(ctx, sp, jobs, done)
    if job is None:
        return done("refused", "the instance has no synchronization job")
    job_id = str(job["id"])
    classified = job_status.classify(job)
    quarantine = classified.quarantine or {}
    if action == "pause":
        if classified.state is job_status.JobState.PAUSED:
            return done("unchanged", "already paused")
        sync.pause_job(ctx.graph, sp_id, job_id)
        return done("done", "paused")
    if action == "resume":
        if job_status.is_running(job):
            return done("unchanged", "already running")
        sync.start_job(ctx.graph, sp_id, job_id)
        return done("done", "started")
    if action == "restart":
        sync.restart_job(ctx.graph, sp_id, job_id, params["resetScope"])
        return done("done", f"restarted with resetScope {params['resetScope']}")
    if action in ("allowDeletes", "rejectDeletes"):
        if quarantine.get("cause") != job_status.CAUSE_TOO_MANY_DELETES:
            return done("unchanged", f"not quarantined for TooManyDeletes ({classified.state.value})")
        if action == "allowDeletes":
            sync.restart_job(ctx.graph, sp_id, job_id, ALLOW_DELETES_SCOPE)
            return done("done", f"restarted with resetScope {ALLOW_DELETES_SCOPE}: the held deletes go through")
        decision = f"{ctx.tag}:{DECISION}:rejectDeletes={quarantine.get('seriesBegan') or quarantine.get('currentBegan')}"
        tags = [str(t) for t in sp.get("tags") or []]
        if decision in tags:
            return done("unchanged", "the rejection is already recorded; the job stays quarantined")
        kept = [t for t in tags if not t.startswith(f"{ctx.tag}:{DECISION}:rejectDeletes=")]
        apps.update_service_principal(ctx.graph, sp_id, {"tags": kept + [decision]})
        return done("done", "rejection recorded on the service principal; the job stays quarantined")
    if action == "validate":
        return _validate(ctx, sp, job_id, done)
    if action == "provision-on-demand":
        return _on_demand(ctx, sp_id, job_id, params["subject"], done)
    raise ValueError(action)


def _validate(ctx: StepContext, sp: dict, job_id: str, done: Any) -> dict:
    notes = read_notes(ctx, sp.get("notes")) or {}
    refs = notes.get("credentials")
    if not isinstance(refs, dict) or not refs:
        return done("refused", "no credential references stored on the service principal (notes)")
    if ctx.secrets is None:
        return done("refused", "no Key Vault configured")
    resolved = ctx.secrets.resolve(model.parse_credentials(refs))
    try:
        sync.validate_credentials(ctx.graph, apps.object_id(sp), job_id, resolved.values)
    except (errors.BadRequest, errors.GraphPermanent) as exc:
        if isinstance(exc, (errors.PermissionDenied, errors.NotFound)):
            raise
        return done("invalid", f"the target refused the Key Vault credentials: {exc.code}",
                    secretVersions=dict(resolved.versions))
    return done("valid", "the Key Vault credentials validate", secretVersions=dict(resolved.versions))


def _on_demand(ctx: StepContext, sp_id: str, job_id: str, subject: dict, done: Any) -> dict:
    schema = sync.get_schema(ctx.graph, sp_id, job_id)
    rules = [r for r in schema.get("synchronizationRules") or [] if isinstance(r, dict) and r.get("id")]
    if not rules:
        return done("refused", "the job's schema has no synchronization rule")
    answers = sync.provision_on_demand(ctx.graph, sp_id, job_id, str(rules[0]["id"]), [dict(subject)])
    steps = []
    for answer in answers:
        for step in answer.get("provisioningSteps") or []:
            if isinstance(step, dict):
                steps.append({k: step.get(k) for k in ("name", "status", "description", "provisioningStepType")})
    # the result's status: ``statusInfo`` (statusBase / statusDetails, as the provisionOnDemand page's
    # example answers), ``provisioningStatusInfo`` (the provisioning log's name) read too
    infos = [a.get("statusInfo") or a.get("provisioningStatusInfo") or {} for a in answers]
    statuses = [str(i.get("status") or "").lower() for i in infos if isinstance(i, dict)]
    failed = "failure" in statuses or any(str(s.get("status") or "").lower() == "failure" for s in steps)
    codes = [str(i.get("errorCode")) for i in infos if isinstance(i, dict) and i.get("errorCode")]
    return done("failed" if failed else "done", f"provisionOnDemand {subject['objectTypeName']} {subject['objectId']}: "
                f"{', '.join(s for s in statuses if s) or 'answered'}", steps=steps,
                status=next((s for s in statuses if s), None), errorCode=codes[0] if codes else None)


def _torn_down(ctx: StepContext, key: str, sp_id: str) -> dict:
    """A repeated teardown (e.g. the activity retried after a crash that followed the delete): the
    service principal is gone; if it lies in deleted items with this instance's tags, the teardown
    was done and nothing is written; otherwise the NotFound stands."""
    deleted = ctx.graph.get(f"/directory/deletedItems/{sp_id}")  # NotFound: neither present nor deleted
    tags = {str(t) for t in deleted.get("tags") or []}
    if ctx.tag not in tags or model.instance_tag(ctx.tag, key) not in tags:
        raise errors.PermanentError(f"deleted service principal {sp_id} does not carry the tags of instance {key}",
                                    code="NotOurs")
    return {"instanceKey": key, "servicePrincipalId": sp_id, "jobId": None, "action": "teardown",
            "outcome": "unchanged", "detail": "already torn down: the service principal is in deleted items",
            "restore": ["POST /directory/deletedItems/{application id}/restore",
                        f"POST /directory/deletedItems/{sp_id}/restore"],
            "restoreNote": f"within 30 days; the application first, then its service principal ({RESTORE_DOC})"}


def _teardown(ctx: StepContext, sp: dict, jobs: list[dict], done: Any) -> dict:
    sp_id = apps.object_id(sp)
    for job in jobs:
        if job_status.classify(job).state not in (job_status.JobState.PAUSED, job_status.JobState.NOT_STARTED):
            sync.pause_job(ctx.graph, sp_id, str(job["id"]))
        sync.delete_job(ctx.graph, sp_id, str(job["id"]))
    app = apps.find_application_by_app_id(ctx.graph, str(sp["appId"]))
    app_id = apps.object_id(app)
    apps.delete_application(ctx.graph, app_id)
    # restoring the application does not restore its service principal: both calls, in this order (RESTORE_DOC)
    return done("done", f"paused and deleted {len(jobs)} job(s), deleted application {app_id} (soft delete)",
                applicationId=app_id, deletedJobs=[str(j["id"]) for j in jobs],
                restore=[f"POST /directory/deletedItems/{app_id}/restore",
                         f"POST /directory/deletedItems/{sp_id}/restore"],
                restoreNote=f"within 30 days; the application first, then its service principal ({RESTORE_DOC}); "
                            "re-submit the request to recreate the job, secrets and assignments")


# -- plan -------------------------------------------------------------------------------------------

def plan(ctx: StepContext, request: model.ProvisioningRequest) -> dict:
    """Per instance of a provisioning request: create / adopt / alreadyConfigured / update (what would change).

    Reads only: one listing of our service principals, one job list and one secrets read (the
    provisioning settings: deletion threshold, notification email, syncAll - compared with what the
    request would save) per found instance, one name look-up per instance not found by tag (an
    untagged app of that name would be adopted).
    """
    listed = {inst["instanceKey"]: inst for inst in list_instances(ctx)}
    rows = []
    for spec in request.instances:
        row: dict[str, Any] = {"instanceKey": spec.key, "displayName": spec.display_name}
        found = listed.get(spec.key)
        if found is None:
            named = apps.find_service_principals(ctx.graph, odata.eq("displayName", spec.display_name),
                                                 select=_SP_SELECT)
            untagged = [sp for sp in named if not any(str(t).startswith(f"{ctx.tag}:key:") for t in sp.get("tags") or [])]
            if untagged:
                row.update(plan="adopt", servicePrincipalId=apps.object_id(untagged[0]),
                           changes=["tag the existing service principal", "configure job, secrets, assignments"])
            else:
                row.update(plan="create", changes=["instantiate the application", "create the job", "save secrets",
                                                   "assign", "start"])
            rows.append(row)
            continue
        row["servicePrincipalId"] = found["servicePrincipalId"]
        changes = []
        wanted_labels = {str(k): str(v) for k, v in spec.labels.items()}
        if spec.labels and wanted_labels != found["labels"]:
            changes.append(f"labels {found['labels']} -> {wanted_labels}")
        wanted_refs = model.credentials_to_json(spec.credentials)
        if found.get("credentialReferences") != wanted_refs:
            have, want = found.get("credentialReferences") or {}, wanted_refs
            keys = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            changes.append(f"secret keys {', '.join(keys)}")
        changes += settings_changes(spec, sync.get_secret_keys(ctx.graph, found["servicePrincipalId"]))
        jobs = sync.list_jobs(ctx.graph, found["servicePrincipalId"])
        if not jobs:
            changes.append("create the job")
        elif spec.synchronization_template_id and not any(
                str(j.get("templateId")) == spec.synchronization_template_id for j in jobs):
            changes.append(f"create a job of template {spec.synchronization_template_id}")
        row.update(plan="update" if changes else "alreadyConfigured", changes=changes)
        rows.append(row)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["plan"]] = counts.get(row["plan"], 0) + 1
    return {"requestId": request.request_id, "counts": counts, "instances": rows,
            "note": "assignments are not compared; a submitted request adds missing ones and removes none"}


# -- adoption -----------------------------------------------------------------------------------------

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def parse_adopt(body: Any) -> dict[str, Any]:
    """``POST /api/instances/adopt``: ``servicePrincipalId`` or ``displayName`` (exactly one), optional
    ``labels``, ``credentials`` (references, stored in the notes for validate and the sweep), ``dryRun``."""
    if not isinstance(body, dict):
        raise InvalidRequest([Problem("$", "must be a JSON object")])
    problems: list[Problem] = []
    for name in sorted(set(body) - {"servicePrincipalId", "displayName", "labels", "credentials", "dryRun"}):
        problems.append(Problem(name, "unknown field"))
    sp_id, name = body.get("servicePrincipalId"), body.get("displayName")
    if (sp_id is None) == (name is None):
        problems.append(Problem("servicePrincipalId", "give exactly one of servicePrincipalId and displayName"))
    if sp_id is not None and (not isinstance(sp_id, str) or not _GUID.match(sp_id)):
        problems.append(Problem("servicePrincipalId", "must be a service principal object id (a GUID)"))
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 256
                             or re.search(r"[\x00-\x1f\x7f]", name)):
        problems.append(Problem("displayName", "must be the service principal's display name (no control characters)"))
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        problems.append(Problem("dryRun", "must be true or false"))
    labels: dict[str, str] = {}
    raw_labels = body.get("labels")
    if raw_labels is not None:
        if not isinstance(raw_labels, dict):
            problems.append(Problem("labels", "must be an object of name: value strings"))
        else:
            for key, value in raw_labels.items():
                if not re.fullmatch(model.LABEL_KEY_PATTERN, str(key)) or not isinstance(value, str) \
                        or not re.fullmatch(model.LABEL_VALUE_PATTERN, value):
                    problems.append(Problem(f"labels.{key}", "label names and values as in requests"))
                else:
                    labels[str(key)] = value
    credentials = None
    if body.get("credentials") is not None:
        try:
            credentials = model.parse_credentials(body["credentials"])
        except InvalidRequest as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidRequest(problems)
    return {"servicePrincipalId": sp_id, "displayName": name, "labels": labels, "credentials": credentials,
            "dryRun": dry_run}


class AdoptionRefused(errors.PermanentError):
    """The named app cannot be adopted (not found, ambiguous, or its key is another app's); ``status`` for HTTP."""

    def __init__(self, message: str, *, status: int, ids: list[str] | None = None) -> None:
        super().__init__(message, code="AdoptionRefused", status=status)
        self.ids = list(ids or [])


def adopt(ctx: StepContext, *, service_principal_id: str | None = None, display_name: str | None = None,
          labels: dict[str, str] | None = None, credentials: dict | None = None, dry_run: bool = False) -> dict:
    """Bring an app made elsewhere (portal, Terraform) under management: tag it, record it, read it.

    The person names exactly one service principal (by id, or by a display name only one carries).
    The one write is the tag PATCH of :func:`core.steps.records._label` (our correlation tag, the
    instance tag of its display name - so a later request with that name reaches this app - the
    labels and, if given and the notes are free, the credential references). Its job, secrets and
    assignments are only read; a later provisioning request changes them if it asks to.
    """
    from core.graph import assignments
    from core.steps.records import _label, instance_notes

    if service_principal_id:
        try:
            sp = apps.get_service_principal(ctx.graph, service_principal_id, select=_SP_SELECT)
        except errors.NotFound:
            raise AdoptionRefused(f"no service principal {service_principal_id}", status=404) from None
    else:
        named = apps.find_service_principals(ctx.graph, odata.eq("displayName", str(display_name)), select=_SP_SELECT)
        if not named:
            raise AdoptionRefused(f"no service principal is named '{display_name}'", status=404)
        if len(named) > 1:
            raise AdoptionRefused(f"{len(named)} service principals are named '{display_name}': adopt one by "
                                  "servicePrincipalId", status=409, ids=[apps.object_id(s) for s in named])
        sp = named[0]
    sp_id = apps.object_id(sp)
    key = model.instance_key(str(sp.get("displayName") or ""))
    tags = [str(t) for t in sp.get("tags") or []]
    other_key = next((t for t in tags if t.startswith(f"{ctx.tag}:key:") and t != model.instance_tag(ctx.tag, key)), None)
    if other_key:
        raise AdoptionRefused(f"service principal {sp_id} already belongs to instance {other_key.rsplit(':', 1)[1]}",
                              status=409, ids=[sp_id])
    holder = [s for s in apps.find_service_principals(ctx.graph, odata.any_eq("tags", model.instance_tag(ctx.tag, key)),
                                                      select="id") if apps.object_id(s) != sp_id]
    if holder:
        raise AdoptionRefused(f"instance {key} (display name '{sp.get('displayName')}') is already service principal "
                              f"{apps.object_id(holder[0])}", status=409, ids=[apps.object_id(holder[0])])
    managed = ctx.tag in tags and model.instance_tag(ctx.tag, key) in tags
    stored = sync.get_secret_keys(ctx.graph, sp_id)
    notes = instance_notes(ctx, credentials, **_kept_settings(stored)) if credentials else None
    jobs = sync.list_jobs(ctx.graph, sp_id)
    configuration = {
        "jobs": [{"id": j.get("id"), "templateId": j.get("templateId"), "state": job_status.classify(j).state.value}
                 for j in jobs],
        "secretKeys": sorted(stored),
        "assignments": len(assignments.list_assigned(ctx.graph, sp_id)),
    }
    result = {"instanceKey": key, "servicePrincipalId": sp_id, "displayName": sp.get("displayName"),
              "appId": sp.get("appId"), "applicationTemplateId": sp.get("applicationTemplateId"),
              "configuration": configuration}
    if dry_run:
        return {**result, "dryRun": True, "outcome": "alreadyManaged" if managed else "wouldAdopt",
                "calls": [] if managed and not labels and not notes else [f"PATCH /servicePrincipals/{sp_id} (tags"
                                                                          f"{', notes' if notes else ''})"]}
    _label(ctx, sp, key, labels or None, notes)
    logger.info("adopted service principal %s as instance %s", sp_id, key)
    return {**result, "outcome": "alreadyManaged" if managed else "adopted"}


def _kept_settings(stored: dict[str, str]) -> dict[str, Any]:
    """An adopted app's own provisioning settings (syncAll, notification email, deletion threshold) as
    :func:`core.steps.records.instance_notes` keeps them: a rotation or the sweep's restart PUTs the whole
    secret set from the notes, which must not turn the app's portal settings into the defaults. What
    Graph did not answer (absent, masked) is left to the defaults."""
    have = settings_of(stored)
    threshold = have["deletionThreshold"]
    try:
        notify = json.loads(stored.get("SyncNotificationSettings") or "null")
    except ValueError:
        notify = None
    mails = isinstance(notify, dict) and str(notify.get("Enabled")).lower() == "true"  # emails off: kept off
    kept: dict[str, Any] = {"sync_all": have["syncAll"] is True,
                            "notification_email": have["notificationEmail"] if mails else None}
    if threshold["enabled"] is not None:
        kept["deletion_threshold"] = ({"enabled": True, **({"count": threshold["count"]} if threshold["count"] else {})}
                                      if threshold["enabled"] else {"enabled": False})
    return kept


def provisioning_settings(ctx: StepContext, sp_id: str) -> dict:
    """The instance's accidental-deletion threshold and notification email as Graph stores them.

    Read from the ``SyncNotificationSettings`` secret (Graph returns it in clear; a masked or absent
    value gives nulls) - ``DeleteThresholdEnabled`` / ``DeleteThresholdValue`` / ``Recipients``, the
    portal's "Prevent accidental deletions" settings
    (https://learn.microsoft.com/entra/identity/app-provisioning/accidental-deletions; the JSON shape:
    :func:`core.steps.credentials.notification_settings`). Only these fields and ``SyncAll`` are
    parsed; no other stored value is read into the answer. The same shape as a request's
    ``provisioningSettings`` (plus ``syncAll``), so it can be copied into one.
    """
    return settings_of(sync.get_secret_keys(ctx.graph, sp_id))


def settings_of(stored: dict[str, str]) -> dict:
    """:func:`provisioning_settings` of the secrets ``GET .../synchronization/secrets`` answered."""
    notify: dict[str, Any] = {}
    try:
        parsed = json.loads(stored.get("SyncNotificationSettings") or "null")
        notify = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        notify = {}
    enabled = notify.get("DeleteThresholdEnabled")
    value = notify.get("DeleteThresholdValue")
    on = str(enabled).lower() == "true" if enabled is not None else None
    return {
        "deletionThreshold": {
            "enabled": on,
            "count": int(value) if on is not False and isinstance(value, (int, str)) and str(value).isdigit() else None,
        },
        "notificationEmail": str(notify["Recipients"]) if notify.get("Recipients") else None,
        "syncAll": {"true": True, "false": False}.get(str(stored.get("SyncAll")).lower()),
    }


def settings_changes(spec: model.InstanceSpec, stored: dict[str, str]) -> list[str]:
    """What saving ``spec``'s secret set would change in the stored provisioning settings (plan)."""
    have = settings_of(stored)
    want = model.effective_deletion_threshold(spec.deletion_threshold)
    changes = []
    if have["deletionThreshold"] != want:
        changes.append(f"deletionThreshold {_threshold_text(have['deletionThreshold'])} -> {_threshold_text(want)}")
    if have["notificationEmail"] != (spec.notification_email or None):
        changes.append(f"notificationEmail {have['notificationEmail']} -> {spec.notification_email or None}")
    if have["syncAll"] is not spec.sync_all:
        changes.append(f"syncAll {have['syncAll']} -> {spec.sync_all}")
    return changes


def _threshold_text(threshold: dict) -> str:
    if threshold.get("enabled") is None:
        return "unset"
    return f"on ({threshold.get('count')})" if threshold["enabled"] else "off"


# -- last batch, last action (fleet registry, best effort) ---------------------------------------------

def batch_part_rows(document: Any) -> dict[str, dict]:
    """``{servicePrincipalId: {"lastBatch": {batchId, outcome, at}}}`` of a sub-batch's report part
    (``{"batchId", "index", "instances": [final outcomes]}``); an instance without a service
    principal (it failed before one existed) or still ``configured`` has no row."""
    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        return {}
    batch_id = document.get("batchId")
    rows: dict[str, dict] = {}
    for outcome in document["instances"]:
        if not isinstance(outcome, dict):
            continue
        sp_id = (outcome.get("ids") or {}).get("servicePrincipalId")
        state = outcome.get("outcome")
        if not sp_id or not state or state == "configured":
            continue
        at = (outcome.get("timings") or {}).get("finishedAt")
        rows[str(sp_id)] = {"lastBatch": {"batchId": batch_id, "outcome": state, "at": at}}
    return rows


def record_batch_part(document: Any, registry: Any = None) -> int:
    """Write ``lastBatch`` of every instance of a report part to the fleet registry; rows written (0 on failure).

    Called by ``write_batch_report`` once the part is in blob storage: the part holds each instance's
    final outcome, so recording here needs no orchestration step (histories unchanged). Best effort:
    the registry is a cache, and a storage failure never fails the report write.
    """
    from core import registry as fleet_registry

    rows = batch_part_rows(document)
    if not rows:
        return 0
    try:
        (registry or fleet_registry.get_registry()).upsert_many(rows)
        return len(rows)
    except Exception as exc:  # noqa: BLE001 - any storage failure; its text may quote a request, so only the type
        logger.warning("fleet registry: lastBatch of %d instance(s) not written (%s)", len(rows), type(exc).__name__)
        return 0


def record_action(action_id: str | None, result: dict, at: str, registry: Any = None) -> bool:
    """Write ``lastAction`` {actionId, action, outcome, at} of one target's result (best effort)."""
    from core import registry as fleet_registry

    sp_id = result.get("servicePrincipalId")
    if not action_id or not sp_id or not result.get("outcome"):
        return False
    fields = {"lastAction": {"actionId": action_id, "action": result.get("action"), "outcome": result["outcome"],
                             "at": at}}
    if registry is not None:
        try:
            registry.upsert(str(sp_id), fields)
            return True
        except Exception as exc:  # noqa: BLE001 - as record_best_effort
            logger.warning("fleet registry: lastAction of %s not written (%s)", sp_id, type(exc).__name__)
            return False
    return fleet_registry.record_best_effort(str(sp_id), fields)


def with_history(instances: list[dict], rows: dict[str, dict]) -> list[dict]:
    """``instances`` each with ``lastBatch``, ``lastAction`` and ``lastSweepResult`` (the last health sweep's
    classification) from its registry row (null without one)."""
    out = []
    for inst in instances:
        row = rows.get(inst["servicePrincipalId"]) or {}
        out.append({**inst, "lastBatch": row.get("lastBatch"), "lastAction": row.get("lastAction"),
                    "lastSweepResult": row.get("lastSweepResult")})
    return out


#: up to this many instances the inventory reads their registry rows one by one, else the whole table once
POINT_READS_MAX = 50


def registry_rows(sp_ids: list[str], registry: Any = None) -> dict[str, dict]:
    """The registry rows of ``sp_ids`` (one query for many, one read for one); {} when the registry
    cannot be read (the inventory then shows nulls: Graph stays the source of the fleet)."""
    from core import registry as fleet_registry

    if not sp_ids:
        return {}
    try:
        store = registry or fleet_registry.get_registry()
        if len(sp_ids) <= POINT_READS_MAX:  # a page: point reads (one row each), a few at a time
            with ThreadPoolExecutor(max_workers=min(8, len(sp_ids))) as pool:
                found = dict(zip(sp_ids, pool.map(store.get, sp_ids)))
            return {sp_id: row for sp_id, row in found.items() if row}
        wanted = set(sp_ids)  # a long page: one query of the partition
        return {str(r.get("servicePrincipalId")): r for r in store.all() if r.get("servicePrincipalId") in wanted}
    except Exception as exc:  # noqa: BLE001 - best effort, as above
        logger.warning("fleet registry not read for the inventory (%s)", type(exc).__name__)
        return {}
