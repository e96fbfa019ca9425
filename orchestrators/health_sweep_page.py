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

Side effect: one structured log line (JSON) per unhealthy instance, written by its page only when
not replaying, so each appears once; ``sweepId`` is the parent orchestration's instance id.

Overlap: the timer starts every sweep under one instance id (triggers/timer_sweep.py) and skips a
tick while it is Running; the pages are children of that instance (ids ``<sweep id>:<start
time>:page-<n>``), so the parent stays Running until its last page is done and one sweep never
overlaps the next. A crash resumes where the history stands: finished pages are not read again.
Should a page's staged report block be gone by the commit (storage lost it), that page is swept
once more for its report lines only (its cursor is kept), at most twice, so the report still holds
every instance once.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any, Generator

import azure.durable_functions as df

from core import names
from core.contracts import ListManagedInstancesInput, ListManagedInstancesOutput, StepError, SweepReport
from core.sweep_contracts import (CommitSweepReportInput, CommitSweepReportOutput, HealthSweepPageInput,
                                  HealthSweepPageOutput, StageSweepReportInput)
from core.times import iso
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step
from orchestrators.blueprint import bp
from orchestrators.health_sweep import _HEALTHY, CATEGORIES, read_statuses, restart_credential_quarantines
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
    page = 0
    while True:
        context.set_custom_status({"phase": "sweeping", "page": page, "checked": sum(tally.values()),
                                   "counts": {c: tally.get(c, 0) for c in CATEGORIES}})
        cursors.append(cursor)
        request = HealthSweepPageInput(options=raw_options, cursor=cursor, page=page, sweep_id=context.instance_id,
                                       blob_name=blob_name,
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
    counts = {c: tally.get(c, 0) for c in CATEGORIES}
    outcomes = restarted + refused
    report = SweepReport(swept_at=iso(started), total=sum(counts.values()), pages=page, counts=counts,
                         quarantined_by_reason=dict(sorted(by_reason.items())), unhealthy=unhealthy,
                         unhealthy_omitted=omitted, restarted=outcomes[:options.sweep_max_reported],
                         restarted_omitted=max(0, len(outcomes) - options.sweep_max_reported), report=report_link,
                         drift_counts=dict(sorted(drift.items())) if options.sweep_drift_check else None)
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
            log.warning(json.dumps({"event": "unhealthyProvisioningInstance", "sweepId": sweep_id, **entry},
                                   sort_keys=True))
    tally = Counter(e["category"] for e in entries)
    by_reason = Counter(str(e.get("reason")) for e in entries if e["category"] == "quarantined")
    return HealthSweepPageOutput(counts={c: tally[c] for c in CATEGORIES if tally.get(c)},
                                 quarantined_by_reason=dict(sorted(by_reason.items())), unhealthy=unhealthy[:limit],
                                 unhealthy_omitted=max(0, len(unhealthy) - limit), restarted=restarted,
                                 staged=bool(staged.get("ok")), block=page if entries else None,
                                 next_cursor=listing.next_cursor, drift_counts=drift_counts).to_dict()
