"""Steps of the application family: resolve the gallery template, find or instantiate the
application and its service principal, wait until it replicates (and label it), discard a
concurrent run's copy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from core import errors, model, odata
from core.graph import applications as apps
from core.graph import templates
from core.steps.context import _MAYBE_CREATED_STATUSES, StepContext, _wait_for
from core.steps.records import SAVED, _first_record, _is_tagged, _label, instance_notes, read_versions

logger = logging.getLogger("core.steps")



def resolve_template(ctx: StepContext, ref: model.TemplateRef) -> dict:
    """The gallery template by id or exact name; refuses templates without a provisioning connector."""
    template = templates.get_by_id(ctx.graph, ref.id) if ref.id else \
        templates.find_by_name(ctx.graph, str(ref.display_name))
    kinds = template.get("supportedProvisioningTypes")
    if kinds is not None and "sync" not in kinds:
        raise errors.NotProvisionable(
            f"application template '{template.get('displayName')}' ({template['id']}) has no provisioning "
            "connector (supportedProvisioningTypes has no 'sync')")
    kind = model.ROLE_IMPORT if str(template["id"]).lower() in ctx.settings.role_import_templates \
        else model.USER_PROVISIONING
    return {"templateId": template["id"], "displayName": template.get("displayName"), "jobKind": kind}



@dataclass
class LookupMemo:
    """What this process learnt about Graph's filters: ``combined_rejected`` is set once Graph answers
    400 to the combined look-up filter, and the process then uses two look-ups."""

    combined_rejected: bool = False


#: the process's memo (tests reset it)
LOOKUP = LookupMemo()


def _lookup(ctx: StepContext, tag: str, display_name: str, template_id: str) -> tuple[list[dict], list[dict] | None]:
    """``(tagged or named, None)`` from one request, or ``(tagged, named)`` from two.

    Why one request: it saves a Graph call per instance (the per-instance Graph request budget of core/README.md). Whether Graph accepts
    ``or`` between a lambda and plain properties without advanced query is UNCONFIRMED, so a 400
    switches this process to the two documented look-ups (logged once), and ``GRAPH_COMBINED_LOOKUP``
    turns it off. The caller sorts the combined answer into tagged and named itself.
    """
    by_tag = odata.any_eq("tags", tag)
    by_name = odata.and_(odata.eq("displayName", display_name), odata.eq("applicationTemplateId", template_id))
    if ctx.settings.graph_combined_lookup and not LOOKUP.combined_rejected:
        try:
            return apps.find_service_principals(ctx.graph, odata.or_(by_tag, odata.group(by_name))), None
        except errors.BadRequest as exc:
            LOOKUP.combined_rejected = True
            logger.warning("Graph refused the combined service principal filter (%s); using two look-ups from now on "
                           "(set GRAPH_COMBINED_LOOKUP=false to skip the attempt)", exc.code)
    tagged = apps.find_service_principals(ctx.graph, by_tag)
    if any(str(sp.get("applicationTemplateId") or "").lower() == template_id.lower() for sp in tagged):
        return tagged, []  # found by tag: the name look-up is not needed
    return tagged, apps.find_service_principals(ctx.graph, by_name)


def _find_ours(ctx: StepContext, key: str, display_name: str, template_id: str) -> dict | None:
    """Our service principal: by instance tag, else one untagged SP with the same name and template."""
    tag = model.instance_tag(ctx.tag, key)
    first, named = _lookup(ctx, tag, display_name, template_id)
    tagged = [sp for sp in first if tag.casefold() in {str(t).casefold() for t in sp.get("tags") or []}
              and str(sp.get("applicationTemplateId") or "").lower() == template_id.lower()]
    if len(tagged) > 1:
        raise errors.AmbiguousMatch(
            f"{len(tagged)} service principals carry tag '{tag}' ({display_name}); delete the extra ones",
            ids=[apps.object_id(sp) for sp in tagged])
    if tagged:
        return tagged[0]
    if named is None:  # the combined answer: the rest matched by name and template
        named = [sp for sp in first if str(sp.get("applicationTemplateId") or "").lower() == template_id.lower()]
    key_prefix = f"{ctx.tag}:key:"
    untagged = [sp for sp in named if str(sp.get("displayName", "")).casefold() == display_name.casefold()
                and not any(str(t).startswith(key_prefix) for t in sp.get("tags") or [])]
    if len(untagged) > 1:
        raise errors.AmbiguousMatch(
            f"{len(untagged)} service principals are named '{display_name}' from template {template_id} and none "
            f"carries tag '{tag}'; delete the extra apps or add the tag to the one to keep",
            ids=[apps.object_id(sp) for sp in untagged])
    return untagged[0] if untagged else None


def _application_id(ctx: StepContext, sp: dict) -> str:
    app = _wait_for(ctx, f"read application {sp.get('appId')}",
                    lambda: apps.find_application_by_app_id(ctx.graph, str(sp["appId"])))
    return apps.object_id(app)


def ensure_application(ctx: StepContext, *, batch_id: str, instance_key: str, display_name: str,
                       template_id: str, labels: dict | None = None) -> dict:
    """Find or create the instance's application + service principal; never writes anything else.

    Looks up by tag, then by name + template; instantiates only when neither finds it. After an
    instantiate answer that may hide a success (404/5xx/timeout) it looks up again - waiting out
    replication - before giving up, so a retry never creates a duplicate the first call made.

    Why no tag PATCH here: once instantiate has succeeded this step must *return* the new ids. A
    write right after instantiate is the request most likely to fail (the new service principal has
    not replicated yet: 404; or the write budget is spent: 429), and if that made the activity fail,
    its retry would look up by tag and name while the new SP is still missing from lists (lag by
    time) and instantiate a second application. :func:`wait_until_visible` applies the tags once the
    SP reads back; ``tagged`` says whether it already carries them.
    """
    found = _find_ours(ctx, instance_key, display_name, template_id)
    if found:
        logger.info("batch %s: reusing service principal %s for instance %s", batch_id, apps.object_id(found),
                    instance_key)
        return {"applicationId": _application_id(ctx, found), "appId": found.get("appId"),
                "servicePrincipalId": apps.object_id(found), "created": False,
                "tagged": _is_tagged(ctx, found, instance_key, labels)}
    try:
        pair = apps.instantiate(ctx.graph, template_id, display_name)
    except (errors.NotFound, errors.GraphTransient) as exc:
        # No status (no answer, or its body broke while read), a 2xx whose body is unreadable, or a
        # status that may hide a success: the app may exist, so look before anything is repeated.
        if exc.status is not None and exc.status not in _MAYBE_CREATED_STATUSES and not 200 <= exc.status < 300:
            raise
        failure: errors.ProvisioningError = exc
        logger.warning("batch %s: instantiate answered %s; looking for the app before any retry", batch_id, failure.code)
        found = _wait_for(ctx, f"find '{display_name}' after instantiate {failure.code}",
                          lambda: _find_ours(ctx, instance_key, display_name, template_id) or _raise_not_found(failure),
                          retry_on=(errors.NotFound,))
        return {"applicationId": _application_id(ctx, found), "appId": found.get("appId"),
                "servicePrincipalId": apps.object_id(found), "created": True,
                "tagged": _is_tagged(ctx, found, instance_key, labels)}
    app, sp = pair.get("application") or {}, pair.get("servicePrincipal") or {}
    logger.info("batch %s: instantiated %s -> service principal %s", batch_id, template_id, apps.object_id(sp))
    # createdHere: these ids came from this call's own instantiate answer (so only this run may delete them)
    return {"applicationId": apps.object_id(app), "appId": sp.get("appId") or app.get("appId"),
            "servicePrincipalId": apps.object_id(sp), "created": True, "createdHere": True, "tagged": False}


def _raise_not_found(exc: errors.ProvisioningError) -> Any:
    raise errors.NotFound(f"not found after instantiate answered {exc.code}", code="NotFound", status=404)




def wait_until_visible(ctx: StepContext, *, service_principal_id: str, application_id: str | None = None,
                       instance_key: str | None = None, labels: dict | None = None,
                       credentials: dict | None = None, sync_all: bool = False,
                       notification_email: str | None = None, display_name: str | None = None,
                       template_id: str | None = None, created: bool = False, canary: dict | None = None,
                       deletion_threshold: dict | None = None, assignments: dict | None = None) -> dict:
    """Read the service principal until it is found VISIBILITY_CONSECUTIVE_READS times in a row, then label it.

    The labels are the tags (fleet, instance key, labels) and, with ``credentials``, the notes
    (:func:`instance_notes`: Key Vault references, never values, for the health sweep's restart).
    They are written here rather than right after instantiate (see :func:`ensure_application`):
    once the SP has read back in a row a PATCH is no longer refused for lag, and the last read
    already holds the current tags and notes, so one PATCH (the complete tag list: collections are
    replaced) is sent only when something is missing - no extra request. A throttled PATCH makes
    this step, not ensure_application, wait and run again. Without ``instance_key`` (an
    orchestration started before this step labelled) nothing is written.

    **Concurrent creators.** For a service principal this run has just ``created`` (with its
    ``display_name`` and ``template_id``), the reads are the name + template look-up itself, until
    it lists the new SP in a row. Two runs that set up the same instance at the same moment (two
    requests naming it, or another tool) have each instantiated an app; both now list both, and
    both pick the same one to keep - one already carrying the instance tag, else the lowest
    ``appId``. The other run answers ``yielded`` with the kept ids and then deletes the application
    it created (:func:`discard_application`), so exactly one application remains. ``created`` must
    mean "this run's own instantiate answer gave these ids": after a lost answer the app found may
    be another run's, and is never discarded. Same cost as reading by id: the polls are needed
    anyway. (Two runs that each list only their own app would both keep it; the next run then stops
    at the ambiguity, as before.)
    """
    needed = ctx.settings.visibility_consecutive_reads
    deadline = ctx.monotonic() + ctx.settings.visibility_wait_seconds
    by_list = bool(created and display_name and template_id)
    reads = streak = 0
    while True:
        reads += 1
        try:
            if by_list:
                listed = apps.find_service_principals(
                    ctx.graph, odata.eq("displayName", str(display_name)),
                    odata.eq("applicationTemplateId", str(template_id)),
                    select="id,appId,displayName,applicationTemplateId,tags,notes")
                sp = next((item for item in listed if apps.object_id(item) == service_principal_id), None)
                if sp is None:
                    raise errors.NotFound("not listed yet", code="NotYetListed", status=404)
            else:
                sp = apps.get_service_principal(ctx.graph, service_principal_id, select="id,tags,notes")
            streak += 1
            if streak >= needed:
                if by_list:
                    kept = _kept_of(ctx, sp, listed, str(display_name), str(template_id), instance_key)
                    if kept is not sp:
                        return _yield_to(kept, application_id, service_principal_id, reads)
                notes = instance_notes(ctx, credentials, sync_all, notification_email, canary,
                                       deletion_threshold, assignments) if credentials else None
                recorded = read_versions(ctx, sp.get("tags") or [], SAVED)
                if instance_key and credentials and not recorded:  # a new instance: its first record rides along
                    recorded = _first_record(ctx, credentials) or {}
                left = _label(ctx, sp, str(instance_key), labels, notes, recorded) if instance_key else None
                # the tags now on the SP: save_secrets records a new version on top of them rather than
                # of a read right after this PATCH, which a lagging replica may answer from before it
                return {"visible": True, "reads": reads, "tagged": left is not None,
                        **({"recordedVersions": recorded, "tags": left} if instance_key and credentials else {})}
        except errors.NotFound:
            streak = 0
        if ctx.monotonic() + ctx.settings.visibility_poll_seconds > deadline:
            raise errors.GraphTransient(
                f"service principal {service_principal_id} not readable {needed} times in a row after "
                f"{ctx.settings.visibility_wait_seconds:g} s", code="NotYetVisible")
        ctx.sleep(ctx.settings.visibility_poll_seconds)


def _kept_of(ctx: StepContext, ours: dict, listed: list[dict], display_name: str, template_id: str,
             instance_key: str | None) -> dict:
    """Which of the same-named service principals created for this instance stays (ours if it is alone).

    Rivals: same name and template, and no instance tag of another instance. Kept: the one already
    tagged for this instance, else the lowest appId - a rule every concurrent run applies alike.
    """
    key_prefix = f"{ctx.tag}:key:"
    mine = model.instance_tag(ctx.tag, instance_key).casefold() if instance_key else None

    def eligible(sp: dict) -> bool:
        tags = {str(t).casefold() for t in sp.get("tags") or []}
        other_keys = {t for t in tags if t.startswith(key_prefix.casefold()) and t != mine}
        return (str(sp.get("displayName", "")).casefold() == display_name.casefold()
                and str(sp.get("applicationTemplateId") or "").lower() == template_id.lower() and not other_keys)

    contenders = [ours] + [sp for sp in listed if apps.object_id(sp) != apps.object_id(ours) and eligible(sp)]
    if len(contenders) == 1:
        return ours
    tagged = [sp for sp in contenders if mine and mine in {str(t).casefold() for t in sp.get("tags") or []}]
    return min(tagged or contenders, key=lambda sp: str(sp.get("appId") or ""))


def _yield_to(kept: dict, application_id: str | None, sp_id: str, reads: int) -> dict:
    """Say which copy stays; this run's own copy is deleted by the next step (:func:`discard_application`).

    Not deleted here: a re-run of this step (at-least-once) must reach the same answer, and it can
    only while this run's service principal is still listed.
    """
    logger.warning("service principal %s was created at the same time as %s for the same instance; %s is kept",
                   sp_id, apps.object_id(kept), apps.object_id(kept))
    return {"visible": True, "reads": reads, "tagged": False, "yielded": True,
            "kept": {"servicePrincipalId": apps.object_id(kept), "appId": kept.get("appId")},
            "discard": {"applicationId": application_id, "servicePrincipalId": sp_id}}


def discard_application(ctx: StepContext, *, application_id: str, service_principal_id: str,
                        instance_key: str | None = None) -> dict:
    """Delete the copy of an instance this run created and then yielded (:func:`wait_until_visible`).

    Refused when its service principal carries the instance's tag (then it is the copy in use, not
    a discarded one). Deleting twice is fine: the second answer is 404.

    A 404 is believed only VISIBILITY_CONSECUTIVE_READS times in a row (VISIBILITY_POLL_SECONDS
    apart): a DELETE that lands on a directory replica the new application has not reached yet
    answers 404 too, and the copy would stay. Terraform's ``consistency.WaitForDeletion`` likewise
    wants 5 consecutive 404s.
    """
    try:
        sp = apps.get_service_principal(ctx.graph, service_principal_id, select="id,tags")
    except errors.NotFound:
        sp = {}
    if instance_key and model.instance_tag(ctx.tag, instance_key).casefold() in \
            {str(t).casefold() for t in sp.get("tags") or []}:
        raise errors.GraphPermanent(f"service principal {service_principal_id} carries the instance tag; not deleting "
                                    "its application", code="InUse")
    misses = 0
    while True:
        try:
            apps.delete_application(ctx.graph, application_id)
            break
        except errors.NotFound:
            misses += 1
            if misses >= ctx.settings.visibility_consecutive_reads:
                return {"deleted": False}
            ctx.sleep(ctx.settings.visibility_poll_seconds)
    logger.info("deleted application %s (service principal %s), the copy of a concurrent run", application_id,
                service_principal_id)
    return {"deleted": True}
