"""Steps of the synchronization-job family: find or create the job, start it, read its status and
the failures of its latest cycle."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Iterable

from core import errors
from core import status as job_status
from core.graph import provisioning_logs as logs
from core.graph import synchronization as sync
from core.status import MISSING_JOB
from core.steps.context import StepContext, _wait_for
from core.times import iso, iso_seconds

logger = logging.getLogger("core.steps")


def _raise_job_not_found(exc: errors.ProvisioningError) -> Any:
    raise errors.NotFound(f"no job listed after create answered {exc.code}", code="JobNotFound", status=404)



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




def start_job(ctx: StepContext, *, service_principal_id: str, job_id: str) -> dict:
    """Start the job unless it already runs (Microsoft warns against repeated Start calls).

    ``startedAt`` is the moment steady state must come after: now when we start it; the current
    run's start when it already runs (so a re-run of this step does not wait for the next cycle).
    """
    sp_id = service_principal_id
    job = _wait_for(ctx, f"read job {job_id}", lambda: sync.get_job(ctx.graph, sp_id, job_id))
    if job_status.is_running(job):
        began = job_status.parse_time(((job.get("status") or {}).get("lastExecution") or {}).get("timeBegan"))
        return {"started": False, "alreadyRunning": True, "startedAt": iso(began or ctx.now())}
    started_at = ctx.now()
    try:
        _wait_for(ctx, f"start job {job_id}", lambda: sync.start_job(ctx.graph, sp_id, job_id))
    except errors.GraphTransient:
        # Start is not repeated blindly: read the job and accept a start that did happen. The read
        # may land on a replica the new job has not reached yet, so its 404 is waited out too.
        if not job_status.is_running(_wait_for(ctx, f"read job {job_id}", lambda: sync.get_job(ctx.graph, sp_id, job_id))):
            raise
    logger.info("started job %s on %s", job_id, sp_id)
    return {"started": True, "alreadyRunning": False, "startedAt": iso(started_at)}



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
    return {"errors": rows[:limit], **logs.error_summary(rows, limit), "since": iso_seconds(moment),
            "pages": read["pages"], "complete": read["complete"]}
