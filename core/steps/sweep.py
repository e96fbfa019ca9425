"""Steps of the health-sweep family: list the instances this app manages, restart a job quarantined
for credentials that Key Vault has since replaced."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from core import errors, odata
from core import registry as fleet
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
        saved = saved_versions(ctx, notes["credentials"], tags)
        if saved:
            instance["savedVersions"] = saved
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


# -- the paged sweep's duties (orchestrators/health_sweep_page.py): Key Vault properties and the fleet
# registry, read and written per page; no Graph call here (the listing already carries the kv-saved tags)

#: a category that is no observation of the job (its status read failed): never recorded, no event
UNREADABLE = "unreadable"
#: categories one classification for change events: a job between cycles and one in a cycle are both well
_SAME_CLASS = {"running": "healthy"}


def saved_versions(ctx: StepContext, credentials: Any, tags: list[str]) -> dict[str, str | None]:
    """``{secret name: version saved (kv-saved tag) or None}`` for every Key Vault secret the credentials reference."""
    saved = {name.lower(): version for name, version in read_versions(ctx, tags, SAVED).items()}
    return {name: saved.get(name.lower()) for name in fleet.referenced_secrets(credentials)}


def page_lag(ctx: StepContext, instances: list[Any]) -> dict:
    """Which of a page's instances lag Key Vault: a referenced secret's current enabled version is not
    the one saved on the instance (issue #12's safety net for a missed Key Vault event).

    Key Vault is read once per distinct secret name of the page (List Secret Versions: properties,
    never a value; :meth:`core.secrets.SecretResolver.current_properties`), so a page of 200
    instances sharing one secret costs one read. A secret Key Vault does not hold (or holds no
    enabled version of) is no lag: there is nothing to rotate to. ``rotations``: one
    ``{secretName, version}`` per distinct lagging version, the rotations to start.
    """
    current: dict[str, str | None] = {}
    refused: dict[str, str] = {}
    lagging: list[dict[str, Any]] = []
    wanted: dict[tuple[str, str], str] = {}
    for inst in instances:
        secrets: dict[str, dict[str, Any]] = {}
        for name, saved in sorted((inst.saved_versions or {}).items()):
            key = name.lower()
            if key not in current:
                try:
                    props = ctx.secrets.current_properties(name) if ctx.secrets is not None else None
                except errors.SecretUnavailable as exc:
                    if getattr(exc, "status", 0) not in (401, 403):
                        raise  # Key Vault busy or unreachable: the activity is retried
                    refused[name] = f"Key Vault refused to list its versions (HTTP {exc.status})"
                    props = None  # one secret the app may not read does not blind the check of the others
                current[key] = str((props or {}).get("version") or "") or None
            now = current[key]
            if now and now != saved:
                secrets[name] = {"saved": saved, "current": now}
                wanted.setdefault((key, now), name)
        if secrets:
            lagging.append({"servicePrincipalId": inst.service_principal_id, "secrets": secrets})
    rotations = [{"secretName": name, "version": version} for (_, version), name in sorted(wanted.items())]
    return {"lagging": lagging, "rotations": rotations, "secretsRead": len(current),
            **({"unreadable": refused} if refused else {})}


def _classification(category: str | None) -> str | None:
    return _SAME_CLASS.get(category or "", category)


def record_sweep_results(ctx: StepContext, *, run_id: str, swept_at: str, results: list[Any],
                         registry: Any = None) -> dict:
    """Record each instance's sweep classification as the registry's ``lastSweepResult`` and say which
    changed since the instance's previous sweep (issue #13's alerts).

    One query per 14 instances to read the previous results and one entity group transaction per
    100 to write them (:meth:`core.registry.FleetRegistry.get_many` / ``upsert_many``): per page,
    not per instance. Rules:

    * the previous classification is the row's ``lastSweepResult.category``; an instance without
      one (its first sweep, or a registry rebuilt since) has none, so no change is reported;
    * ``healthy`` and ``running`` are one classification (a job between cycles and one in a cycle),
      so a job's own cycle never reads as a change; every other category is its own;
    * ``unreadable`` (the status read failed) says nothing about the job: not recorded, no change;
    * idempotent per sweep run (``runId``): a row already written by this run (a retried activity,
      a page swept again) keeps the classification from before the run (``previous``), so its
      change is reported again by the retry rather than lost, and the run's events come from the
      one result the orchestration records;
    * best effort: a registry failure returns ``recorded: false`` with the changes of the rows it did
      write (the next sweep compares with their new record, so theirs are reported now or never) and
      none of the others (the next sweep compares with the same previous classification, so theirs
      are reported then, once). Hence one ``upsert_many`` call per :data:`core.registry.TRANSACTION_MAX`
      rows: one entity group transaction, all or nothing
      (https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions).
    """
    rows: dict[str, dict[str, Any]] = {}
    change_of: dict[str, dict[str, Any]] = {}
    changes: list[dict[str, Any]] = []  # those of the rows written
    wanted = [r for r in results if r.category != UNREADABLE]
    if not wanted:
        return {"recorded": True, "changes": []}
    try:
        reg = registry or fleet.get_registry()
        before = reg.get_many([r.service_principal_id for r in wanted], select=["lastSweepResult"])
        for r in wanted:
            last = (before.get(r.service_principal_id) or {}).get("lastSweepResult")
            last = last if isinstance(last, dict) else {}
            previous = last.get("previous") if last.get("runId") == run_id else last.get("category")
            record = {"runId": run_id, "sweptAt": swept_at, "category": r.category, "reason": r.reason,
                      "cause": r.cause, "lags": r.lags, "previous": previous}
            rows[r.service_principal_id] = {"lastSweepResult": {k: v for k, v in record.items() if v is not None}}
            if previous and _classification(previous) != _classification(r.category):
                change_of[r.service_principal_id] = {"servicePrincipalId": r.service_principal_id, "from": previous,
                                                     "to": r.category}
        ids = list(rows)
        for start in range(0, len(ids), fleet.TRANSACTION_MAX):
            part = ids[start:start + fleet.TRANSACTION_MAX]
            reg.upsert_many({sp: rows[sp] for sp in part})
            changes += [change_of[sp] for sp in part if sp in change_of]
    except Exception as exc:  # noqa: BLE001 - any storage failure; its text may quote a request, so only the type
        logger.warning("fleet registry: sweep results of %d instance(s) not recorded (%s)", len(wanted),
                       type(exc).__name__)
        return {"recorded": False, "changes": changes, "error": f"fleet registry not written ({type(exc).__name__})"}
    return {"recorded": True, "changes": changes}


def credential_expiry(ctx: StepContext, *, now: datetime, warning_days: int, registry: Any = None) -> dict:
    """The referenced Key Vault secrets expiring within ``warning_days`` of ``now`` or expired (the
    expiry calendar of ``GET /api/credentials``, :func:`core.steps.rotation.expiry_calendar`:
    registry rows and Key Vault properties, never a value), each with its dependents as a count."""
    from core.steps.rotation import expiry_calendar

    calendar = expiry_calendar(ctx, now=now, warning_days=warning_days, registry=registry)
    flagged = [{"secretName": s["secretName"], "currentVersion": s["currentVersion"], "expires": s["expires"],
                "daysLeft": s["daysLeft"], "state": s["state"], "instances": len(s["instances"])}
               for s in calendar["secrets"] if s["state"] in ("expiring", "expired")]
    return {"checked": len(calendar["secrets"]), "secrets": flagged}
