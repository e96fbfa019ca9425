"""Steps of the health-sweep family: list the instances this app manages, restart a job quarantined
for credentials that Key Vault has since replaced."""

from __future__ import annotations

import logging
from typing import Any

from core import errors, odata
from core import status as job_status
from core.graph import applications as apps
from core.graph import synchronization as sync
from core.steps.context import StepContext
from core.steps.credentials import _put_secret_set, _resolve, _validate
from core.steps.jobs import _job_id
from core.steps.records import (RESTARTED, SAVED, _describe, read_notes, read_versions, record_saved_versions,
                                secret_versions)
from core.times import iso

logger = logging.getLogger("core.steps")



#: the properties the sweep lists (its check needs no more)
SWEEP_SELECT = "id,displayName,applicationTemplateId,tags,notes"
#: the largest page the sweep lists: the ``$top`` the app already lists service principals with
MAX_PAGE_SIZE = 999


def list_managed_instances(ctx: StepContext) -> dict:
    """Every service principal carrying the fleet tag: instance key, labels and credential references.

    ``credentials`` (with ``syncAll`` and ``notificationEmail``) come from the SP's notes
    (:func:`instance_notes`): Key Vault secret names and non-secret literals, never values; absent
    when the notes hold none (an instance set up before they were stored, or someone else's notes).
    Kept for sweeps started before the paged sweep (their histories call it without a cursor).
    """
    found = apps.find_service_principals(ctx.graph, odata.any_eq("tags", ctx.tag), select=SWEEP_SELECT)
    return {"instances": [describe_instance(ctx, sp) for sp in sorted(found, key=lambda s: str(s.get("displayName")))]}


def list_managed_page(ctx: StepContext, cursor: str | None = None, page_size: int = 200) -> dict:
    """One page of the managed fleet: ``{"instances": [...], "nextCursor": link or None}`` (issue #15).

    Why pages: listing the fleet whole in one activity made the listing one history event (3.5 MB
    at 10,000 instances) that every later episode replayed. Here one call lists one page (``$top``
    = ``HEALTH_SWEEP_PAGE_SIZE``) and hands back Graph's ``@odata.nextLink`` as the cursor of the
    next page, so each page is checked by its own sub-orchestration and no history holds more than
    one page. Graph pages collections this way (https://learn.microsoft.com/graph/paging: the next
    page is read by sending the URL value of ``@odata.nextLink`` as it is; the ``$skiptoken``
    inside it is not to be extracted or built). The link is followed only on the Graph origin
    (``GraphClient``), so a cursor carried in an orchestration's input cannot send the token elsewhere.
    """
    if cursor is not None and not (isinstance(cursor, str) and cursor.startswith("https://")):
        raise errors.InvalidRequest([errors.Problem("cursor", "must be the @odata.nextLink of the previous page")])
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise errors.InvalidRequest([errors.Problem("pageSize", f"must be an integer from 1 to {MAX_PAGE_SIZE}")])
    if cursor:
        body = ctx.graph.get(cursor)
    else:
        body = ctx.graph.get("/servicePrincipals", {"$filter": odata.any_eq("tags", ctx.tag), "$select": SWEEP_SELECT,
                                                   "$top": str(page_size)})
    instances = [describe_instance(ctx, sp) for sp in body.get("value") or []]
    return {"instances": instances, "nextCursor": body.get("@odata.nextLink") or None}


def describe_instance(ctx: StepContext, sp: dict) -> dict[str, Any]:
    """What the sweep needs of one listed service principal: ids, key, labels and (from the notes)
    the Key Vault references of its credentials (names, never values)."""
    key_prefix, label_prefix = f"{ctx.tag}:key:", f"{ctx.tag}:label:"
    tags = [str(t) for t in sp.get("tags") or []]
    labels = dict(t[len(label_prefix):].split("=", 1) for t in tags if t.startswith(label_prefix) and "=" in t)
    key = next((t[len(key_prefix):] for t in tags if t.startswith(key_prefix)), None)
    instance: dict[str, Any] = {"servicePrincipalId": apps.object_id(sp), "displayName": sp.get("displayName"),
                                "applicationTemplateId": sp.get("applicationTemplateId"), "instanceKey": key,
                                "labels": labels}
    notes = read_notes(ctx, sp.get("notes"))
    if notes and isinstance(notes.get("credentials"), dict):
        instance["credentials"] = notes["credentials"]
        instance["syncAll"] = bool(notes.get("syncAll"))
        if notes.get("notificationEmail"):
            instance["notificationEmail"] = str(notes["notificationEmail"])
        if isinstance(notes.get("deletionThreshold"), dict):
            instance["deletionThreshold"] = notes["deletionThreshold"]
    return instance


def restart_quarantined_job(ctx: StepContext, *, service_principal_id: str, job_id: str | None,
                            credentials: dict | None = None, sync_all: bool = False,
                            notification_email: str | None = None, deletion_threshold: dict | None = None) -> dict:
    """Restart a job quarantined for its credentials, once per new Key Vault version that fixes them.

    The operator's story: the token expired, the job went into quarantine, they put a new version
    of the secret into Key Vault. Every condition must hold, checked in this order (the cheap ones
    first; each refusal says why, and names secrets and versions, never values):

    1. The job is quarantined and the cause (:func:`core.status.quarantine_cause`, from the
       quarantine's ``reason`` *and* ``error.code``) is the credentials. A SCIM-compliance,
       escrow, deletes or unknown quarantine needs an operator: reported, never restarted.
    2. The setting is on and the service principal's notes hold the Key Vault references.
    3. Key Vault's current version of some referenced secret is not the one recorded as saved
       (:data:`SAVED` tag): while it still is, the saved credentials are the current ones and a
       restart cannot help.
    4. That version is not the one the sweep already restarted with (:data:`RESTARTED` tag): at
       most one restart per version, so a job that quarantines again with it is left alone.
    5. The saved credentials fail validateCredentials (``useSavedCredentials``) - they are what
       the job uses, so if they pass the quarantine is not theirs - and the current Key Vault
       values pass it.

    Then the complete secret set is PUT, the new versions are recorded as saved and restarted-with
    (before the restart: a crash after it cannot restart twice; a crash before it leaves saved
    credentials that validate, and Graph's own retry lifts the quarantine), and the job restarted
    (scope ``QuarantineState``).
    """
    sp_id = service_principal_id
    job_id = _job_id(ctx, sp_id, job_id)
    current = job_status.classify(sync.get_job(ctx.graph, sp_id, job_id))

    def refused(reason: str, **extra: Any) -> dict:
        return {"jobId": job_id, "restarted": False, "reason": reason, **extra}

    if current.state is not job_status.JobState.QUARANTINED:
        return refused(f"not quarantined ({current.state.value})")
    quarantine = current.quarantine or {}
    cause = quarantine.get("cause") or job_status.CAUSE_OTHER
    if cause != job_status.CAUSE_CREDENTIALS:
        code = (quarantine.get("error") or {}).get("code")
        return refused(f"quarantined for {quarantine.get('reason')}{f' ({code})' if code else ''}, cause {cause}: "
                       "needs an operator", cause=cause)
    if not ctx.settings.health_sweep_restart_credential_quarantine:
        return refused("restarting credential quarantine is switched off", cause=cause)
    if not credentials:
        return refused("no Key Vault references stored on the service principal (notes): re-submit the instance "
                       "or restart the job by hand", cause=cause)
    sp = apps.get_service_principal(ctx.graph, sp_id, select="id,tags")
    tags = sp.get("tags") or []
    saved, restarted = read_versions(ctx, tags, SAVED), read_versions(ctx, tags, RESTARTED)
    resolved = _resolve(ctx, credentials)
    now = secret_versions(credentials, resolved)
    if not now:
        return refused("the credentials reference no Key Vault secret: nothing can have been rotated", cause=cause)
    changed = {name: version for name, version in now.items() if saved.get(name) != version}
    if not changed:
        return refused(f"Key Vault still holds the saved version ({_describe(now)}): put a new version of the "
                       "secret into Key Vault", cause=cause, secretVersions=now)
    if all(restarted.get(name) == version for name, version in changed.items()):
        return refused(f"already restarted once with {_describe(changed)}; not again for the same version",
                       cause=cause, secretVersions=now)
    try:
        _validate(ctx, sp_id, job_id, {}, use_saved=True)
    except errors.InvalidCredentials:
        pass  # the saved credentials fail: the quarantine is theirs
    else:
        return refused("the saved credentials validate: the quarantine is not caused by them (Graph retries the "
                       "job by itself)", cause=cause, secretVersions=now)
    try:
        _validate(ctx, sp_id, job_id, resolved.values)
    except errors.InvalidCredentials as exc:
        return refused(f"Key Vault secret still invalid ({_describe(changed)}): {exc.message}", cause=cause,
                       secretVersions=now)
    _put_secret_set(ctx, sp_id, resolved, sync_all, notification_email, deletion_threshold)
    record_saved_versions(ctx, sp_id, now, restarted={**restarted, **now})
    sync.restart_job(ctx.graph, sp_id, job_id, "QuarantineState")
    logger.info("restarted quarantined job %s on %s with Key Vault versions %s", job_id, sp_id, _describe(now))
    return {"jobId": job_id, "restarted": True, "cause": cause,
            "reason": f"Key Vault secret validates ({_describe(changed)}); saved and restarted",
            "restartedAt": iso(ctx.now()), "secretVersions": now}
