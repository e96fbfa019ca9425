"""The paged health sweep (issue #15: a sweep whose cost grows linearly with the fleet).

``run_over_pages`` is ``health_sweep``'s path for an input whose options carry ``sweepPageSize``;
``health_sweep_page`` is the sub-orchestration of one page.

Linear in the fleet. The fleet is swept one page at a time: ``list_managed_instances`` lists one
page of ``sweepPageSize`` service principals (Graph paging, :func:`core.steps.sweep.list_managed_page`)
and hands back the next page's ``@odata.nextLink`` as a cursor; each page is one
``health_sweep_page`` sub-orchestration that lists its page, reads its statuses, restarts what it
may, stages its lines of the blob report and returns only tallies and its unhealthy entries. So no
history holds more than one page of instances: a page's episodes replay at most that page, and the
parent replays only a few small events per page. Each status read is one Graph read
(``get_job_status`` without a job id classifies the job straight from the job list).

Output (:class:`core.contracts.SweepReport`): the counts, ``pages``, ``quarantinedByReason``,
``unhealthy`` (at most ``sweepMaxReported``; ``unhealthyOmitted`` counts the rest), ``restarted``
(the restarts done first, then the refusals; at most ``sweepMaxReported``, ``restartedOmitted``
counts the rest) and ``report``: ``{container, blobName, url}`` or ``{error}``. The full
per-instance report (one JSON line per instance, healthy ones included, with the restart outcome
where the restart rule ran) is that blob (:mod:`core.sweep_report`).

Duties (docs/fleet-operations.md "The health sweep"), each in its own helper below: per page the
rotation safety net (:func:`rotation_safety_net`, when the options carry ``sweepRotationSafetyNet``)
and the classification record (:func:`record_classifications`, when the parent passed
``startedAt``: a page of a parent from before it replays as recorded); once per sweep the expiry
lines (:func:`credential_expiry_lines`). Output additions: ``rotationsStarted``, ``rotations``,
``lagging``/``laggingOmitted``, ``classificationChanges``, ``credentialsExpiring``.

Side effect: structured log lines (core/events.py), written only when not replaying, so each
appears once: ``unhealthyProvisioningInstance`` per unhealthy instance and
``provisioningClassificationChanged`` per changed one (by its page), ``credentialExpiry`` per
expiring or expired secret and ``healthSweepCompleted`` (by the parent); ``sweepId`` is the parent
orchestration's instance id.

Overlap: the timer starts every sweep under one instance id (triggers/timer_sweep.py) and skips a
tick while it is Running; the pages are children of that instance (ids ``<sweep id>:<start
time>:page-<n>``), so the parent stays Running until its last page is done and one sweep never
overlaps the next. A crash resumes where the history stands: finished pages are not read again.
Should a page's staged report block be gone by the commit (storage lost it), that page is swept
once more for its report lines only (its cursor is kept), at most twice, so the report still holds
every instance once.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Generator

import azure.durable_functions as df

from core import events, names
from core.contracts import ListManagedInstancesInput, ListManagedInstancesOutput, StepError, SweepReport
from core.sweep_contracts import (CheckCredentialExpiryInput, CheckCredentialExpiryOutput, CheckSweepPageLagInput,
                                  CheckSweepPageLagOutput, CommitSweepReportInput, CommitSweepReportOutput,
                                  HealthSweepPageInput, HealthSweepPageOutput, PageLagInstance,
                                  RecordSweepResultsInput, RecordSweepResultsOutput, StageSweepReportInput,
                                  StartSweepRotationOutput, SweepResult)
from core.times import iso
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step, chunks, failure_message, gather_settled
from orchestrators.blueprint import bp
from orchestrators.health_sweep import _HEALTHY, CATEGORIES, read_statuses, restart_credential_quarantines
from orchestrators.rotate_secret import sweep_rotation_calls
from orchestrators.sweep_drift import check_drift

log = logging.getLogger("orchestrators.health_sweep")

_RESTAGE_ROUNDS = 2  # how many times pages whose report block went missing are swept again


def run_over_pages(context: df.DurableOrchestrationContext,
                   data: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    """Sweep the fleet page by page (one sub-orchestration each), then commit the blob report."""
    raw_options: dict[str, Any] = data.get("options") or {}
    options = WorkflowOptions.from_dict(raw_options)
    started = context.current_utc_datetime
    stamp = started.strftime("%Y%m%dT%H%M%S%fZ")
    blob_name = f"{context.instance_id}/{stamp}.jsonl"
    tally: Counter = Counter()
    drift: Counter = Counter()
    by_reason: Counter = Counter()
    unhealthy: list[dict[str, Any]] = []
    restarted: list[dict[str, Any]] = []  # the restarts done, then the ones refused (listed after them)
    refused: list[dict[str, Any]] = []
    omitted = 0
    staged = True
    blocks: list[int] = []
    cursor: str | None = None
    cursors: list[str | None] = []  # each page's cursor, to sweep a page again whose report block is missing
    duties = _SweepDuties()  # the safety net's rotations and lagging instances, the classification changes
    page = 0
    while True:
        context.set_custom_status({"phase": "sweeping", "page": page, "checked": sum(tally.values()),
                                   "counts": {c: tally.get(c, 0) for c in CATEGORIES}})
        cursors.append(cursor)
        request = HealthSweepPageInput(options=raw_options, cursor=cursor, page=page, sweep_id=context.instance_id,
                                       blob_name=blob_name, started_at=iso(started),
                                       report_limit=max(0, options.sweep_max_reported - len(unhealthy)))
        result = HealthSweepPageOutput.from_dict((yield context.call_sub_orchestrator(
            names.HEALTH_SWEEP_PAGE, request.to_dict(), instance_id=f"{context.instance_id}:{stamp}:page-{page:05d}")))
        tally.update(result.counts)
        drift.update(result.drift_counts or {})
        by_reason.update(result.quarantined_by_reason)
        unhealthy.extend(result.unhealthy)
        omitted += int(result.unhealthy_omitted or 0)
        for outcome in result.restarted:
            (restarted if outcome.get("restarted") else refused).append(outcome)
        duties.add(result, options.sweep_max_reported)
        staged = staged and result.staged
        if result.block is not None:
            blocks.append(int(result.block))
        page += 1
        cursor = result.next_cursor
        if not cursor:
            break

    context.set_custom_status({"phase": "reporting", "pages": page})
    report_link: dict[str, Any] = {"error": "a page could not write its part of the report (see the log)"}
    for attempt in range(_RESTAGE_ROUNDS + 1):
        if not staged:
            break
        committed = yield from call_step(context, names.COMMIT_SWEEP_REPORT,
                                         CommitSweepReportInput(blob_name=blob_name, blocks=blocks), options)
        if not committed.get("ok"):
            report_link = {"error": StepError.from_dict(committed.get("error") or {}).message}
            break
        done = CommitSweepReportOutput.from_dict(committed)
        missing = [int(p) for p in done.missing or []]
        if not missing:
            report_link = {"container": done.container, "blobName": done.blob_name, "url": done.url}
            break
        report_link = {"error": f"the report's blocks of pages {missing} are missing"}
        if attempt == _RESTAGE_ROUNDS:
            break
        # their blocks are gone (storage lost them): sweep those pages again, writing their lines only
        for p in missing:
            again_request = HealthSweepPageInput(options=raw_options, cursor=cursors[p], page=p,
                                                 sweep_id=context.instance_id, blob_name=blob_name, restage_only=True)
            again = HealthSweepPageOutput.from_dict((yield context.call_sub_orchestrator(
                names.HEALTH_SWEEP_PAGE, again_request.to_dict(),
                instance_id=f"{context.instance_id}:{stamp}:page-{p:05d}:again-{attempt + 1}")))
            staged = staged and again.staged
    expiring = yield from credential_expiry_lines(context, options)
    counts = {c: tally.get(c, 0) for c in CATEGORIES}
    outcomes = restarted + refused
    report = SweepReport(swept_at=iso(started), total=sum(counts.values()), pages=page, counts=counts,
                         quarantined_by_reason=dict(sorted(by_reason.items())), unhealthy=unhealthy,
                         unhealthy_omitted=omitted, restarted=outcomes[:options.sweep_max_reported],
                         restarted_omitted=max(0, len(outcomes) - options.sweep_max_reported), report=report_link,
                         **duties.report_fields(), credentials_expiring=expiring[:options.sweep_max_reported],
                         drift_counts=dict(sorted(drift.items())) if options.sweep_drift_check else None)
    if not context.is_replaying:
        log.info(events.event_line(
            events.SWEEP_COMPLETED, sweepId=context.instance_id, total=report.total, counts=counts,
            quarantinedByReason=report.quarantined_by_reason, pages=page,
            durationSeconds=round((context.current_utc_datetime - started).total_seconds(), 3),
            rotationsStarted=report.rotations_started, classificationChanges=report.classification_changes,
            credentialsExpiring=len(expiring), report=report_link.get("blobName"), driftCounts=report.drift_counts))
    context.set_custom_status({"phase": "completed", "counts": counts})
    return report.to_dict()


@bp.function_name(names.HEALTH_SWEEP_PAGE)
@bp.orchestration_trigger(context_name="context")
def health_sweep_page(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """One page: list it, read each job's status (bounded), classify, maybe restart, stage its report lines."""
    data = HealthSweepPageInput.from_dict(context.get_input() or {})
    options = WorkflowOptions.from_dict(data.options)
    sweep_id = data.sweep_id or context.instance_id
    page = data.page
    blob_name = data.blob_name or f"{sweep_id}.jsonl"
    listed = yield from call_step(context, names.LIST_MANAGED_INSTANCES,
                                  ListManagedInstancesInput(cursor=data.cursor, page_size=options.sweep_page_size),
                                  options)
    if not listed.get("ok"):
        error = StepError.from_dict(listed["error"])
        raise RuntimeError(f"could not list managed instances: {error.code}: {error.message}")
    listing = ListManagedInstancesOutput.from_dict(listed)
    instances: list[dict[str, Any]] = list(listing.instances or [])
    read = yield from read_statuses(context, instances, options)
    entries = [entry for entry, _ in read]

    if data.restage_only:  # the parent lost this page's report block: its lines only, once more
        again = yield from call_step(context, names.STAGE_SWEEP_REPORT,
                                     StageSweepReportInput(blob_name=blob_name, block=page, entries=entries), options)
        return HealthSweepPageOutput(staged=bool(again.get("ok")), block=page,
                                     next_cursor=listing.next_cursor).to_dict()

    restarted: list[dict[str, Any]] = []
    if options.restart_credential_quarantine:
        restarted = yield from restart_credential_quarantines(context, instances, read, options)
    outcomes = {r["servicePrincipalId"]: {"restarted": r["restarted"], "reason": r["reason"]} for r in restarted}
    lines = [{**e, "restart": outcomes[e["servicePrincipalId"]]} if e["servicePrincipalId"] in outcomes else e
             for e in entries]  # the blob's lines also say what the restart rule did
    net: dict[str, Any] = {"lagging": {}, "rotations": []}
    if data.options.get("sweepRotationSafetyNet"):  # a sweep whose options lack the key replays as recorded
        just_restarted = {sp for sp, o in outcomes.items() if o["restarted"]}  # their kv-saved tags just moved on
        net = yield from rotation_safety_net(context, [i for i in instances
                                                       if i.get("servicePrincipalId") not in just_restarted],
                                             data.options, options)
    changes: dict[str, dict[str, Any]] = {}
    if data.started_at:  # a page of a parent from before the classification record does not record
        changes = yield from record_classifications(context, entries, net["lagging"], sweep_id,
                                                    data.started_at, options)
    lines = [_with_duties(line, net["lagging"], changes) for line in lines]
    lines, drift_counts = yield from check_drift(context, lines, options)  # SWEEP_DRIFT_CHECK (off: unchanged)

    staged: dict[str, Any] = {"ok": True}
    if entries:  # an empty page (an empty fleet) stages no block
        staged = yield from call_step(context, names.STAGE_SWEEP_REPORT,
                                      StageSweepReportInput(blob_name=blob_name, block=page, entries=lines), options)
    if not staged.get("ok") and not context.is_replaying:
        log.error("health sweep %s page %d: report not written: %s", sweep_id, page,
                  StepError.from_dict(staged.get("error") or {}).message)
    limit = len(entries) if data.report_limit is None else max(0, data.report_limit)
    unhealthy = [e for e in entries if e["category"] not in _HEALTHY]
    if not context.is_replaying:
        for entry in unhealthy:
            log.warning(events.event_line(events.UNHEALTHY_INSTANCE, sweepId=sweep_id, **entry))
        log_classification_changes(sweep_id, instances, entries, changes)
    tally = Counter(e["category"] for e in entries)
    by_reason = Counter(str(e.get("reason")) for e in entries if e["category"] == "quarantined")
    return HealthSweepPageOutput(counts={c: tally[c] for c in CATEGORIES if tally.get(c)},
                                 quarantined_by_reason=dict(sorted(by_reason.items())), unhealthy=unhealthy[:limit],
                                 unhealthy_omitted=max(0, len(unhealthy) - limit), restarted=restarted,
                                 staged=bool(staged.get("ok")), block=page if entries else None,
                                 next_cursor=listing.next_cursor, drift_counts=drift_counts,
                                 **_page_duty_fields(net, changes, entries, limit, data)).to_dict()


# -- the page's duties, each in its own helper (issue #12 point 4: the rotation safety net; issue #13
# point 7: the classification record and its change events; issue #12 point 5: the expiry lines)

def rotation_safety_net(context: df.DurableOrchestrationContext, instances: list[dict[str, Any]],
                        raw_options: dict[str, Any],
                        options: WorkflowOptions) -> Generator[Any, Any, dict[str, Any]]:
    """Compare each instance's saved Key Vault versions with Key Vault's current enabled ones and start
    the rotation of every version some instance lags (a missed Key Vault event changes nothing for long).

    One ``check_sweep_page_lag`` per page (Key Vault read once per secret name of the page; the saved
    versions come with the listing, so no Graph read is added), then one ``start_sweep_rotation`` per
    distinct lagging version (:func:`orchestrators.rotate_secret.sweep_rotation_calls`), at most
    ``sweepMaxInFlight`` at a time. The rotation runs under the Event Grid path's id
    (:func:`core.instance_ids.rotation_instance_id`): one the event, a person or another page
    started already is found, not started again - unless it finished leaving instances ``failed``:
    then a follow-up rotation of that version (``<id>:retry-<n>``, :mod:`core.steps.rotation_retry`),
    reported with its ``retryOf``. Best effort: a failed check or start is reported
    on the page's lines, never fails the sweep. Returns ``{"lagging": {sp id: {secrets, rotations}},
    "rotations": [{rotationId, secretName, version, started | error, retryOf?}], "error"?}``.
    """
    refs = [PageLagInstance(service_principal_id=i["servicePrincipalId"], saved_versions=i["savedVersions"])
            for i in instances if i.get("savedVersions") and i.get("servicePrincipalId")]
    if not refs:
        return {"lagging": {}, "rotations": []}
    checked = yield from call_step(context, names.CHECK_SWEEP_PAGE_LAG, CheckSweepPageLagInput(instances=refs), options)
    if not checked.get("ok"):
        message = StepError.from_dict(checked.get("error") or {}).message
        if not context.is_replaying:
            log.warning("health sweep page %s: lag check failed: %s", context.instance_id, message)
        return {"lagging": {}, "rotations": [], "error": message}
    found = CheckSweepPageLagOutput.from_dict(checked)
    if found.unreadable and not context.is_replaying:
        log.warning("health sweep page %s: lag unknown for %s", context.instance_id,
                    "; ".join(f"{name}: {why}" for name, why in sorted(found.unreadable.items())))
    calls = sweep_rotation_calls([checked], raw_options)
    policy = options.retry_for(names.START_SWEEP_ROTATION)
    retry = df.RetryOptions(policy.first_retry_interval_ms, policy.max_attempts)
    rotations: list[dict[str, Any]] = []
    for group in chunks(calls, options.sweep_max_in_flight):
        settled = yield from gather_settled(context, [
            context.call_activity_with_retry(names.START_SWEEP_ROTATION, retry, payload) for _, payload in group])
        for (rotation_id, payload), (ok, value) in zip(group, settled):
            entry: dict[str, Any] = {"rotationId": rotation_id, "secretName": payload["secretName"],
                                     "version": payload["version"], "started": False}
            if not ok:
                entry["error"] = failure_message(value)
            elif not isinstance(value, dict) or not value.get("ok"):
                entry["error"] = StepError.from_dict((value or {}).get("error") or {}).message
            else:
                out = StartSweepRotationOutput.from_dict(value)
                entry["started"] = bool(out.started)
                if out.retry_of:  # a follow-up of a rotation that left instances failed: its own id
                    entry.update(rotationId=out.rotation_id or rotation_id, retryOf=out.retry_of)
            rotations.append(entry)
    by_version = {(r["secretName"].lower(), r["version"]): r for r in rotations}
    lagging: dict[str, dict[str, Any]] = {}
    for item in found.lagging:
        secrets = item.get("secrets") or {}
        started = [by_version[key] for key in sorted({(n.lower(), s.get("current")) for n, s in secrets.items()})
                   if key in by_version]
        lagging[str(item.get("servicePrincipalId"))] = {
            "secrets": secrets,
            "rotations": [{k: r[k] for k in ("rotationId", "retryOf", "started", "error") if k in r} for r in started]}
    return {"lagging": lagging, "rotations": rotations}


def record_classifications(context: df.DurableOrchestrationContext,
                           entries: list[dict[str, Any]], lagging: dict[str, Any], sweep_id: str, started_at: str,
                           options: WorkflowOptions) -> Generator[Any, Any, dict[str, dict[str, Any]]]:
    """Record the page's classifications as the registry's ``lastSweepResult`` (one activity, batched
    writes) and return the instances whose classification changed since their previous sweep
    (:func:`core.steps.sweep.record_sweep_results` has the rules). Best effort: a registry failure
    is logged and changes nothing else (the changes of the rows written before it are returned)."""
    results = [SweepResult(service_principal_id=str(e["servicePrincipalId"]), category=e["category"],
                           reason=e.get("reason"), cause=e.get("cause"),
                           lags=(str(e["servicePrincipalId"]) in lagging) if lagging else None)
               for e in entries if e.get("servicePrincipalId")]  # only what the record needs: histories stay small
    if not results:
        return {}
    recorded = yield from call_step(context, names.RECORD_SWEEP_RESULTS, RecordSweepResultsInput(
        run_id=f"{sweep_id}@{started_at}", swept_at=started_at, results=results), options)
    done = RecordSweepResultsOutput.from_dict(recorded) if recorded.get("ok") else None
    if done is None or not done.recorded:
        if not context.is_replaying:
            reason = done.error if done is not None else StepError.from_dict(recorded.get("error") or {}).message
            log.warning("health sweep page %s: classifications not recorded: %s", context.instance_id, reason)
    # a partial record still reports the changes of the rows it wrote: the next sweep compares with those
    return {str(c.get("servicePrincipalId")): c for c in (done.changes if done is not None else [])}


def log_classification_changes(sweep_id: str, instances: list[dict[str, Any]], entries: list[dict[str, Any]],
                               changes: dict[str, dict[str, Any]]) -> None:
    """One ``provisioningClassificationChanged`` line per changed instance (the caller logs only when not
    replaying; the changes come from the page's one recorded ``record_sweep_results`` result)."""
    for inst, entry in zip(instances, entries):
        change = changes.get(str(entry.get("servicePrincipalId")))
        if change is None:
            continue
        log.warning(events.event_line(
            events.CLASSIFICATION_CHANGED, sweepId=sweep_id, servicePrincipalId=entry.get("servicePrincipalId"),
            instanceKey=inst.get("instanceKey"), displayName=entry.get("displayName"),
            reason=entry.get("reason"), owner=(inst.get("labels") or {}).get("owner"),
            **{"from": change.get("from"), "to": change.get("to")}))


def _with_duties(line: dict[str, Any], lagging: dict[str, Any], changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A report line with what the safety net found (``lag``) and the classification change (``classificationChange``)."""
    sp_id = str(line.get("servicePrincipalId"))
    extra: dict[str, Any] = {}
    if sp_id in lagging:
        extra["lag"] = lagging[sp_id]
    if sp_id in changes:
        extra["classificationChange"] = {"from": changes[sp_id].get("from"), "to": changes[sp_id].get("to")}
    return {**line, **extra} if extra else line


def _page_duty_fields(net: dict[str, Any], changes: dict[str, Any], entries: list[dict[str, Any]], limit: int,
                      data: HealthSweepPageInput) -> dict[str, Any]:
    """The page output's duty fields (left out for a page that ran none, so its JSON reads as before)."""
    if not data.started_at and not data.options.get("sweepRotationSafetyNet"):
        return {}
    names_by_sp = {str(e.get("servicePrincipalId")): e.get("displayName") for e in entries}
    lagging = [{"servicePrincipalId": sp, "displayName": names_by_sp.get(sp), "secrets": sorted(v["secrets"]),
                "rotations": [r["rotationId"] for r in v["rotations"]]} for sp, v in sorted(net["lagging"].items())]
    return {"lagging": lagging[:limit], "lagging_count": len(lagging), "rotations": net["rotations"],
            "classification_changes": len(changes)}


class _SweepDuties:
    """The parent's tally of its pages' duty results (rotations by id: a later page that found a rotation
    an earlier one started does not hide that it was started)."""

    def __init__(self) -> None:
        self.rotations: dict[str, dict[str, Any]] = {}
        self.lagging: list[dict[str, Any]] = []
        self.lagging_total = 0
        self.changes = 0

    def add(self, result: HealthSweepPageOutput, bound: int) -> None:
        for rotation in result.rotations or []:
            known = self.rotations.setdefault(str(rotation.get("rotationId")), dict(rotation))
            if rotation.get("started"):
                known.update(started=True)
                known.pop("error", None)
        self.lagging.extend((result.lagging or [])[:max(0, bound - len(self.lagging))])
        self.lagging_total += int(result.lagging_count or 0)
        self.changes += int(result.classification_changes or 0)

    def report_fields(self) -> dict[str, Any]:
        rotations = [self.rotations[k] for k in sorted(self.rotations)]
        return {"rotations_started": sum(1 for r in rotations if r.get("started")), "rotations": rotations,
                "lagging": self.lagging, "lagging_omitted": max(0, self.lagging_total - len(self.lagging)),
                "classification_changes": self.changes}


def credential_expiry_lines(context: df.DurableOrchestrationContext,
                            options: WorkflowOptions) -> Generator[Any, Any, list[dict[str, Any]]]:
    """Once per sweep: one ``credentialExpiry`` line per referenced Key Vault secret expiring within
    ``CREDENTIAL_EXPIRY_WARNING_DAYS`` of the sweep's start, or expired (``check_credential_expiry``:
    the registry and Key Vault properties, never a value). Best effort: a failure is logged."""
    checked = yield from call_step(context, names.CHECK_CREDENTIAL_EXPIRY, CheckCredentialExpiryInput(
        now=iso(context.current_utc_datetime), warning_days=max(0, int(options.credential_expiry_warning_days))),
        options)
    if not checked.get("ok"):
        if not context.is_replaying:
            log.warning("health sweep %s: credential expiry not checked: %s", context.instance_id,
                        StepError.from_dict(checked.get("error") or {}).message)
        return []
    flagged = CheckCredentialExpiryOutput.from_dict(checked).secrets
    if not context.is_replaying:
        for secret in flagged:
            log.warning(events.event_line(events.CREDENTIAL_EXPIRY, sweepId=context.instance_id,
                                          secretName=secret.get("secretName"), version=secret.get("currentVersion"),
                                          expires=secret.get("expires"), daysLeft=secret.get("daysLeft"),
                                          state=secret.get("state"), expired=secret.get("state") == "expired",
                                          instances=secret.get("instances")))
    return flagged
