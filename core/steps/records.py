"""Our records on a service principal: its tags (correlation, instance, labels, and the Key Vault
versions saved and restarted with) and its ``notes`` (the credential references for the health sweep)."""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable

from core import errors, model
from core.graph import applications as apps
from core.steps.context import StepContext, _wait_for

logger = logging.getLogger("core.steps")


def _desired_tags(ctx: StepContext, existing: Iterable[str], key: str, labels: dict | None) -> list[str]:
    label_prefix = f"{ctx.tag}:label:"
    keep = [t for t in existing if not (labels is not None and t.startswith(label_prefix))]
    wanted = keep + [ctx.tag, model.instance_tag(ctx.tag, key)]
    if labels:
        wanted += [model.label_tag(ctx.tag, k, v) for k, v in sorted(labels.items())]
    return list(dict.fromkeys(wanted))  # de-duplicated, order kept


def _is_tagged(ctx: StepContext, sp: dict, key: str, labels: dict | None) -> bool:
    """True when the service principal already carries every tag it should (order does not matter)."""
    current = [str(t) for t in sp.get("tags") or []]
    return set(_desired_tags(ctx, current, key, labels)) == set(current)



#: Graph's limit for ``servicePrincipal.notes`` (characters).
NOTES_MAX_CHARS = 1024


def instance_notes(ctx: StepContext, credentials: dict, sync_all: bool = False,
                   notification_email: str | None = None, canary: dict | None = None,
                   deletion_threshold: dict | None = None, assignments: dict | None = None) -> dict:
    """What the service principal's ``notes`` hold for the health sweep: references, never values.

    ``{"managedBy": <correlation tag>, "credentials": {"SecretToken": {"keyVaultSecret": "name"},
    "BaseAddress": "https://..."}, "syncAll": false, "notificationEmail"?: "..."}`` - the Key Vault
    secret names and the non-secret literals (the only literals the request model accepts), plus
    what the full secret set needs besides them, so the sweep can read the *current* Key Vault
    versions, validate them and PUT the complete set without the original request. ``canary``
    (the request's ``{"objectId", "objectType": "user"|"group"}``) is kept under ``"canary"``: the
    subject a credential rotation provisions on demand after saving (:func:`notes_canary`).
    ``"deletionThreshold"`` (the request's, when it sets one) rides along for the same reason: a
    rotation's PUT of the whole set must save the instance's threshold, not the default.
    ``"assignments"`` (the request's ``{"users", "groups", "appRole"?}``, as named) is what drift compares the
    application's assignments with; it is the first thing left out when the notes would exceed
    :data:`NOTES_MAX_CHARS` (:func:`_fitting_notes`).
    """
    refs = {key: (value.to_dict() if isinstance(value, model.SecretRef) else str(value))
            for key, value in sorted(credentials.items())}
    notes: dict[str, Any] = {"managedBy": ctx.tag, "credentials": refs, "syncAll": bool(sync_all)}
    if notification_email:
        notes["notificationEmail"] = notification_email
    if canary:
        notes["canary"] = {"objectId": str(canary["objectId"]), "objectType": str(canary["objectType"])}
    if deletion_threshold is not None:
        notes["deletionThreshold"] = dict(deletion_threshold)
    wanted: dict[str, Any] = {kind: [str(r) for r in (assignments or {}).get(kind) or []] for kind in ("users", "groups")}
    if wanted["users"] or wanted["groups"]:
        if (assignments or {}).get("appRole"):  # the role they get (else the app's default role)
            wanted["appRole"] = str((assignments or {})["appRole"])
        notes["assignments"] = wanted
    return notes


def _fitting_notes(notes: dict, sp_id: str) -> dict:
    """``notes`` without ``assignments`` when with them they exceed :data:`NOTES_MAX_CHARS` (the credential
    references matter more: the sweep and rotations need them; drift then says the assignments are not
    recorded)."""
    if "assignments" in notes and len(_dump_notes(notes)) > NOTES_MAX_CHARS:
        logger.warning("service principal %s: the request's assignments do not fit in its notes; drift will not "
                       "compare them", sp_id)
        return {k: v for k, v in notes.items() if k != "assignments"}
    return notes


def notes_canary(notes: dict | None) -> dict | None:
    """The instance's canary from its notes as a provisionOnDemand subject ``{"objectId", "objectTypeName":
    "User"|"Group"}`` (None when absent or malformed)."""
    canary = (notes or {}).get("canary")
    if not isinstance(canary, dict) or str(canary.get("objectType")).lower() not in model.CANARY_OBJECT_TYPES:
        return None
    object_id = canary.get("objectId")
    if not isinstance(object_id, str) or not model._RE["guid"].fullmatch(object_id):
        return None
    return {"objectId": object_id, "objectTypeName": str(canary["objectType"]).capitalize()}


def _dump_notes(notes: dict) -> str:
    return json.dumps(notes, separators=(",", ":"), sort_keys=True)


def read_notes(ctx: StepContext, text: Any) -> dict | None:
    """Our notes from a service principal's ``notes`` (None when empty, not JSON, or someone else's)."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        notes = json.loads(text)
    except ValueError:
        return None
    return notes if isinstance(notes, dict) and notes.get("managedBy") == ctx.tag else None


def _label(ctx: StepContext, sp: dict, key: str, labels: dict | None, notes: dict | None,
           saved: dict[str, str] | None = None) -> list[str]:
    """One PATCH with the complete tag list (and notes) when something is missing; the tags it left.

    ``saved``: the Key Vault versions to record (:data:`SAVED` tags), e.g. a new instance's first record.

    Notes that are not ours (an operator's free text on an adopted app) are left alone: the sweep
    then finds no references and reports instead of restarting.
    """
    sp_id = apps.object_id(sp)
    current = [str(t) for t in sp.get("tags") or []]
    wanted = _desired_tags(ctx, current, key, labels)
    if saved:
        wanted = _with_versions(ctx, wanted, SAVED, saved)
    body: dict[str, Any] = {}
    if set(wanted) != set(current):
        body["tags"] = wanted
    if notes is not None:
        notes = _fitting_notes(notes, sp_id)
    if notes is not None and read_notes(ctx, sp.get("notes")) != notes:
        text = _dump_notes(notes)
        if sp.get("notes") and read_notes(ctx, sp.get("notes")) is None:
            logger.warning("service principal %s has notes that are not ours; credential references not stored "
                           "(the health sweep will report, not restart, its credential quarantine)", sp_id)
        elif len(text) > NOTES_MAX_CHARS:
            logger.warning("credential references of %s exceed the %d characters of notes; not stored "
                           "(the health sweep will report, not restart, its credential quarantine)", sp_id,
                           NOTES_MAX_CHARS)
        else:
            body["notes"] = text
    if body:
        _wait_for(ctx, f"label service principal {sp_id}", lambda: apps.update_service_principal(ctx.graph, sp_id, body))
        logger.info("labelled service principal %s for instance %s (%s)", sp_id, key, ", ".join(sorted(body)))
    return wanted if "tags" in body else current




#: Tag kinds: ``<tag>:kv-saved:<secret name>=<version>`` is the Key Vault version of each referenced
#: secret that Graph holds; ``<tag>:kv-restarted:<secret name>=<version>`` the version the health
#: sweep last restarted a quarantined job with (so it restarts at most once per version).
SAVED, RESTARTED = "kv-saved", "kv-restarted"
#: Longest tag written. Graph documents no per-tag limit for servicePrincipal.tags (only the
#: object's size, Directory_ResourceSizeExceeded); Key Vault names are at most 127 characters and
#: versions 32, so a record tag is far shorter unless the correlation tag itself is very long.
TAG_MAX_CHARS = 256


def secret_versions(credentials: dict, resolved: Any) -> dict[str, str]:
    """``{Key Vault secret name: version}`` of the references in ``credentials`` (names and ids, never values)."""
    return {ref.key_vault_secret: str(resolved.versions[key]) for key, ref in sorted(credentials.items())
            if isinstance(ref, model.SecretRef) and resolved.versions.get(key)}


def read_versions(ctx: StepContext, tags: Iterable[Any], kind: str) -> dict[str, str]:
    """``{secret name: version}`` recorded in ``tags`` under ``kind`` (:data:`SAVED` or :data:`RESTARTED`)."""
    prefix = f"{ctx.tag}:{kind}:"
    found: dict[str, str] = {}
    for tag in tags:
        text = str(tag)
        if text.startswith(prefix) and "=" in text[len(prefix):]:
            name, version = text[len(prefix):].rsplit("=", 1)
            found[name] = version
    return found


def _with_versions(ctx: StepContext, tags: Iterable[Any], kind: str, versions: dict[str, str]) -> list[str]:
    """``tags`` with the ``kind`` record replaced by ``versions`` (a tag too long to write is left out, logged)."""
    prefix = f"{ctx.tag}:{kind}:"
    kept = [str(t) for t in tags if not str(t).startswith(prefix)]
    for name, version in sorted(versions.items()):
        tag = f"{prefix}{name}={version}"
        if len(tag) > TAG_MAX_CHARS:
            logger.warning("not recording Key Vault secret %s: the tag would exceed %d characters", name, TAG_MAX_CHARS)
            continue
        kept.append(tag)
    return list(dict.fromkeys(kept))


def record_saved_versions(ctx: StepContext, sp_id: str, versions: dict[str, str],
                          restarted: dict[str, str] | None = None, current_tags: list[str] | None = None) -> None:
    """Write the saved (and, from a restart, the restarted-with) Key Vault versions as tags: one read, one PATCH.

    Why tags on our service principal: the record must outlive the task hub (a lost or reset hub
    must not make the sweep restart again), and it belongs to the instance like its other
    ``<correlation tag>:...`` tags; the notes may belong to an operator. Nothing is written when
    the record already says so.

    ``current_tags`` (the tags this run just wrote) replace the read: the PATCH sends the complete
    list, and a read right after a write may come from a replica that has not seen it. Whatever
    the list, nothing is written unless it carries the correlation tag: a service principal that
    is not ours (or that a lagging replica shows from before our labels) is never rewritten.
    """
    if current_tags is None:
        sp = _wait_for(ctx, f"read {sp_id}", lambda: apps.get_service_principal(ctx.graph, sp_id, select="id,tags"))
        current = [str(t) for t in sp.get("tags") or []]
    else:
        current = [str(t) for t in current_tags]
    if ctx.tag not in current:
        logger.warning("not recording Key Vault versions on %s: it does not show the tag %s", sp_id, ctx.tag)
        return
    wanted = _with_versions(ctx, current, SAVED, versions)
    if restarted is not None:
        wanted = _with_versions(ctx, wanted, RESTARTED, restarted)
    if wanted != current:
        _wait_for(ctx, f"record Key Vault versions on {sp_id}",
                  lambda: apps.update_service_principal(ctx.graph, sp_id, {"tags": wanted}))
        logger.info("recorded Key Vault versions on %s: saved %s%s", sp_id, _describe(versions),
                    f", restarted with {_describe(restarted)}" if restarted is not None else "")


def _describe(versions: dict[str, str] | None) -> str:
    return ", ".join(f"{name}@{version}" for name, version in sorted((versions or {}).items())) or "-"


def _first_record(ctx: StepContext, credentials: dict | None) -> dict[str, str] | None:
    """The current Key Vault versions of ``credentials``' references, for the first labelling PATCH.

    Read here (values stay in this activity) so a new instance's record costs no request of its
    own: it rides on :func:`wait_until_visible`'s one PATCH, and :func:`save_secrets` corrects it
    only when it saved another version. A Key Vault failure leaves the record to save_secrets.
    """
    if not credentials or ctx.secrets is None or not any(isinstance(v, model.SecretRef) for v in credentials.values()):
        return None
    try:
        return secret_versions(credentials, ctx.secrets.resolve(credentials))
    except (errors.SecretError, errors.SecretUnavailable) as exc:
        logger.info("Key Vault versions not recorded yet (%s); save_secrets records them", exc.code)
        return None
