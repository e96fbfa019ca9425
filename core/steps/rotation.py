"""Steps of the credential-rotation family: who references a Key Vault secret, rotate one instance
to the secret's new version (validated first), whether an instance lags Key Vault, the expiry
calendar, and the fleet registry's rebuild and provisioning record.

Nothing here returns, logs or stores a secret value: Key Vault values are read inside
:func:`rotate_instance` and handed straight to Graph; everything else reads Key Vault *properties*
(version, ``expires``) through List Secret Versions, which answers no values.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from core import errors, events, model, odata
from core import registry as fleet
from core import status as job_status
from core.contracts import CONFIGURED
from core.events import event_line
from core.graph import applications as apps
from core.graph import synchronization as sync
from core.steps.context import StepContext
from core.steps.credentials import _put_secret_set, _resolve, _validate
from core.steps.jobs import _job_id
from core.steps.records import (RESTARTED, SAVED, _describe, notes_canary, read_notes, read_versions,
                                record_saved_versions, secret_versions)
from core.times import iso

logger = logging.getLogger("core.steps")

#: outcomes of :func:`rotate_instance`
ROTATED, INVALID, ALREADY_CURRENT, SUPERSEDED, NOT_REFERENCED, WOULD_ROTATE, NOT_OURS = (
    "rotated", "invalid", "alreadyCurrent", "superseded", "notReferenced", "wouldRotate", "notOurs")


def secret_dependents(ctx: StepContext, *, secret_name: str, registry: Any = None) -> dict:
    """The registered instances whose credentials reference ``secret_name`` (from the fleet registry)."""
    rows = (registry or fleet.get_registry()).referencing(secret_name)
    return {"instances": [{"servicePrincipalId": r.get("servicePrincipalId"), "displayName": r.get("displayName"),
                           "instanceKey": r.get("instanceKey")} for r in rows]}


def _instance_view(ctx: StepContext, sp_id: str) -> tuple[dict, dict | None]:
    sp = apps.get_service_principal(ctx.graph, sp_id, select="id,displayName,applicationTemplateId,tags,notes")
    return sp, read_notes(ctx, sp.get("notes"))


def canary_for(request: dict | None, notes: dict | None, template_id: Any,
               by_template: dict[str, dict] | None, default: dict | None) -> tuple[dict | None, str | None]:
    """The provisionOnDemand subject of one instance and where it came from: the rotation request's
    (``request``), else the instance's own (its notes' ``canary``), else ``ROTATION_CANARY_BY_TEMPLATE``'s
    for its application template (``template``), else ``ROTATION_CANARY``'s (``default``); else none."""
    if request:
        return dict(request), "request"
    own = notes_canary(notes)
    if own:
        return own, "instance"
    by_template_subject = (by_template or {}).get(str(template_id or "").lower())
    if by_template_subject:
        return dict(by_template_subject), "template"
    if default:
        return dict(default), "default"
    return None, None


def rotate_instance(ctx: StepContext, *, service_principal_id: str, secret_name: str, version: str,
                    dry_run: bool = False, canary: dict | None = None, registry: Any = None,
                    canary_by_template: dict[str, dict] | None = None, default_canary: dict | None = None) -> dict:
    """Bring one instance to Key Vault's version ``version`` of ``secret_name``, validated first.

    In order: the service principal must carry the correlation tag and its notes must still
    reference the secret; Key Vault's current version must be ``version`` (an older event is
    ``superseded``: the newer version's own rotation handles it); when the ``kv-saved`` record
    already holds the current versions nothing is done (``alreadyCurrent``: a duplicated event or
    a second sweep changes nothing - except that a restart recorded for these versions whose job is
    still credential-quarantined is done now: the worker died between the record and the restart).
    Then validateCredentials with the *full* set (every reference
    read from Key Vault here, the literals as stored): refused -> ``invalid``, nothing changed.
    Valid -> the full set is PUT (``save_secrets``' converging PUT), the versions recorded on the
    service principal (the ``kv-saved`` tags the sweep reads) and in the fleet registry, and the
    job restarted (``QuarantineState``) only when it is quarantined because of its credentials.
    Then the post-rotation canary (:func:`canary_for`), if any, is provisioned on demand and its
    result reported and recorded (registry ``lastRotation.canary``).
    """
    sp_id = service_principal_id
    sp, notes = _instance_view(ctx, sp_id)
    tags = [str(t) for t in sp.get("tags") or []]

    def result(outcome: str, reason: str, **extra: Any) -> dict:
        return {"servicePrincipalId": sp_id, "displayName": sp.get("displayName"), "outcome": outcome,
                "reason": reason, "restarted": False, **extra}

    if ctx.tag not in tags:
        return result(NOT_OURS, f"service principal does not carry the tag {ctx.tag}: not touched")
    credentials_json = (notes or {}).get("credentials")
    if not isinstance(credentials_json, dict) or secret_name.lower() not in {
            n.lower() for n in fleet.referenced_secrets(credentials_json)}:
        return result(NOT_REFERENCED, f"its credentials no longer reference Key Vault secret {secret_name}")
    credentials = model.parse_credentials(credentials_json, "credentials")
    resolved = _resolve(ctx, credentials)
    now_versions = secret_versions(credentials, resolved)
    current = next((v for n, v in now_versions.items() if n.lower() == secret_name.lower()), None)
    if current is not None and version and current != version.lower() and current != version:
        return result(SUPERSEDED, f"Key Vault's current version of {secret_name} is {current}, not {version}: "
                      "the rotation of that version handles it", secretVersions=now_versions)
    saved = read_versions(ctx, tags, SAVED)
    if all(saved.get(name) == v for name, v in now_versions.items()):
        # a restart recorded for these versions may not have happened (the worker died between the
        # record and the restart): finish it if the job is still in a credential quarantine
        restarted = (not dry_run and bool(now_versions)
                     and all(read_versions(ctx, tags, RESTARTED).get(n) == v for n, v in now_versions.items())
                     and _restart_if_credential_quarantine(ctx, sp_id, _job_id(ctx, sp_id, None)))
        _record(ctx, registry, sp, credentials_json, resolved, now_versions, None, validated=False)
        return result(ALREADY_CURRENT, f"already holds {_describe(now_versions)}"
                      + ("; credential quarantine restarted" if restarted else ""),
                      restarted=restarted, secretVersions=now_versions)
    job_id = _job_id(ctx, sp_id, None)
    try:
        _validate(ctx, sp_id, job_id, resolved.values)
    except errors.InvalidCredentials as exc:
        reason = f"the target refused the new set ({_describe(now_versions)}): {exc.message}; nothing changed"
        return result(INVALID, reason, jobId=job_id, code=exc.code, secretVersions=now_versions)
    if dry_run:
        return result(WOULD_ROTATE, f"validates ({_describe(now_versions)}); dry run: nothing saved", jobId=job_id,
                      secretVersions=now_versions)
    threshold = (notes or {}).get("deletionThreshold")
    _put_secret_set(ctx, sp_id, resolved, bool((notes or {}).get("syncAll")),
                    (notes or {}).get("notificationEmail") or None, threshold if isinstance(threshold, dict) else None)
    classified = job_status.classify(sync.get_job(ctx.graph, sp_id, job_id))
    quarantine = classified.quarantine or {}
    restart = (classified.state is job_status.JobState.QUARANTINED
               and quarantine.get("cause") == job_status.CAUSE_CREDENTIALS)
    restarted_record = {**read_versions(ctx, tags, RESTARTED), **now_versions} if restart else None
    # recorded before the restart: a retry after a crash finds alreadyCurrent and never restarts twice
    record_saved_versions(ctx, sp_id, now_versions, restarted=restarted_record, current_tags=tags)
    if restart:
        sync.restart_job(ctx.graph, sp_id, job_id, "QuarantineState")
    at = iso(ctx.now())
    subject, source = canary_for(canary, notes, sp.get("applicationTemplateId"), canary_by_template, default_canary)
    checked = {**_canary(ctx, sp_id, job_id, subject), "source": source} if subject else None
    _record(ctx, registry, sp, credentials_json, resolved, now_versions,
            {"secretName": secret_name, "version": version, "outcome": ROTATED, "restarted": restart, "at": at,
             **({"canary": checked} if checked else {})})
    logger.info("rotated %s to %s%s", sp_id, _describe(now_versions), " and restarted its quarantined job" if restart else "")
    extra = {"canary": checked} if checked else {}
    return result(ROTATED, f"validated and saved {_describe(now_versions)}"
                  + ("; credential quarantine restarted" if restart else ""),
                  restarted=restart, jobId=job_id, secretVersions=now_versions, rotatedAt=at, **extra)


def _restart_if_credential_quarantine(ctx: StepContext, sp_id: str, job_id: str) -> bool:
    classified = job_status.classify(sync.get_job(ctx.graph, sp_id, job_id))
    if (classified.state is job_status.JobState.QUARANTINED
            and (classified.quarantine or {}).get("cause") == job_status.CAUSE_CREDENTIALS):
        sync.restart_job(ctx.graph, sp_id, job_id, "QuarantineState")
        logger.info("restarted the credential-quarantined job of %s (its restart was recorded, not done)", sp_id)
        return True
    return False


def _canary(ctx: StepContext, sp_id: str, job_id: str, subject: dict) -> dict:
    """provisionOnDemand for the canary right after the save: the new credentials against the target in
    a minute, not at the next cycle (https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-provisionondemand).

    ``confirmed``: the target took the export (``Success``), or had nothing to change
    (``Skipped`` / ``RedundantExport``: it answered with the new credentials). Anything else is
    reported; the saved credentials stay (they validated), and the canary never fails the rotation.
    """
    view: dict[str, Any] = {"objectId": subject.get("objectId"), "objectTypeName": subject.get("objectTypeName")}
    try:
        schema = sync.get_schema(ctx.graph, sp_id, job_id)
        rules = [r.get("id") for r in schema.get("synchronizationRules") or [] if isinstance(r, dict) and r.get("id")]
        if not rules:
            return {**view, "status": "NotRun", "confirmed": False, "reason": "the job's schema has no rule"}
        results = sync.provision_on_demand(ctx.graph, sp_id, job_id, str(rules[0]), [dict(subject)])
    except errors.ProvisioningError as exc:
        return {**view, "status": "Error", "errorCode": exc.code, "confirmed": False}
    info = (results[0] if results else {}).get("statusInfo") or {}
    status, code = info.get("status"), info.get("errorCode")
    confirmed = status == "Success" or (status == "Skipped" and code in (None, "RedundantExport"))
    return {**view, "status": status, "errorCode": code, "confirmed": confirmed}


def _record(ctx: StepContext, registry: Any, sp: dict, credentials_json: dict, resolved: Any,
            versions: dict[str, str], rotation: dict | None, validated: bool = True) -> None:
    expires = _expires_by_name(credentials_json, resolved)
    at = iso(ctx.now())
    view = fleet.tags_view(ctx.tag, sp.get("tags") or [])
    fields: dict[str, Any] = {**fleet.instance_fields(instance_key=view["instanceKey"], display_name=sp.get("displayName"),
                                                      template_id=sp.get("applicationTemplateId"), labels=view["labels"],
                                                      credentials=credentials_json)}
    if validated:
        fields["secrets"] = fleet.secret_records(credentials_json, versions, expires, at)
    if rotation is not None:
        fields["lastRotation"] = rotation
    _upsert(registry, apps.object_id(sp), fields)


def _upsert(registry: Any, sp_id: str, fields: dict) -> None:
    if registry is not None:
        registry.upsert(sp_id, fields)
    else:
        fleet.record_best_effort(sp_id, fields)


def _expires_by_name(credentials_json: dict, resolved: Any) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, ref in credentials_json.items():
        if isinstance(ref, dict) and "keyVaultSecret" in ref:
            out[str(ref["keyVaultSecret"])] = resolved.expires.get(key)
    return out


def record_provisioned(ctx: StepContext, *, service_principal_id: str, credentials: dict, saved: dict,
                       current_tags: list[str] | None, registry: Any = None) -> None:
    """The provisioning workflow's registry row, after ``save_secrets`` (best effort: never fails the step).

    ``saved``: save_secrets' result (``savedVersions`` by secret name, ``savedExpires`` by secret name).
    """
    credentials_json = fleet.credentials_json(credentials)
    at = iso(ctx.now())
    view = fleet.tags_view(ctx.tag, current_tags or [])
    fields = {**fleet.instance_fields(instance_key=view["instanceKey"], labels=view["labels"] if current_tags else None,
                                      credentials=credentials_json),
              "secrets": fleet.secret_records(credentials_json, saved.get("savedVersions") or {},
                                              saved.get("savedExpires") or {}, at),
              "lastOutcome": CONFIGURED, "lastOutcomeAt": at}
    _upsert(registry, service_principal_id, fields)


def expiry_calendar(ctx: StepContext, *, now: datetime, warning_days: int, registry: Any = None) -> dict:
    """Every secret the registry references: its current version, ``expires``, days left, dependents."""
    rows = (registry or fleet.get_registry()).all()
    by_secret: dict[str, list[dict]] = {}
    for row in rows:
        for name in fleet.referenced_secrets(row.get("credentials")):
            by_secret.setdefault(name, []).append(row)
    secrets = []
    for name in sorted(by_secret, key=str.lower):
        props = ctx.secrets.current_properties(name) if ctx.secrets is not None else None
        expires = (props or {}).get("expires")
        days_left = None
        if expires:
            days_left = (datetime.fromisoformat(expires) - now).total_seconds() / 86400
        state = ("missing" if props is None else "noExpiry" if days_left is None else "expired" if days_left <= 0
                 else "expiring" if days_left <= warning_days else "ok")
        dependents = [{"servicePrincipalId": r.get("servicePrincipalId"), "displayName": r.get("displayName"),
                       "instanceKey": r.get("instanceKey"),
                       "savedVersion": ((r.get("secrets") or {}).get(name) or {}).get("version")}
                      for r in by_secret[name]]
        secrets.append({"secretName": name, "currentVersion": (props or {}).get("version"), "expires": expires,
                        "daysLeft": None if days_left is None else int(days_left // 1), "state": state,
                        "instances": dependents})
    secrets.sort(key=lambda s: (s["daysLeft"] is None, s["daysLeft"] if s["daysLeft"] is not None else 0,
                                str(s["secretName"]).lower()))
    return {"generatedAt": iso(now), "warningDays": warning_days, "secrets": secrets}


def rebuild_registry(ctx: StepContext, *, registry: Any = None) -> dict:
    """Write the registry again from Graph (our tagged service principals, their notes and ``kv-saved``
    tags) and Key Vault (each saved version's ``expires``, properties only). Rows are upserted (merged);
    a row whose service principal no longer carries our tag is removed."""
    reg = registry or fleet.get_registry()
    found = apps.find_service_principals(ctx.graph, odata.any_eq("tags", ctx.tag),
                                         select="id,displayName,applicationTemplateId,tags,notes")
    seen = set()
    for sp in found:
        sp_id = apps.object_id(sp)
        seen.add(sp_id)
        tags = [str(t) for t in sp.get("tags") or []]
        notes = read_notes(ctx, sp.get("notes")) or {}
        credentials_json = notes.get("credentials") if isinstance(notes.get("credentials"), dict) else None
        view = fleet.tags_view(ctx.tag, tags)
        saved = read_versions(ctx, tags, SAVED)
        secrets: dict[str, dict[str, Any]] = {}
        for name in fleet.referenced_secrets(credentials_json):
            version = saved.get(name)
            expires = ctx.secrets.version_expires(name, version) if ctx.secrets is not None and version else None
            secrets[name] = {"version": version, "expires": expires}
        reg.upsert(sp_id, {**fleet.instance_fields(instance_key=view["instanceKey"], display_name=sp.get("displayName"),
                                                   template_id=sp.get("applicationTemplateId"), labels=view["labels"],
                                                   credentials=credentials_json), "secrets": secrets})
    removed = [row["servicePrincipalId"] for row in reg.all() if row.get("servicePrincipalId") not in seen]
    for sp_id in removed:
        reg.delete(sp_id)
    logger.info("fleet registry rebuilt: %d instance(s), %d stale row(s) removed", len(seen), len(removed))
    return {"instances": len(seen), "removed": removed}


def failure_line(rotation_id: str, entry: dict) -> str:
    """One structured log line for an instance a rotation could not bring to the new version (no values)."""
    return event_line(events.ROTATION_FAILED, rotationId=rotation_id,
                      servicePrincipalId=entry.get("servicePrincipalId"), displayName=entry.get("displayName"),
                      outcome=entry.get("outcome"), reason=entry.get("reason"))


def completed_line(report: dict, duration_seconds: float | None = None) -> str:
    """The ``credentialRotationCompleted`` line of a finished rotation (its report; no values)."""
    return event_line(events.ROTATION_COMPLETED, rotationId=report.get("rotationId"),
                      secretName=report.get("secretName"), version=report.get("version"),
                      source=report.get("source"), dryRun=bool(report.get("dryRun")),
                      counts=report.get("counts") or {}, total=sum((report.get("counts") or {}).values()),
                      durationSeconds=duration_seconds)
