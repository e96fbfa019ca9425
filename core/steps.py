"""Idempotent provisioning steps; each is the body of exactly one activity.

Why every step can run twice: Durable runs an activity at least once, so each step looks before it
writes (find the app before ``instantiate``, list jobs before creating one, read the job before
starting it) and a second run converges on the same objects. Replication lag is waited out inside
the step, bounded by ``VISIBILITY_WAIT_SECONDS``; beyond that the step raises a transient error and
the orchestrator retries it (the step then finds whatever the first run created).

Each step takes a :class:`StepContext` (Graph client, settings, Key Vault resolver, clock) and
returns a small JSON-ready dict; secret values never leave a step.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, TypeVar

from core import errors, model, odata, status as job_status
from core.graph import applications as apps
from core.graph import assignments as assign
from core.graph import provisioning_logs as logs
from core.graph import synchronization as sync
from core.graph import templates
from core.graph.transport import GraphClient
from core.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Graph answers that right after a create usually mean "not replicated yet" (Terraform retries 403/409).
_LAG_ERRORS = (errors.NotFound, errors.PermissionDenied, errors.Conflict)
#: instantiate answers after which the app may exist anyway (terraform-provider-azuread #1406, #936).
_MAYBE_CREATED_STATUSES = frozenset({404, 500, 502, 503, 504})
#: Entra's 400 message for an app role assignment that exists already (lower case).
_DUPLICATE_ASSIGNMENT = "already exists on the object"
#: ``state`` reported by get_job_status for a service principal without a synchronization job.
MISSING_JOB = "MissingJob"


@dataclass
class StepContext:
    """What a step needs: Graph, settings, Key Vault, and injectable time (tests observe waits)."""

    graph: GraphClient
    settings: Settings
    secrets: Any = None  # core.secrets.SecretResolver
    pacer: Any = None  # core.graph.provisioning_logs.Pacer
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))

    @property
    def tag(self) -> str:
        return self.settings.provisioning_correlation_tag


def default_context() -> StepContext:
    """The process-wide context (clients built once per process by :mod:`core.clients`)."""
    from core import clients

    settings = clients.get_settings()
    return StepContext(graph=clients.get_graph(), settings=settings, secrets=clients.get_secret_resolver(),
                       pacer=clients.get_log_pacer())


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _wait_for(ctx: StepContext, what: str, call: Callable[[], T],
              retry_on: tuple[type[errors.ProvisioningError], ...] = _LAG_ERRORS) -> T:
    """Call until it stops failing with a replication-lag error, bounded by VISIBILITY_WAIT_SECONDS.

    After the bound: 403 stays a (permanent) PermissionDenied - a missing permission looks the same
    as lag, and an operator must look; 404/409 become a transient error so the orchestrator retries.
    A 401 is never waited out: it is not a replication answer (Terraform retries 403/404/409 only)
    but the synchronization API's refusal of a missing permission (401 ``UnknownError``) or a
    refused token, so it fails the step at once.
    """
    deadline = ctx.monotonic() + ctx.settings.visibility_wait_seconds
    while True:
        try:
            return call()
        except retry_on as caught:
            if isinstance(caught, errors.PermissionDenied) and (caught.status == 401 or caught.token_refused):
                raise
            exc = caught if isinstance(caught, errors.ProvisioningError) else errors.ProvisioningError(str(caught))
            if ctx.monotonic() + ctx.settings.visibility_poll_seconds > deadline:
                if isinstance(exc, errors.PermissionDenied):
                    raise
                raise errors.GraphTransient(
                    f"{what}: still {exc.code} after {ctx.settings.visibility_wait_seconds:g} s (replication lag?)",
                    code="NotYetVisible", status=exc.status, request_id=exc.request_id) from None
            logger.info("%s: %s, waiting %.1f s for replication", what, exc.code, ctx.settings.visibility_poll_seconds)
            ctx.sleep(ctx.settings.visibility_poll_seconds)


# -- 1. application template ---------------------------------------------------------------------

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


# -- 2. application and service principal ---------------------------------------------------------

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


#: Set once Graph answers 400 to the combined look-up filter; the process then uses two look-ups.
_combined_lookup_rejected = False


def _lookup(ctx: StepContext, tag: str, display_name: str, template_id: str) -> tuple[list[dict], list[dict] | None]:
    """``(tagged or named, None)`` from one request, or ``(tagged, named)`` from two.

    Why one request: it saves a Graph call per instance (issue #3 budget). Whether Graph accepts
    ``or`` between a lambda and plain properties without advanced query is UNCONFIRMED, so a 400
    switches this process to the two documented look-ups (logged once), and ``GRAPH_COMBINED_LOOKUP``
    turns it off. The caller sorts the combined answer into tagged and named itself.
    """
    global _combined_lookup_rejected
    by_tag = odata.any_eq("tags", tag)
    by_name = odata.and_(odata.eq("displayName", display_name), odata.eq("applicationTemplateId", template_id))
    if ctx.settings.graph_combined_lookup and not _combined_lookup_rejected:
        try:
            return apps.find_service_principals(ctx.graph, odata.or_(by_tag, odata.group(by_name))), None
        except errors.BadRequest as exc:
            _combined_lookup_rejected = True
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


def _raise_job_not_found(exc: errors.ProvisioningError) -> Any:
    raise errors.NotFound(f"no job listed after create answered {exc.code}", code="JobNotFound", status=404)


def _raise_not_found(exc: errors.ProvisioningError) -> Any:
    raise errors.NotFound(f"not found after instantiate answered {exc.code}", code="NotFound", status=404)


# -- 3. visibility ----------------------------------------------------------------------------------

def wait_until_visible(ctx: StepContext, *, service_principal_id: str, application_id: str | None = None,
                       instance_key: str | None = None, labels: dict | None = None,
                       credentials: dict | None = None, sync_all: bool = False,
                       notification_email: str | None = None, display_name: str | None = None,
                       template_id: str | None = None, created: bool = False) -> dict:
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
                notes = instance_notes(ctx, credentials, sync_all, notification_email) if credentials else None
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


#: Graph's limit for ``servicePrincipal.notes`` (characters).
NOTES_MAX_CHARS = 1024


def instance_notes(ctx: StepContext, credentials: dict, sync_all: bool = False,
                   notification_email: str | None = None) -> dict:
    """What the service principal's ``notes`` hold for the health sweep: references, never values.

    ``{"managedBy": <correlation tag>, "credentials": {"SecretToken": {"keyVaultSecret": "name"},
    "BaseAddress": "https://..."}, "syncAll": false, "notificationEmail"?: "..."}`` - the Key Vault
    secret names and the non-secret literals (the only literals the request model accepts), plus
    what the full secret set needs besides them, so the sweep can read the *current* Key Vault
    versions, validate them and PUT the complete set without the original request.
    """
    refs = {key: (value.to_dict() if isinstance(value, model.SecretRef) else str(value))
            for key, value in sorted(credentials.items())}
    notes: dict[str, Any] = {"managedBy": ctx.tag, "credentials": refs, "syncAll": bool(sync_all)}
    if notification_email:
        notes["notificationEmail"] = notification_email
    return notes


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


# -- 4. synchronization job ----------------------------------------------------------------------------

def _pick_template(sp_id: str, found: list[dict]) -> str:
    if not found:
        raise errors.NotProvisionable(f"service principal {sp_id} offers no synchronization template")
    defaults = [t for t in found if t.get("default")]
    if len(defaults) == 1:
        return str(defaults[0]["id"])
    if len(found) == 1:
        return str(found[0]["id"])
    raise errors.AmbiguousMatch(
        f"service principal {sp_id} offers {len(found)} synchronization templates "
        f"({', '.join(sorted(str(t['id']) for t in found))}); set synchronizationTemplateId",
        ids=[str(t["id"]) for t in found])


def _create_job(ctx: StepContext, sp_id: str, template_id: str, lag: tuple[type[errors.ProvisioningError], ...]) -> dict:
    return _wait_for(ctx, f"create job on {sp_id}", lambda: sync.create_job(ctx.graph, sp_id, template_id),
                     retry_on=lag)


def _default_template(ctx: StepContext, sp_id: str, application_template_id: str | None) -> str:
    """The template to use when the request names none: picked from the (cached) template list."""
    return _pick_template(sp_id, _wait_for(
        ctx, f"list templates of {sp_id}",
        lambda: sync.list_templates_cached(ctx.graph, sp_id, application_template_id)))


def _job_of(jobs: Iterable[dict], template_id: str) -> dict | None:
    """The first of ``jobs`` that runs ``template_id``, if any."""
    return next((job for job in jobs if str(job.get("templateId")) == template_id), None)


def ensure_job(ctx: StepContext, *, service_principal_id: str, synchronization_template_id: str | None = None,
               application_template_id: str | None = None) -> dict:
    """Reuse the job of the wanted synchronization template, else create it (jobs are listed first).

    The wanted template: the request's, else the one existing job's, else the app's default one
    from its template list - cached per process by ``application_template_id``
    (:func:`core.graph.synchronization.list_templates_cached`). A cached id that create refuses
    (400/404) is dropped and the list is read once more for this service principal.
    """
    sp_id = service_principal_id
    jobs = sorted(_wait_for(ctx, f"list jobs of {sp_id}", lambda: sync.list_jobs(ctx.graph, sp_id)),
                  key=lambda j: str(j.get("id")))
    wanted = synchronization_template_id
    if not wanted and len(jobs) == 1:
        wanted = str(jobs[0].get("templateId"))
    from_cache = False
    if not wanted:
        from_cache = sync.is_template_cached(ctx.graph, application_template_id)
        wanted = _default_template(ctx, sp_id, application_template_id)
    existing = _job_of(jobs, wanted)
    if existing is not None:
        return {"jobId": existing["id"], "templateId": wanted, "created": False}
    try:
        if not from_cache:
            job = _create_job(ctx, sp_id, wanted, (errors.NotFound, errors.PermissionDenied))
        else:
            try:
                # The jobs list answered, so a 404 here is the template id, not replication lag.
                job = _create_job(ctx, sp_id, wanted, (errors.PermissionDenied,))
            except (errors.BadRequest, errors.NotFound) as refused:
                logger.warning("cached synchronization template %s refused on %s (%s); listing templates again",
                               wanted, sp_id, refused.code)
                sync.forget_templates(ctx.graph, application_template_id)
                wanted = _default_template(ctx, sp_id, application_template_id)
                existing = _job_of(jobs, wanted)
                if existing is not None:
                    return {"jobId": existing["id"], "templateId": wanted, "created": False}
                job = _create_job(ctx, sp_id, wanted, (errors.NotFound, errors.PermissionDenied))
    except (errors.Conflict, errors.GraphTransient) as unclear:
        if unclear.code == "NotYetVisible":
            raise  # every create answered "not replicated yet": no job was made, nothing to look for
        # The create may have happened (409, a 5xx we did not repeat, a lost answer): look before
        # failing, and give a new job the time to show in the list (as ensure_application does for
        # apps) - the retry would otherwise create a second job while the first is still unlisted.
        failure: errors.ProvisioningError = unclear
        logger.warning("creating a job on %s answered %s; looking for it before any retry", sp_id, failure.code)
        again = _wait_for(ctx, f"find the job created on {sp_id}",
                          lambda: _job_of(sync.list_jobs(ctx.graph, sp_id), wanted) or _raise_job_not_found(failure),
                          retry_on=(errors.NotFound,))
        return {"jobId": again["id"], "templateId": wanted, "created": True}
    logger.info("created job %s (template %s) on %s", job.get("id"), wanted, sp_id)
    return {"jobId": job["id"], "templateId": wanted, "created": True}


# -- 5. credentials and secrets ------------------------------------------------------------------------

def _resolve(ctx: StepContext, credentials: dict) -> Any:
    if ctx.secrets is None:
        raise errors.ConfigurationError([errors.Problem("KEY_VAULT_URL", "no Key Vault resolver configured")])
    return ctx.secrets.resolve(credentials)


def _validate(ctx: StepContext, sp_id: str, job_id: str | None, values: dict[str, str], template_id: str | None = None,
              use_saved: bool = False) -> None:
    try:
        _wait_for(ctx, f"validate credentials on {sp_id}",
                  lambda: sync.validate_credentials(ctx.graph, sp_id, job_id, values, template_id, use_saved))
    except (errors.BadRequest, errors.GraphPermanent) as exc:
        if isinstance(exc, (errors.PermissionDenied, errors.NotFound, errors.Conflict)):
            raise
        raise errors.InvalidCredentials(
            f"the target app refused the credentials: {exc.message}", code=exc.code, status=exc.status,
            request_id=exc.request_id) from None


def validate_credentials(ctx: StepContext, *, service_principal_id: str, job_id: str, credentials: dict) -> dict:
    """Test the credentials against the target app; invalid ones are a permanent error with Graph's reason."""
    resolved = _resolve(ctx, credentials)
    _validate(ctx, service_principal_id, job_id, resolved.values)
    return {"secretVersions": dict(resolved.versions)}


def notification_settings(email: str | None) -> str:
    """The ``SyncNotificationSettings`` JSON string (quarantine emails; the portal's delete threshold)."""
    return json.dumps({"Enabled": bool(email), "Recipients": email or "", "DeleteThresholdEnabled": True,
                       "DeleteThresholdValue": 500}, separators=(",", ":"))


def save_secrets(ctx: StepContext, *, service_principal_id: str, credentials: dict,
                 notification_email: str | None = None, sync_all: bool = False,
                 recorded_versions: dict | None = None, current_tags: list[str] | None = None) -> dict:
    """PUT the complete secret set (credentials + SyncAll + notification settings) until Graph stores exactly it.

    Always the full set, and a key the request no longer has is cleared explicitly
    (:func:`_put_secret_set`): Graph may merge a PUT into the saved set rather than replace it.
    Then the Key Vault versions just saved are recorded on the service principal
    (:func:`record_saved_versions`) unless ``recorded_versions`` - what :func:`wait_until_visible`
    recorded for this run - already says so (the common case: no request). ``current_tags``: the
    tags wait_until_visible left on the service principal, the base of that record (a read right
    after its PATCH may come from a replica that has not seen it, and PATCHing that list back would
    drop the instance tag and labels).
    """
    resolved = _resolve(ctx, credentials)
    saved = _put_secret_set(ctx, service_principal_id, resolved, sync_all, notification_email)
    versions = secret_versions(credentials, resolved)
    if recorded_versions is None or dict(recorded_versions) != versions:
        record_saved_versions(ctx, service_principal_id, versions, current_tags=current_tags)
    return {**saved, "secretVersions": dict(resolved.versions), "savedVersions": versions}


def _stored_keys(ctx: StepContext, sp_id: str) -> set[str]:
    """The key names Graph has saved (values come back masked as ``*``; a key with no value counts as cleared)."""
    return {key for key, value in sync.get_secret_keys(ctx.graph, sp_id).items() if value != ""}


def _put_secret_set(ctx: StepContext, sp_id: str, resolved: Any, sync_all: bool,
                    notification_email: str | None) -> dict:
    """PUT resolved credentials + SyncAll + SyncNotificationSettings; converge the saved key set on exactly them.

    Why the second PUT: whether Graph replaces the saved set or merges the PUT into it is not
    documented, and Terraform's azuread provider removes a key by PUTting it with an empty value
    (``synchronizationSecretResourceDelete`` in
    https://github.com/hashicorp/terraform-provider-azuread/blob/main/internal/services/synchronization/synchronization_secret_resource.go).
    So after the PUT the saved keys are read back (GET .../synchronization/secrets, the call
    Terraform reads with; values are masked, so key names are compared, never values): keys
    missing are waited for (replication), and keys the request does not have - a credential
    dropped since the last save, kept by a merge - are PUT again with an empty value, together
    with the full set (were the PUT a replace after all, the set stays complete). Under replace
    semantics that second PUT never happens.
    """
    values = dict(resolved.values)
    values["SyncAll"] = "true" if sync_all else "false"
    values["SyncNotificationSettings"] = notification_settings(notification_email)
    secret_values = resolved.secret_values()
    wanted = set(values)
    _wait_for(ctx, f"save secrets on {sp_id}", lambda: sync.put_secrets(ctx.graph, sp_id, values, secret_values))

    def saved() -> set[str]:
        stored = _stored_keys(ctx, sp_id)
        missing = sorted(wanted - stored)
        if missing:
            raise errors.NotFound(f"stored secrets lack {', '.join(missing)}", code="SecretKeysMissing")
        return stored

    extra = sorted(_wait_for(ctx, f"check secrets on {sp_id}", saved, retry_on=(errors.NotFound,)) - wanted)
    if extra:
        logger.info("secrets of %s still hold %s, which the request does not have (Graph merged the PUT); "
                    "clearing them with empty values", sp_id, ", ".join(extra))
        clearing = {**values, **{key: "" for key in extra}}
        _wait_for(ctx, f"clear secrets on {sp_id}",
                  lambda: sync.put_secrets(ctx.graph, sp_id, clearing, secret_values))

        def exact() -> set[str]:
            stored = _stored_keys(ctx, sp_id)
            if stored != wanted:
                raise errors.NotFound(
                    f"stored secrets differ from the request (missing: {', '.join(sorted(wanted - stored)) or '-'}; "
                    f"not cleared: {', '.join(sorted(stored - wanted)) or '-'})", code="SecretKeysNotConverged")
            return stored

        _wait_for(ctx, f"check cleared secrets on {sp_id}", exact, retry_on=(errors.NotFound,))
    return {"keys": sorted(wanted), "cleared": extra}


# -- 5b. the Key Vault versions saved and restarted with (tags on the service principal) --------------------

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


# -- 6. assignments -----------------------------------------------------------------------------------------

def assign_principals(ctx: StepContext, *, service_principal_id: str, users: Iterable[str] = (),
                      groups: Iterable[str] = (), app_role: str | None = None,
                      count_imported_roles: bool = False) -> dict:
    """Assign users (id or UPN) and groups (id or name) to the app; existing assignments are kept.

    Without ``app_role`` each principal gets the default role (:func:`assign.pick_app_role`) once.
    With it, each gets that role (by value or displayName; ``AppRoleNotFound`` names the roles there
    are when the SP has none such). ``count_imported_roles`` (a role-import template, run after the
    job's first cycle) also answers ``rolesImported``: the SP's enabled app roles of origin
    ``ServicePrincipal``, which is where the job writes what it imports.
    """
    sp_id = service_principal_id
    result: dict = {}
    sp: dict | None = None
    if count_imported_roles:
        sp = _read_imported_roles(ctx, sp_id, app_role)
        result["rolesImported"] = len(assign.imported_roles(sp))
    wanted = [assign.resolve_user(ctx.graph, u) for u in users] + [assign.resolve_group(ctx.graph, g) for g in groups]
    if not wanted:
        return {"assigned": 0, "alreadyAssigned": 0, **result}
    listed = _wait_for(ctx, f"list assignments of {sp_id}", lambda: assign.list_assigned(ctx.graph, sp_id))
    if sp is None:
        sp = _wait_for(ctx, f"read {sp_id}", lambda: apps.get_service_principal(ctx.graph, sp_id, select="id,appRoles"))
    if app_role:
        found = assign.find_app_role(sp, app_role)
        if found is None:
            raise errors.PermanentError(_missing_role_message(sp, app_role, count_imported_roles), code="AppRoleNotFound")
        role = str(found["id"])
        # a principal may hold several roles of one app: only this role counts as already assigned
        existing = {str(a.get("principalId")) for a in listed if str(a.get("appRoleId")).lower() == role.lower()}
    else:
        role = assign.pick_app_role(sp)
        existing = {str(a.get("principalId")) for a in listed}
    assigned = already = 0
    for principal in dict.fromkeys(wanted):
        if principal in existing:
            already += 1
            continue
        try:
            _wait_for(ctx, f"assign {principal} to {sp_id}", lambda: assign.assign(ctx.graph, sp_id, principal, role),
                      retry_on=(errors.NotFound,))
            assigned += 1
        except errors.Conflict:
            already += 1
        except errors.BadRequest as refused:
            # Entra answers a duplicate assignment 400 ("Permission being assigned already exists on
            # the object"), not 409: the list above missed it (lag, or a lost 201 before a re-run).
            # Accepted when Graph says so or the list now shows it; any other 400 fails the step.
            if not (_DUPLICATE_ASSIGNMENT in refused.message.casefold() or principal in {
                    str(a.get("principalId")) for a in assign.list_assigned(ctx.graph, sp_id)}):
                raise
            already += 1
    return {"assigned": assigned, "alreadyAssigned": already, **result}


def _read_imported_roles(ctx: StepContext, sp_id: str, app_role: str | None) -> dict:
    """The SP with its appRoles, read again while replication may still hide the imported roles.

    Steady state says the cycle wrote them; a read served by a replica that has not seen the write
    yet would report none (or miss ``app_role``), so a read without any imported role, or without the
    named one, is repeated within VISIBILITY_WAIT_SECONDS before it is believed.
    """
    deadline = ctx.monotonic() + ctx.settings.visibility_wait_seconds
    while True:
        sp = _wait_for(ctx, f"read {sp_id}", lambda: apps.get_service_principal(ctx.graph, sp_id, select="id,appRoles"))
        complete = assign.imported_roles(sp) and (not app_role or assign.find_app_role(sp, app_role) is not None)
        if complete or ctx.monotonic() + ctx.settings.visibility_poll_seconds > deadline:
            return sp
        ctx.sleep(ctx.settings.visibility_poll_seconds)


def _missing_role_message(sp: dict, app_role: str, imported: bool) -> str:
    names = [str(r.get("displayName") or r.get("value")) for r in sp.get("appRoles") or [] if r.get("isEnabled", True)]
    shown = ", ".join(f"'{n}'" for n in names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    where = "after the job's first cycle imported " + f"{len(assign.imported_roles(sp))} roles" if imported else \
        "(for a role-import template such as AWS Single-Account Access the roles appear only after the job's " \
        "first cycle)"
    return f"the service principal has no enabled app role with value or displayName '{app_role}' {where}; " \
           f"its roles: {shown or 'none'}"


# -- 7. start -----------------------------------------------------------------------------------------------

def start_job(ctx: StepContext, *, service_principal_id: str, job_id: str) -> dict:
    """Start the job unless it already runs (Microsoft warns against repeated Start calls).

    ``startedAt`` is the moment steady state must come after: now when we start it; the current
    run's start when it already runs (so a re-run of this step does not wait for the next cycle).
    """
    sp_id = service_principal_id
    job = _wait_for(ctx, f"read job {job_id}", lambda: sync.get_job(ctx.graph, sp_id, job_id))
    if job_status.is_running(job):
        began = job_status.parse_time(((job.get("status") or {}).get("lastExecution") or {}).get("timeBegan"))
        return {"started": False, "alreadyRunning": True, "startedAt": _iso(began or ctx.now())}
    started_at = ctx.now()
    try:
        _wait_for(ctx, f"start job {job_id}", lambda: sync.start_job(ctx.graph, sp_id, job_id))
    except errors.GraphTransient:
        # Start is not repeated blindly: read the job and accept a start that did happen. The read
        # may land on a replica the new job has not reached yet, so its 404 is waited out too.
        if not job_status.is_running(_wait_for(ctx, f"read job {job_id}", lambda: sync.get_job(ctx.graph, sp_id, job_id))):
            raise
    logger.info("started job %s on %s", job_id, sp_id)
    return {"started": True, "alreadyRunning": False, "startedAt": _iso(started_at)}


# -- 8. status and errors --------------------------------------------------------------------------------

def _first_job_id(ctx: StepContext, sp_id: str) -> str | None:
    """The id of the service principal's first job (by id) when a step was given none; None without jobs."""
    jobs = sorted(sync.list_jobs(ctx.graph, sp_id), key=lambda j: str(j.get("id")))
    return str(jobs[0]["id"]) if jobs else None


def _job_id(ctx: StepContext, sp_id: str, job_id: str | None) -> str:
    if job_id:
        return job_id
    first = _first_job_id(ctx, sp_id)
    if first is None:
        raise errors.NotFound(f"service principal {sp_id} has no synchronization job", code="JobNotFound", status=404)
    return first


def get_job_status(ctx: StepContext, *, service_principal_id: str, job_id: str | None,
                   started_at: str | None) -> dict:
    """The job's classification (:mod:`core.status`) relative to ``started_at``.

    A 404 for the job is waited out as replication lag (VISIBILITY_WAIT_SECONDS, then transient):
    the first poll may land on a directory replica the new job has not reached yet. Without
    ``job_id`` (the health sweep) the SP's first job by id is classified straight from the list,
    whose items are whole ``synchronizationJob`` objects with their ``status``
    (https://learn.microsoft.com/graph/api/synchronization-synchronization-list-jobs): one Graph read.
    """
    if not job_id:  # the list answers each job whole, status included: one read, not list + get
        jobs = sorted(sync.list_jobs(ctx.graph, service_principal_id), key=lambda j: str(j.get("id")))
        if not jobs:
            missing = {"state": MISSING_JOB, "settled": False, "code": None, "jobId": None}
            return {"jobId": None, "status": missing}
        job, job_id = jobs[0], str(jobs[0].get("id"))
    else:
        job = _wait_for(ctx, f"read job {job_id}", lambda: sync.get_job(ctx.graph, service_principal_id, str(job_id)))
    classified = job_status.classify(job, started_at).to_dict()
    classified["jobId"] = job_id
    return {"jobId": job_id, "status": classified}


def get_provisioning_errors(ctx: StepContext, *, service_principal_id: str, job_id: str, since: str,
                            top: int = 20, until: str | None = None) -> dict:
    """The job's failed provisioning events between ``since`` (a cycle's start) and ``until``.

    Every failure row back to ``since`` is read (filtered by Graph, paged through ``@odata.nextLink``,
    at most ``PROVISIONING_LOG_MAX_PAGES`` pages) so that ``failedObjects`` and ``topErrorCodes``
    cover the whole cycle; ``errors`` holds the newest ``top`` rows. ``complete`` is False when the
    page bound cut the read short (the counts are then lower bounds).
    """
    moment = job_status.parse_time(since) or datetime(1970, 1, 1, tzinfo=timezone.utc)
    pacer = ctx.pacer or logs.Pacer(ctx.settings.provisioning_log_min_interval_seconds, ctx.monotonic, ctx.sleep)
    read = logs.read_rows(ctx.graph, pacer, job_id, moment, ctx.settings.provisioning_log_page_size,
                          status="failure", until=job_status.parse_time(until),
                          max_pages=ctx.settings.provisioning_log_max_pages)
    limit = max(1, min(int(top), 500))
    rows = read["rows"]
    return {"errors": rows[:limit], **logs.error_summary(rows, limit), "since": logs.iso_z(moment),
            "pages": read["pages"], "complete": read["complete"]}


# -- 9. health sweep ---------------------------------------------------------------------------------------

def list_managed_instances(ctx: StepContext) -> dict:
    """Every service principal carrying the fleet tag: instance key, labels and credential references.

    ``credentials`` (with ``syncAll`` and ``notificationEmail``) come from the SP's notes
    (:func:`instance_notes`): Key Vault secret names and non-secret literals, never values; absent
    when the notes hold none (an instance set up before they were stored, or someone else's notes).
    """
    found = apps.find_service_principals(ctx.graph, odata.any_eq("tags", ctx.tag),
                                         select="id,displayName,applicationTemplateId,tags,notes")
    key_prefix, label_prefix = f"{ctx.tag}:key:", f"{ctx.tag}:label:"
    instances = []
    for sp in sorted(found, key=lambda s: str(s.get("displayName"))):
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
        instances.append(instance)
    return {"instances": instances}


def restart_quarantined_job(ctx: StepContext, *, service_principal_id: str, job_id: str | None,
                            credentials: dict | None = None, sync_all: bool = False,
                            notification_email: str | None = None) -> dict:
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
    _put_secret_set(ctx, sp_id, resolved, sync_all, notification_email)
    record_saved_versions(ctx, sp_id, now, restarted={**restarted, **now})
    sync.restart_job(ctx.graph, sp_id, job_id, "QuarantineState")
    logger.info("restarted quarantined job %s on %s with Key Vault versions %s", job_id, sp_id, _describe(now))
    return {"jobId": job_id, "restarted": True, "cause": cause,
            "reason": f"Key Vault secret validates ({_describe(changed)}); saved and restarted",
            "restartedAt": _iso(ctx.now()), "secretVersions": now}
