"""Steps of the schema-profile family: find an instance, plan (validate + mapping-level diff), apply
a profile (PUT the whole schema, restart, record the profile on the service principal), drift.

* **Plan** never writes: it reads the job, its template's default schema and the job's schema,
  checks the profile against the template's schema (``core.schema_profiles.check_against``) and
  every expression with Graph's ``parseExpression``, and returns the diff between the job's schema
  and the desired one (template default + profile). Errors name the mapping
  (``objectMappings.User.attributeMappings.userName``).
* **Apply** (``dry_run`` = plan only) refuses a service principal without our correlation tag, PUTs
  the whole desired schema only when the diff is not empty (a schema PUT replaces the schema:
  https://learn.microsoft.com/graph/api/synchronization-synchronizationschema-update), restarts a
  running job with ``resetScope`` ``Watermark`` so every user is evaluated again under the new
  mappings ("Removing the watermark causes the service to reevaluate all the users again":
  https://learn.microsoft.com/graph/api/resources/synchronization-synchronizationjobrestartcriteria),
  and records ``<tag>:schema-profile:<name>=<version>`` on the service principal (PATCH of the
  complete tag list, like the Key Vault version records in ``core.steps.records``). A retry
  converges: no diff and the tag present means nothing is written.
* **Drift** compares the actual state with the desired one: the schema (mapping-level diff and
  fingerprints against the recorded profile), the secret key set (names only) against the
  credential references in our notes, the provisioning settings (``SyncNotificationSettings``,
  ``SyncAll``) against the notes, the assignments the notes record, the job's schedule state
  (``Active`` wanted). Reads only; enforcing is :func:`enforce_drift`'s.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from core import errors, model, odata
from core import status as job_status
from core import schema_profiles as sp_profiles
from core.graph import applications as apps
from core.graph import assignments as assign
from core.graph import provisioning_logs as sp_logs
from core.graph import schema as graph_schema
from core.graph import synchronization as sync
from core.rotation_contracts import GUID
from core.steps.context import StepContext, _wait_for
from core.steps.records import read_notes
from core.times import iso_seconds

logger = logging.getLogger("core.steps")

#: tag kind of the applied profile: ``<tag>:schema-profile:<name>=<version>``
PROFILE_TAG = "schema-profile"
#: the restart scope after a schema change (every user evaluated again under the new mappings)
SCHEMA_RESTART_SCOPE = "Watermark"


def profile_tag(ctx: StepContext, profile: dict) -> str:
    return f"{ctx.tag}:{PROFILE_TAG}:{profile['name']}={profile['version']}"


def recorded_profile(ctx: StepContext, tags: Any) -> str | None:
    """``<name>.v<version>`` recorded on a service principal's tags (None: no profile applied)."""
    prefix = f"{ctx.tag}:{PROFILE_TAG}:"
    for tag in tags or []:
        text = str(tag)
        if text.startswith(prefix) and "=" in text[len(prefix):]:
            name, version = text[len(prefix):].rsplit("=", 1)
            return f"{name}.v{version}"
    return None


def find_instance(ctx: StepContext, key: str) -> dict:
    """The service principal carrying ``<tag>:key:<key>`` (NotFound when none, InvalidRequest for a bad key)."""
    if not isinstance(key, str) or not key or len(key) > 64 or not all(c.isalnum() for c in key):
        raise errors.InvalidRequest([errors.Problem("key", "an instance key: letters and digits, as listed by the health sweep")])
    found = apps.find_service_principals(ctx.graph, odata.any_eq("tags", model.instance_tag(ctx.tag, key)),
                                         select="id,displayName,applicationTemplateId,tags,notes")
    if not found:
        raise errors.NotFound(f"no instance with key {key} (no service principal carries {model.instance_tag(ctx.tag, key)})",
                              code="InstanceNotFound", status=404)
    return found[0]


def _ours(ctx: StepContext, sp: dict) -> dict:
    if ctx.tag not in [str(t) for t in sp.get("tags") or []]:
        raise errors.PermanentError(f"service principal {apps.object_id(sp)} does not carry the tag {ctx.tag}; "
                                    "a schema profile is applied only to instances this app manages",
                                    code="NotManaged")
    return sp


def _job(ctx: StepContext, sp_id: str, template_id: str | None, job_id: str | None) -> dict:
    jobs = _wait_for(ctx, f"list jobs of {sp_id}", lambda: sync.list_jobs(ctx.graph, sp_id))
    for job in jobs:
        if (job_id and job.get("id") == job_id) or (not job_id and (template_id is None or job.get("templateId") == template_id)):
            return job
    wanted = job_id or f"a job of template {template_id}"
    raise errors.InvalidRequest([errors.Problem("schemaProfile", f"service principal {sp_id} has no synchronization job ({wanted})")])


def plan(ctx: StepContext, *, service_principal_id: str, profile: str, job_id: str | None = None) -> dict:
    """Validate ``profile`` for this instance and diff its job's schema against the desired schema (no write).

    The desired schema itself is not in the result (it stays in the activity: a history keeps the diff only).
    """
    return _plan(ctx, service_principal_id=service_principal_id, profile=profile, job_id=job_id)[0]


def _plan(ctx: StepContext, *, service_principal_id: str, profile: str, job_id: str | None) -> tuple[dict, dict]:
    """:func:`plan`'s result and the desired schema (which :func:`apply_profile` writes)."""
    loaded = sp_profiles.load(profile)
    sp_id = service_principal_id
    job = _job(ctx, sp_id, loaded["synchronizationTemplateId"], job_id)
    template_id = str(job.get("templateId") or loaded["synchronizationTemplateId"])
    if template_id != loaded["synchronizationTemplateId"]:
        raise errors.InvalidRequest([errors.Problem("synchronizationTemplateId",
                                                    f"profile {sp_profiles.ref(loaded)} is for template {loaded['synchronizationTemplateId']}, "
                                                    f"the job runs {template_id}")])
    template_schema = _wait_for(ctx, f"read template schema {template_id}",
                                lambda: graph_schema.get_template_schema(ctx.graph, sp_id, template_id))
    problems = sp_profiles.check_against(template_schema, loaded)
    parsed: dict[str, dict] = {}
    for path, expression in sp_profiles.expressions(loaded):
        answer = graph_schema.parse_expression(ctx.graph, sp_id, str(job["id"]), expression)
        if not answer.get("parsingSucceeded"):
            why = (answer.get("error") or {}).get("message") or "Graph could not parse it"
            problems.append(errors.Problem(f"{path}.expression", f"{_label(template_schema, path)}: {why}"))
        elif isinstance(answer.get("parsedExpression"), dict):
            parsed[expression] = answer["parsedExpression"]
    if problems:
        raise errors.InvalidRequest(problems)
    actual = _wait_for(ctx, f"read schema of job {job['id']}", lambda: sync.get_schema(ctx.graph, sp_id, str(job["id"])))
    desired = sp_profiles.apply(template_schema, loaded, parsed)
    changes = sp_profiles.diff(actual, desired)
    return {"servicePrincipalId": sp_id, "jobId": job["id"], "templateId": template_id, "profile": sp_profiles.ref(loaded),
            "changes": changes, "fingerprint": {"actual": sp_profiles.fingerprint(actual),
                                                "desired": sp_profiles.fingerprint(desired)},
            "jobScheduleState": (job.get("schedule") or {}).get("state")}, desired


def _label(schema: dict, path: str) -> str:
    parts = path.split(".")
    source = parts[1] if len(parts) > 1 else ""
    target = path.split(".attributeMappings.", 1)[1] if ".attributeMappings." in path else ""
    return f"object mapping '{sp_profiles.mapping_name(schema, source)}', attribute mapping '{target}'"


def apply_profile(ctx: StepContext, *, service_principal_id: str, profile: str, job_id: str | None = None,
                  dry_run: bool = False) -> dict:
    """Plan, then (unless ``dry_run``) PUT the desired schema, restart a running job and record the profile."""
    sp_id = service_principal_id
    sp = _ours(ctx, _wait_for(ctx, f"read {sp_id}", lambda: apps.get_service_principal(ctx.graph, sp_id, select="id,tags")))
    result, desired = _plan(ctx, service_principal_id=sp_id, profile=profile, job_id=job_id)
    loaded = sp_profiles.load(profile)
    tags = [str(t) for t in sp.get("tags") or []]
    wanted_tag = profile_tag(ctx, loaded)
    recorded = wanted_tag in tags
    result.update({"dryRun": bool(dry_run), "applied": False, "restarted": False, "recorded": recorded})
    if dry_run:
        return result
    job_id_ = str(result["jobId"])
    if result["changes"]:
        _wait_for(ctx, f"put schema of job {job_id_}", lambda: sync.put_schema(ctx.graph, sp_id, job_id_, desired))
        result["applied"] = True
        logger.info("applied schema profile %s to %s (job %s): %d mapping changes", result["profile"], sp_id, job_id_,
                    len(result["changes"]))
    if (result["changes"] or not recorded) and result.get("jobScheduleState") == "Active":
        sync.restart_job(ctx.graph, sp_id, job_id_, SCHEMA_RESTART_SCOPE)
        result["restarted"] = True
    if not recorded:
        prefix = f"{ctx.tag}:{PROFILE_TAG}:"
        new_tags = [t for t in tags if not t.startswith(prefix)] + [wanted_tag]
        _wait_for(ctx, f"record profile on {sp_id}", lambda: apps.update_service_principal(ctx.graph, sp_id, {"tags": new_tags}))
        result["recorded"] = True
    return result


def drift(ctx: StepContext, *, service_principal_id: str) -> dict:
    """What differs between the instance and its desired state (:func:`_drift`)."""
    return _drift(ctx, service_principal_id)[0]


def _drift(ctx: StepContext, service_principal_id: str) -> tuple[dict, dict]:
    """The drift report and our notes of the service principal (what the last request set).

    ``parts`` names what differs: ``job`` (none), ``schema`` (against the recorded profile),
    ``secretKeys`` (key names our notes reference that Graph no longer holds), ``provisioningSettings``
    (the ``SyncNotificationSettings`` / ``SyncAll`` keys against the notes' ``notificationEmail`` /
    ``syncAll``), ``assignments`` (principals the last request named that hold no assignment, when
    the notes record them), ``schedule`` (not ``Active``). Reads only.
    """
    sp_id = service_principal_id
    sp = _ours(ctx, _wait_for(ctx, f"read {sp_id}", lambda: apps.get_service_principal(
        ctx.graph, sp_id, select="id,displayName,tags,notes")))
    profile = recorded_profile(ctx, sp.get("tags"))
    jobs = _wait_for(ctx, f"list jobs of {sp_id}", lambda: sync.list_jobs(ctx.graph, sp_id))
    report: dict[str, Any] = {"servicePrincipalId": sp_id, "displayName": sp.get("displayName"), "profile": profile,
                              "parts": [], "jobId": None}
    if not jobs:
        report["parts"].append("job")
        report["job"] = {"expected": "a synchronization job", "actual": None}
        report["drifted"] = True
        return report, read_notes(ctx, sp.get("notes")) or {}
    job = jobs[0]
    report["jobId"] = job.get("id")
    actual = sync.get_schema(ctx.graph, sp_id, str(job["id"]))
    schema_part: dict[str, Any] = {"fingerprint": {"actual": sp_profiles.fingerprint(actual)}}
    if profile is not None:
        loaded = sp_profiles.load(profile)
        if loaded["synchronizationTemplateId"] == job.get("templateId"):
            template_schema = graph_schema.get_template_schema(ctx.graph, sp_id, str(job.get("templateId")))
            desired = sp_profiles.apply(template_schema, loaded)
            changes = sp_profiles.diff(actual, desired)
            schema_part["fingerprint"]["desired"] = sp_profiles.fingerprint(desired)
            schema_part["changes"] = changes
            if changes:
                report["parts"].append("schema")
    report["schema"] = schema_part
    notes = read_notes(ctx, sp.get("notes")) or {}
    if notes:  # our notes say what the last request set; without them there is nothing to compare with
        stored = sync.get_secret_keys(ctx.graph, sp_id)
        present = sorted(k for k, v in stored.items() if v != "")
        expected_keys = sorted(notes.get("credentials") or {})
        if expected_keys:
            missing = [k for k in expected_keys if k not in present]
            report["secretKeys"] = {"expected": expected_keys, "actual": present, "missing": missing}
            if missing:
                report["parts"].append("secretKeys")
        report["provisioningSettings"] = settings_drift(notes, stored)
        if report["provisioningSettings"]["differences"]:
            report["parts"].append("provisioningSettings")
        report["assignments"] = assignments_drift(ctx, sp_id, notes)
        if report["assignments"].get("missing"):
            report["parts"].append("assignments")
    state = (job.get("schedule") or {}).get("state")
    report["schedule"] = expected_schedule(sp_id, state)
    if state not in PAUSED_STATES.get(report["schedule"]["expected"], (report["schedule"]["expected"],)):
        report["parts"].append("schedule")
    report["drifted"] = bool(report["parts"])
    return report, notes


#: the schedule states that satisfy an expected ``Paused``: Graph's examples of a paused job show
#: ``schedule.state`` ``Disabled`` (the emulator's ``pause_schedule_state`` setting: ``Disabled`` or
#: ``Paused``; https://learn.microsoft.com/graph/api/resources/synchronization-synchronizationschedule)
PAUSED_STATES = {"Paused": ("Paused", "Disabled")}


def expected_schedule(sp_id: str, actual: str | None, row: dict | None = None) -> dict:
    """The schedule state drift wants: ``Active``, unless an operator's last action on the instance was a
    pause that took effect (the fleet registry's ``lastAction``: ``pause`` with outcome ``done`` or
    ``unchanged``); then ``Paused``, so enforcing drift never resumes a job paused on purpose (say, every
    production AWS job during an AWS outage) - ``resume`` does. Without a registry row (the registry is a
    best-effort cache) the expectation is ``Active`` and says why: ``reason``."""
    if row is None:
        from core import registry as fleet_registry

        try:
            row = fleet_registry.get_registry().get(sp_id)
        except Exception as exc:  # noqa: BLE001 - the registry is a cache; drift still answers
            logger.warning("drift of %s: fleet registry not read (%s)", sp_id, type(exc).__name__)
            row = None
    last = (row or {}).get("lastAction") if isinstance((row or {}).get("lastAction"), dict) else None
    if last and last.get("action") == "pause" and last.get("outcome") in ("done", "unchanged"):
        return {"expected": "Paused", "actual": actual,
                "reason": f"paused by an operator (action {last.get('actionId')} at {last.get('at')})"}
    return {"expected": "Active", "actual": actual}


def enforce_drift(ctx: StepContext, *, service_principal_id: str, dry_run: bool = True) -> dict:
    """Put the drifted parts of one instance back (``dry_run``: only say what would be done).

    Per part, each write idempotent (a repeat finds nothing to do):

    * ``schema`` - :func:`apply_profile` of the recorded profile (PUT only when the diff is not empty,
      restart with ``Watermark``);
    * ``schedule`` - start the job (:func:`core.steps.jobs.start_job`: not when it already runs), or,
      when the operator's last action paused it (:func:`expected_schedule`), pause it again;
    * ``secretKeys`` / ``provisioningSettings`` - the credentials step: the Key Vault values the notes
      reference are validated against the target, then the complete secret set (with ``SyncAll`` and
      ``SyncNotificationSettings`` from the notes) is saved again (:func:`core.steps.credentials.save_secrets`);
      without references in the notes or a Key Vault: reported only;
    * ``assignments`` - the principals the notes record are assigned again (existing ones kept);
    * ``job`` (none) - reported only: re-submit the request.

    A part whose write fails for good (e.g. a user the request named is gone) is ``error`` with the
    code; the parts after it are still put back.
    """
    from core import model
    from core.steps import assignments as assign_steps
    from core.steps import credentials as credential_steps
    from core.steps import jobs as job_steps

    sp_id = service_principal_id
    found, notes = _drift(ctx, sp_id)
    actions: list[dict[str, Any]] = []
    job_id = str(found.get("jobId") or "")

    def act(part: str, action: str, run: Any) -> None:
        if dry_run:
            actions.append({"part": part, "action": action, "outcome": "planned"})
            return
        try:
            detail = run()
        except errors.InvalidCredentials as exc:
            actions.append({"part": part, "action": action, "outcome": "refused",
                            "detail": f"the Key Vault values do not validate: {exc.code}"})
            return
        except errors.PermanentError as exc:  # e.g. a user the request named is gone: the other parts go on
            actions.append({"part": part, "action": action, "outcome": "error",
                            "detail": f"{exc.code}: {exc.message[:300]}"})
            return
        actions.append({"part": part, "action": action, "outcome": "done", "detail": detail})

    def report_only(part: str, why: str) -> None:
        actions.append({"part": part, "action": "none", "outcome": "reported", "detail": why})

    parts = found["parts"]
    if "job" in parts:
        report_only("job", "the instance has no synchronization job: re-submit its provisioning request")
    if "schema" in parts:
        profile = str(found.get("profile"))
        act("schema", f"apply {profile} again (PUT the whole schema, restart with {SCHEMA_RESTART_SCOPE})",
            lambda: f"{len(apply_profile(ctx, service_principal_id=sp_id, profile=profile)['changes'])} mapping changes applied")
    if "secretKeys" in parts or "provisioningSettings" in parts:
        refs = notes.get("credentials")
        which = [p for p in ("secretKeys", "provisioningSettings") if p in parts]
        if not isinstance(refs, dict) or not refs:
            for part in which:
                report_only(part, "no Key Vault references in the service principal's notes: re-submit the request")
        elif ctx.secrets is None:
            for part in which:
                report_only(part, "no Key Vault configured (KEY_VAULT_URL): the values cannot be saved again")
        else:
            def resave() -> str:
                credentials = model.parse_credentials(refs)
                credential_steps.validate_credentials(ctx, service_principal_id=sp_id, job_id=job_id, credentials=credentials)
                saved = credential_steps.save_secrets(ctx, service_principal_id=sp_id, credentials=credentials,
                                                      notification_email=notes.get("notificationEmail") or None,
                                                      sync_all=bool(notes.get("syncAll")),
                                                      deletion_threshold=notes.get("deletionThreshold")
                                                      if isinstance(notes.get("deletionThreshold"), dict) else None)
                return f"secret set saved again from Key Vault ({len(saved.get('savedVersions') or {})} Key Vault secrets)"
            act("+".join(which), "validate the Key Vault values and save the complete secret set again", resave)
    if "assignments" in parts:
        recorded = notes.get("assignments") or {}
        act("assignments", f"assign {', '.join(found['assignments']['missing'])} again",
            lambda: f"{assign_steps.assign_principals(ctx, service_principal_id=sp_id, users=recorded.get('users') or [], groups=recorded.get('groups') or [], app_role=recorded.get('appRole') or None)['assigned']} assigned")
    if "schedule" in parts:
        if (found.get("schedule") or {}).get("expected") == "Paused":
            def pause() -> str:
                sync.pause_job(ctx.graph, sp_id, str(job_id))
                return "paused"
            act("schedule", "pause the job again (an operator paused it)", pause)
        else:
            act("schedule", "start the job",
                lambda: "started" if job_steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)["started"] else "already running")
    return {"servicePrincipalId": sp_id, "displayName": found.get("displayName"), "profile": found.get("profile"),
            "dryRun": bool(dry_run), "drifted": found["drifted"], "parts": parts, "actions": actions}


def settings_drift(notes: dict, stored: dict[str, str]) -> dict:
    """The provisioning settings Graph holds against what our notes record (no secret value is read).

    ``SyncNotificationSettings`` and ``SyncAll`` come back in clear from GET .../synchronization/secrets
    (the portal's accidental-deletion settings live in the first:
    https://learn.microsoft.com/entra/identity/app-provisioning/accidental-deletions). Compared: the key's
    presence, its ``Recipients`` / ``Enabled`` against the notes' ``notificationEmail`` and ``SyncAll``
    against ``syncAll``. A masked value (``*``) is compared by presence only (``valueCompared`` False).
    """
    differences: list[dict[str, Any]] = []
    raw = stored.get("SyncNotificationSettings", "")
    part: dict[str, Any] = {"differences": differences, "valueCompared": False}
    email = notes.get("notificationEmail") or None
    if raw == "":
        differences.append({"field": "SyncNotificationSettings", "expected": "present", "actual": None})
    elif raw != "*":
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            part["valueCompared"] = True
            actual_email = str(parsed.get("Recipients") or "") or None
            if actual_email != email:
                differences.append({"field": "SyncNotificationSettings.Recipients", "expected": email,
                                    "actual": actual_email})
            enabled = str(parsed.get("Enabled")).lower() == "true"
            if enabled != bool(email):
                differences.append({"field": "SyncNotificationSettings.Enabled", "expected": bool(email),
                                    "actual": enabled})
            from core.fleet import settings_of

            # the request's threshold, kept in the notes (absent: the default every request saves, on with 500)
            want = model.effective_deletion_threshold(notes.get("deletionThreshold")
                                                      if isinstance(notes.get("deletionThreshold"), dict) else None)
            have = settings_of(stored)["deletionThreshold"]
            part["deletionThreshold"] = {"expected": want, "actual": have}
            if have != want:
                differences.append({"field": "SyncNotificationSettings.DeleteThreshold", "expected": want,
                                    "actual": have})
        else:
            differences.append({"field": "SyncNotificationSettings", "expected": "a JSON object", "actual": "unreadable"})
    if "syncAll" in notes:
        wanted = "true" if notes.get("syncAll") else "false"
        got = stored.get("SyncAll", "")
        if got != "*" and got.lower() != wanted:
            differences.append({"field": "SyncAll", "expected": wanted, "actual": got or None})
    return part


def assignments_drift(ctx: StepContext, sp_id: str, notes: dict) -> dict:
    """Principals the last request assigned (notes ``assignments``: ``{users, groups}``) that hold no
    assignment now (``GET /servicePrincipals/{id}/appRoleAssignedTo``:
    https://learn.microsoft.com/graph/api/serviceprincipal-list-approleassignedto).

    Extra assignments are listed, not counted as drift: requests add assignments and never remove
    any, so a principal another request named is not a portal change. Without the notes key (nothing
    records the request's assignments yet) only the count is reported (``compared`` False).
    """
    listed = assign.list_assigned(ctx.graph, sp_id)
    assigned = {str(a.get("principalId")).lower() for a in listed}
    recorded = notes.get("assignments")
    if not isinstance(recorded, dict):
        return {"compared": False, "actual": len(assigned),
                "note": "the desired assignments are not recorded on the instance (notes key 'assignments')"}
    if recorded.get("appRole"):  # the request named the role: only an assignment of that role is the request's
        sp = _wait_for(ctx, f"read {sp_id}", lambda: apps.get_service_principal(ctx.graph, sp_id, select="id,appRoles"))
        role = assign.find_app_role(sp, str(recorded["appRole"]))
        role_id = str((role or {}).get("id") or "").lower()
        assigned = {str(a.get("principalId")).lower() for a in listed if str(a.get("appRoleId")).lower() == role_id}
    wanted: dict[str, str] = {}
    for kind, resolve in (("users", assign.resolve_user), ("groups", assign.resolve_group)):
        for ref in recorded.get(kind) or []:
            try:
                wanted[str(resolve(ctx.graph, str(ref))).lower()] = str(ref)
            except errors.NotFound:
                wanted[f"unresolved:{ref}"] = str(ref)
    missing = sorted(ref for principal, ref in wanted.items() if principal not in assigned)
    return {"compared": True, "expected": len(wanted), "actual": len(assigned), "missing": missing,
            "extra": len(assigned - set(wanted))}


# -- what a cycle did (the rollout's regression signals) -------------------------------------------

#: provisioningAction values that take an account away from the target (v1.0 names; beta: Delete,
#: Disable, StagedDelete): https://learn.microsoft.com/graph/api/resources/provisioningobjectsummary
REMOVAL_ACTIONS = frozenset({"delete", "disable", "stageddelete"})


def out_of_scope(row: dict) -> bool:
    """A skipped row whose object did not pass a scoping filter.

    The service logs such an object as status ``skipped`` with SkipReason ``NotEffectivelyEntitled``
    and the reason "This object did not pass a scoping filter" (as users quote it:
    https://learn.microsoft.com/answers/questions/1023522/user-provisioning-noteffectivelyentitled);
    its scoping step's details say ``Scoping filter evaluation passed`` False, the skip step's
    ``IsInProvisioningScope`` False (https://learn.microsoft.com/answers/a/12571236). Any of the three
    counts; a disabled user (also NotEffectivelyEntitled, but in scope) does not.
    """
    status = str((row.get("provisioningStatusInfo") or row.get("statusInfo") or {}).get("status") or "").lower()
    if status != "skipped":
        return False
    for step in row.get("provisioningSteps") or []:
        if not isinstance(step, dict):
            continue
        details: dict = step["details"] if isinstance(step.get("details"), dict) else {}
        if (str(details.get("Scoping filter evaluation passed", "")).lower() == "false"
                or str(details.get("IsInProvisioningScope", "")).lower() == "false"
                or "did not pass a scoping filter" in str(step.get("description") or "")):
            return True
    return False


def _cycle_row(row: dict) -> dict:
    return {**sp_logs.summarize(row), "outOfScope": out_of_scope(row)}


def cycle_summary(ctx: StepContext, *, service_principal_id: str, job_id: str, windows: list[dict]) -> dict:
    """What cycles did to the target, from the job's provisioning log rows: one summary per window
    (``{since, until?}``: a cycle's timeBegan / timeEnded), in the order given.

    Per window, distinct source objects that failed, that the cycle disabled or deleted
    (``provisioningAction`` delete / disable / stagedDelete, not failed) and that were skipped as out
    of a scoping filter. One read covers every window (from the earliest ``since`` to the latest
    ``until``; no status filter: the three need different rows): the reporting API allows 5 requests
    per 10 s per app and tenant, so the cycle before and the cycle after a change cost one paged read,
    not two. Paged and paced like :func:`core.steps.jobs.get_provisioning_errors`, at most
    ``PROVISIONING_LOG_MAX_PAGES`` pages, newest first (``complete`` False: the counts are lower
    bounds, the oldest window's first).
    """
    bounds = [(job_status.parse_time(w.get("since")) or datetime(1970, 1, 1, tzinfo=timezone.utc),
               job_status.parse_time(w.get("until"))) for w in windows]
    if not bounds:
        return {"cycles": [], "rows": 0, "pages": 0, "complete": True}
    bounds = [(begin, _window_end(begin, end, bounds)) for begin, end in bounds]
    since = min(b for b, _ in bounds)
    until = None if any(u is None for _, u in bounds) else max(u for _, u in bounds if u is not None)
    pacer = ctx.pacer or sp_logs.Pacer(ctx.settings.provisioning_log_min_interval_seconds, ctx.monotonic, ctx.sleep)
    read = sp_logs.read_rows(ctx.graph, pacer, job_id, since, ctx.settings.provisioning_log_page_size,
                             until=until, max_pages=ctx.settings.provisioning_log_max_pages, summary=_cycle_row)
    found: list[dict[str, set[str]]] = [{"failed": set(), "removed": set(), "scopedOut": set()} for _ in bounds]
    rows = [0] * len(bounds)
    for row in read["rows"]:
        at = job_status.parse_time(row.get("activityDateTime"))
        who = str((row.get("source") or {}).get("id") or row.get("id"))
        for n, (begin, end) in enumerate(bounds):
            if at is None or at < begin or (end is not None and at > end):
                continue
            rows[n] += 1
            if row.get("status") == "failure":
                found[n]["failed"].add(who)
            elif str(row.get("action") or "").lower() in REMOVAL_ACTIONS:
                found[n]["removed"].add(who)
            elif row.get("outOfScope"):
                found[n]["scopedOut"].add(who)
    cycles = [{"since": iso_seconds(begin), "until": windows[n].get("until"), "rows": rows[n],
               "failedObjects": len(found[n]["failed"]), "removedObjects": len(found[n]["removed"]),
               "scopedOutObjects": len(found[n]["scopedOut"])} for n, (begin, _) in enumerate(bounds)]
    return {"cycles": cycles, "rows": len(read["rows"]), "pages": read["pages"], "complete": read["complete"]}


def _window_end(begin: datetime, end: datetime | None, bounds: list[tuple[datetime, datetime | None]]) -> datetime | None:
    """A window's end a second later: a cycle's times come to the second (core.status cuts the fraction),
    its rows with theirs, so the rows of its last second lie after ``timeEnded`` as given (as
    orchestrators/monitor_job.py reads a cycle's errors). Not into a window that begins later: a row
    there belongs to the later cycle."""
    if end is None:
        return None
    later = [b for b, _ in bounds if b > begin]
    return max(end, min([end + timedelta(seconds=1)] + later))


def canary_subject(value: Any) -> dict | None:
    """A provisionOnDemand subject from ``{"objectId", "objectType" | "objectTypeName"}`` (None when it is not one)."""
    if not isinstance(value, dict):
        return None
    object_id = value.get("objectId")
    kind = value.get("objectTypeName") or value.get("objectType") or "User"
    if not isinstance(object_id, str) or not GUID.match(object_id) or kind not in ("User", "Group"):
        return None
    return {"objectId": object_id, "objectTypeName": kind}


def recorded_canary(ctx: StepContext, service_principal_id: str) -> dict | None:
    """The canary subject recorded in our notes of the service principal (key ``canary``), if any."""
    sp = _wait_for(ctx, f"read {service_principal_id}", lambda: apps.get_service_principal(
        ctx.graph, service_principal_id, select="id,notes"))
    return canary_subject((read_notes(ctx, sp.get("notes")) or {}).get("canary"))
