"""``health_sweep``: classify every app instance this app manages and report the unhealthy ones.

Contract
--------
Input: ``{"options": {...}}`` (the timer trigger passes the options from ``core.settings``).

Output: ``{"sweptAt", "total", "pages", "counts": {healthy, notStarted, running, failing, quarantined,
paused, disabled, missingJob, unknown, unreadable}, "quarantinedByReason": {reason: n}, "unhealthy":
[{servicePrincipalId, displayName, jobId, category, reason, ...}] (at most ``sweepMaxReported``;
``unhealthyOmitted`` counts the rest), "restarted": [{servicePrincipalId, restarted, reason}] (the
restarts done first, then the refusals; at most ``sweepMaxReported``, ``restartedOmitted`` counts
the rest), "report": {container, blobName, url} or
{error}}``. The full per-instance report (one JSON line per instance, healthy ones included) is
the blob ``report`` names (:mod:`core.reports`).

Linear in the fleet (issue #15). The fleet is swept one page at a time: ``list_managed_instances``
lists one page of ``sweepPageSize`` service principals (Graph paging, :mod:`core.sweep`) and hands
back the next page's ``@odata.nextLink`` as a cursor; each page is one ``health_sweep_page``
sub-orchestration that lists its page, reads its statuses, restarts what it may, stages its lines
of the blob report and returns only tallies and its unhealthy entries. So no history holds more
than one page of instances: a page's episodes replay at most that page, and this parent replays
only a few small events per page. Each status read is one Graph read (``get_job_status`` without
a job id classifies the job straight from the job list).

Side effect: one structured log line (JSON) per unhealthy instance, written by its page only when
not replaying, so each appears once; ``sweepId`` is this orchestration's instance id. A quarantined
entry carries its ``cause`` (``credentials``, ``scimCompliance``, ``escrowThreshold``,
``tooManyDeletes``, ``other``: from the quarantine's reason *and* error code). Quarantined jobs are
only reported, unless ``options.restartCredentialQuarantine`` is on: then only a job whose cause is
``credentials`` goes to ``restart_quarantined_job`` (the references - names, never values - come
from the service principal's notes, listed with the page), which restarts it only when Key Vault
holds a version other than the one recorded as saved, that version was never restarted with
before, the saved credentials fail validateCredentials and the current ones pass: at most one
restart per secret version, so sweeps cannot loop. Any other cause (a SCIM-compliance quarantine
above all) is reported on every sweep and never restarted.

Overlap: the timer starts every sweep under one instance id (triggers/timer_sweep.py) and skips a
tick while it is Running; the pages are children of that instance (ids ``<sweep id>:<start
time>:page-<n>``), so the parent stays Running until its last page is done and one sweep never
overlaps the next. A crash resumes where the history stands: finished pages are not read again.
Should a page's staged report block be gone by the commit (storage lost it), that page is swept
once more for its report lines only (its cursor is kept), at most twice, so the report still holds
every instance once.

Status reads run in chunks of ``options.sweepMaxInFlight`` (fan-out bounded for Graph's limits).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from typing import Any

import azure.durable_functions as df

from core import names
from orchestrators.blueprint import bp
from orchestrators.options import WorkflowOptions
from orchestrators.phases import (
    DISABLED, FAILING, MISSING_JOB, NOT_STARTED, PAUSED, QUARANTINED, RUNNING, STEADY, UNKNOWN,
    is_credential_quarantine, phase_of, quarantine_cause, quarantine_reason,
)
from orchestrators.steps import call_step, chunks, failure_message, gather_settled, iso, throttle_delay

log = logging.getLogger("orchestrators.health_sweep")

#: report category per phase (the fleet vocabulary of the issue)
_CATEGORY = {STEADY: "healthy", NOT_STARTED: "notStarted", RUNNING: "running", FAILING: "failing",
             QUARANTINED: "quarantined", PAUSED: "paused", DISABLED: "disabled", MISSING_JOB: "missingJob",
             UNKNOWN: "unknown"}
_HEALTHY = {"healthy", "running"}
_RESTAGE_ROUNDS = 2  # how many times pages whose report block went missing are swept again
_CATEGORIES = ("healthy", "notStarted", "running", "failing", "quarantined", "paused", "disabled",
               "missingJob", "unknown", "unreadable")


@bp.function_name(names.HEALTH_SWEEP)
@bp.orchestration_trigger(context_name="context")
def health_sweep(context: df.DurableOrchestrationContext):
    """Sweep the fleet page by page (one sub-orchestration each), then commit the blob report."""
    data: dict[str, Any] = context.get_input() or {}
    options = WorkflowOptions.from_dict(data.get("options"))
    started = context.current_utc_datetime
    stamp = started.strftime("%Y%m%dT%H%M%S%fZ")
    blob_name = f"{context.instance_id}/{stamp}.jsonl"
    tally: Counter = Counter()
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
                                   "counts": {c: tally.get(c, 0) for c in _CATEGORIES}})
        cursors.append(cursor)
        result = yield context.call_sub_orchestrator(names.HEALTH_SWEEP_PAGE, {
            "options": data.get("options") or {}, "cursor": cursor, "page": page, "sweepId": context.instance_id,
            "blobName": blob_name, "reportLimit": max(0, options.sweep_max_reported - len(unhealthy))},
            instance_id=f"{context.instance_id}:{stamp}:page-{page:05d}")
        tally.update(result.get("counts") or {})
        by_reason.update(result.get("quarantinedByReason") or {})
        unhealthy.extend(result.get("unhealthy") or [])
        omitted += int(result.get("unhealthyOmitted") or 0)
        for outcome in result.get("restarted") or []:
            (restarted if outcome.get("restarted") else refused).append(outcome)
        staged = staged and bool(result.get("staged"))
        if result.get("block") is not None:
            blocks.append(int(result["block"]))
        page += 1
        cursor = result.get("nextCursor")
        if not cursor:
            break

    context.set_custom_status({"phase": "reporting", "pages": page})
    report_link: dict[str, Any] = {"error": "a page could not write its part of the report (see the log)"}
    for attempt in range(_RESTAGE_ROUNDS + 1):
        if not staged:
            break
        committed = yield from call_step(context, names.COMMIT_SWEEP_REPORT, {"blobName": blob_name, "blocks": blocks},
                                         options)
        if not committed.get("ok"):
            report_link = {"error": (committed.get("error") or {}).get("message")}
            break
        missing = [int(p) for p in committed.get("missing") or []]
        if not missing:
            report_link = {k: committed.get(k) for k in ("container", "blobName", "url")}
            break
        report_link = {"error": f"the report's blocks of pages {missing} are missing"}
        if attempt == _RESTAGE_ROUNDS:
            break
        # their blocks are gone (storage lost them): sweep those pages again, writing their lines only
        for p in missing:
            again = yield context.call_sub_orchestrator(names.HEALTH_SWEEP_PAGE, {
                "options": data.get("options") or {}, "cursor": cursors[p], "page": p, "sweepId": context.instance_id,
                "blobName": blob_name, "restageOnly": True},
                instance_id=f"{context.instance_id}:{stamp}:page-{p:05d}:again-{attempt + 1}")
            staged = staged and bool(again.get("staged"))
    counts = {c: tally.get(c, 0) for c in _CATEGORIES}
    report = {"sweptAt": iso(started), "total": sum(counts.values()), "pages": page, "counts": counts,
              "quarantinedByReason": dict(sorted(by_reason.items())), "unhealthy": unhealthy,
              "unhealthyOmitted": omitted, "restarted": (restarted + refused)[:options.sweep_max_reported],
              "restartedOmitted": max(0, len(restarted) + len(refused) - options.sweep_max_reported),
              "report": report_link}
    context.set_custom_status({"phase": "completed", "counts": counts})
    return report


@bp.function_name(names.HEALTH_SWEEP_PAGE)
@bp.orchestration_trigger(context_name="context")
def health_sweep_page(context: df.DurableOrchestrationContext):
    """One page: list it, read each job's status (bounded), classify, maybe restart, stage its report lines."""
    data: dict[str, Any] = context.get_input() or {}
    options = WorkflowOptions.from_dict(data.get("options"))
    sweep_id = str(data.get("sweepId") or context.instance_id)
    page = int(data.get("page") or 0)
    listed = yield from call_step(context, names.LIST_MANAGED_INSTANCES,
                                  {"cursor": data.get("cursor"), "pageSize": options.sweep_page_size}, options)
    if not listed.get("ok"):
        error = listed["error"]
        raise RuntimeError(f"could not list managed instances: {error.get('code')}: {error.get('message')}")
    instances: list[dict[str, Any]] = list(listed.get("instances") or [])

    entries: list[dict[str, Any]] = []
    for index, chunk in enumerate(chunks(instances, options.sweep_max_in_flight)):
        policy = options.retry_for(names.GET_JOB_STATUS)
        retry = df.RetryOptions(policy.first_retry_interval_ms, policy.max_attempts)
        tasks = [context.call_activity_with_retry(names.GET_JOB_STATUS, retry, _status_request(inst))
                 for inst in chunk]
        settled = yield from gather_settled(context, tasks)
        throttled = [i for i, (ok, value) in enumerate(settled)
                     if ok and isinstance(value, dict) and (value.get("error") or {}).get("kind") == "throttled"]
        if throttled:
            # wait the throttling out on a durable timer, then read those again (architecture §3;
            # call_step waits out any further throttling, a bounded number of times)
            delay = max(throttle_delay((settled[i][1].get("error") or {}).get("retryAfterSeconds"), 1,
                                       f"{context.instance_id}:{index}", options) for i in throttled)
            yield context.create_timer(context.current_utc_datetime + dt.timedelta(seconds=delay))
            for i in throttled:
                settled[i] = (True, (yield from call_step(context, names.GET_JOB_STATUS,
                                                          _status_request(chunk[i]), options)))
        entries.extend(_entry(inst, ok, value) for inst, (ok, value) in zip(chunk, settled))

    if data.get("restageOnly"):  # the parent lost this page's report block: its lines only, once more
        for entry in entries:
            entry.pop("_credentialCaused", None)
        again = yield from call_step(context, names.STAGE_SWEEP_REPORT,
                                     {"blobName": data.get("blobName"), "block": page, "entries": entries}, options)
        return {"staged": bool(again.get("ok"))}

    restarted = []
    if options.restart_credential_quarantine:
        for inst, entry in zip(instances, entries):
            if entry["category"] == "quarantined" and entry.pop("_credentialCaused", False):
                result = yield from call_step(context, names.RESTART_QUARANTINED_JOB,
                                              _restart_request(inst, entry), options)
                restarted.append({"servicePrincipalId": entry["servicePrincipalId"],
                                  "restarted": bool(result.get("ok") and result.get("restarted")),
                                  "reason": result.get("reason") if result.get("ok")
                                  else (result.get("error") or {}).get("message")})
    for entry in entries:
        entry.pop("_credentialCaused", None)
    outcomes = {r["servicePrincipalId"]: {"restarted": r["restarted"], "reason": r["reason"]} for r in restarted}
    lines = [{**e, "restart": outcomes[e["servicePrincipalId"]]} if e["servicePrincipalId"] in outcomes else e
             for e in entries]  # the blob's lines also say what the restart rule did

    staged: dict[str, Any] = {"ok": True}
    if entries:  # an empty page (an empty fleet) stages no block
        staged = yield from call_step(context, names.STAGE_SWEEP_REPORT,
                                      {"blobName": data.get("blobName") or f"{sweep_id}.jsonl", "block": page,
                                       "entries": lines}, options)
    if not staged.get("ok") and not context.is_replaying:
        log.error("health sweep %s page %d: report not written: %s", sweep_id, page,
                  (staged.get("error") or {}).get("message"))
    summary = _report(entries, restarted, int(data.get("reportLimit", len(entries))))
    if not context.is_replaying:
        for entry in summary["all_unhealthy"]:
            log.warning(json.dumps({"event": "unhealthyProvisioningInstance", "sweepId": sweep_id, **entry},
                                   sort_keys=True))
    del summary["all_unhealthy"]
    return {**summary, "staged": bool(staged.get("ok")), "block": page if entries else None,
            "nextCursor": listed.get("nextCursor")}


def _restart_request(inst: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The restart's input: the instance's Key Vault references (names, never values) from its notes."""
    request = {"servicePrincipalId": entry["servicePrincipalId"], "jobId": entry.get("jobId")}
    for key in ("credentials", "syncAll", "notificationEmail"):
        if inst.get(key) is not None:
            request[key] = inst[key]
    return request


def _status_request(inst: dict[str, Any]) -> dict[str, Any]:
    return {"servicePrincipalId": inst.get("servicePrincipalId"), "jobId": inst.get("jobId"), "startedAt": None}


def _entry(inst: dict[str, Any], ok: bool, value: Any) -> dict[str, Any]:
    entry = {"servicePrincipalId": inst.get("servicePrincipalId"), "displayName": inst.get("displayName"),
             "applicationTemplateId": inst.get("applicationTemplateId"), "labels": inst.get("labels") or {}}
    if not ok:
        entry.update(category="unreadable", reason=failure_message(value))
        return entry
    if not value.get("ok"):
        error = value.get("error") or {}
        entry.update(category="unreadable", reason=f"{error.get('code')}: {error.get('message')}")
        return entry
    status = value.get("status") or {}
    category = _CATEGORY[phase_of(status)]
    entry.update(category=category, jobId=status.get("jobId") or inst.get("jobId"), code=status.get("code"))
    if category == "quarantined":
        entry["reason"] = quarantine_reason(status) or "Quarantine"
        entry["cause"] = quarantine_cause(status) or "other"
        entry["_credentialCaused"] = is_credential_quarantine(status)
    elif category not in _HEALTHY:
        entry["reason"] = status.get("reason") or status.get("code") or category
    return entry


def _report(entries: list[dict[str, Any]], restarted: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A page's tallies, its unhealthy entries (at most ``limit`` of them for the output) and restarts."""
    tally = Counter(e["category"] for e in entries)
    by_reason = Counter(e.get("reason") for e in entries if e["category"] == "quarantined")
    unhealthy = [e for e in entries if e["category"] not in _HEALTHY]
    return {
        "counts": {c: tally.get(c, 0) for c in _CATEGORIES if tally.get(c)},
        "quarantinedByReason": dict(sorted(by_reason.items())),
        "unhealthy": unhealthy[:max(0, limit)],
        "unhealthyOmitted": max(0, len(unhealthy) - max(0, limit)),
        "all_unhealthy": unhealthy,
        "restarted": restarted,
    }
