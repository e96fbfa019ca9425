"""``health_sweep``: classify every app instance this app manages and report the unhealthy ones.

Contract
--------
Input: ``{"options": {...}}`` (the timer trigger passes the options from ``core.settings``).

Output (:class:`core.contracts.SweepReport`): ``{"sweptAt", "total", "counts": {healthy, notStarted,
running, failing, quarantined, paused, disabled, missingJob, unknown, unreadable},
"quarantinedByReason": {reason: n}, "unhealthy": [{servicePrincipalId, displayName, jobId, category,
reason, ...}], "restarted": [...]}``; the paged sweep adds ``pages``, ``unhealthyOmitted``,
``restartedOmitted`` and ``report`` (the blob link, below).

Two paths. An input whose options carry ``sweepPageSize`` (every sweep the timer starts since
issue #15) sweeps the fleet one Graph page at a time, one ``health_sweep_page`` sub-orchestration
per page, and writes the full per-instance report to blob storage
(:mod:`orchestrators.health_sweep_page`: linear in the fleet). One without it - a sweep started
before, whose history is replayed by this code - keeps the single-history path below, unchanged:
one listing of the whole fleet, then every status read in this history.

Side effect: one structured log line (JSON) per unhealthy instance, written only when the
orchestrator is not replaying, so each appears once. A quarantined entry carries its ``cause``
(``credentials``, ``scimCompliance``, ``escrowThreshold``, ``tooManyDeletes``, ``other``: from the
quarantine's reason *and* error code). Quarantined jobs are only reported, unless
``options.restartCredentialQuarantine`` is on: then only a job whose cause is ``credentials`` goes
to ``restart_quarantined_job`` (the references - names, never values - come from the service
principal's notes, listed by ``list_managed_instances``), which restarts it only when Key Vault
holds a version other than the one recorded as saved, that version was never restarted with
before, the saved credentials fail validateCredentials and the current ones pass: at most one
restart per secret version, so sweeps cannot loop. Any other cause (a SCIM-compliance quarantine
above all) is reported on every sweep and never restarted.

Status reads run in chunks of ``options.sweepMaxInFlight`` (fan-out bounded for Graph's limits).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from typing import Any, Generator, cast

import azure.durable_functions as df

from core import events, names
from core.contracts import (GetJobStatusInput, GetJobStatusOutput, ListManagedInstancesInput,
                            ListManagedInstancesOutput, RestartQuarantinedJobInput, RestartQuarantinedJobOutput,
                            StepError, SweepReport)
from core.times import iso
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step, chunks, failure_message, gather_settled, throttle_delay
from orchestrators.blueprint import bp
from orchestrators.job_status_view import (
    DISABLED, FAILING, MISSING_JOB, NOT_STARTED, PAUSED, QUARANTINED, RUNNING, STEADY, UNKNOWN,
    is_credential_quarantine, phase_of, quarantine_cause, quarantine_reason,
)

log = logging.getLogger("orchestrators.health_sweep")

#: report category per phase (the keys of the sweep report's ``counts``, listed in the module contract above)
_CATEGORY = {STEADY: "healthy", NOT_STARTED: "notStarted", RUNNING: "running", FAILING: "failing",
             QUARANTINED: "quarantined", PAUSED: "paused", DISABLED: "disabled", MISSING_JOB: "missingJob",
             UNKNOWN: "unknown"}
_HEALTHY = {"healthy", "running"}
#: every category, in report order
CATEGORIES = ("healthy", "notStarted", "running", "failing", "quarantined", "paused", "disabled", "missingJob",
              "unknown", "unreadable")


@bp.function_name(names.HEALTH_SWEEP)
@bp.orchestration_trigger(context_name="context")
def health_sweep(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Sweep the fleet page by page (options with ``sweepPageSize``), else in one history (older sweeps)."""
    data: dict[str, Any] = context.get_input() or {}
    if "sweepPageSize" in (data.get("options") or {}):
        from orchestrators.health_sweep_page import run_over_pages

        return (yield from run_over_pages(context, data))
    return (yield from _run_single_history(context, data))


def _run_single_history(context: df.DurableOrchestrationContext,
                        data: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    """List managed instances, read each job's status (bounded), classify, report, maybe restart."""
    options = WorkflowOptions.from_dict(data.get("options"))
    context.set_custom_status({"phase": "listing"})
    listed = yield from call_step(context, names.LIST_MANAGED_INSTANCES, ListManagedInstancesInput(), options)
    if not listed.get("ok"):
        error = StepError.from_dict(listed["error"])
        raise RuntimeError(f"could not list managed instances: {error.code}: {error.message}")
    instances: list[dict[str, Any]] = list(ListManagedInstancesOutput.from_dict(listed).instances or [])

    entries = yield from read_statuses(context, instances, options, show_progress=True)
    restarted = []
    if options.restart_credential_quarantine:
        context.set_custom_status({"phase": "restarting"})
        restarted = yield from restart_credential_quarantines(context, instances, entries, options)

    report = _report(iso(context.current_utc_datetime), [entry for entry, _ in entries], restarted)
    if not context.is_replaying:
        for unhealthy in report.unhealthy:
            log.warning(events.event_line(events.UNHEALTHY_INSTANCE, sweepId=context.instance_id, **unhealthy))
    context.set_custom_status({"phase": "completed", "counts": report.counts})
    return report.to_dict()



def read_statuses(context: df.DurableOrchestrationContext, instances: list[dict[str, Any]], options: WorkflowOptions,
                  show_progress: bool = False) -> Generator[Any, Any, list[tuple[dict[str, Any], bool]]]:
    """Each instance's report entry (and whether a quarantine is credential-caused), read in chunks of
    ``sweepMaxInFlight``; throttled reads are waited out on a durable timer and read again."""
    entries: list[tuple[dict[str, Any], bool]] = []
    for index, chunk in enumerate(chunks(instances, options.sweep_max_in_flight)):
        if show_progress:
            context.set_custom_status({"phase": "reading", "read": index * options.sweep_max_in_flight,
                                       "total": len(instances)})
        policy = options.retry_for(names.GET_JOB_STATUS)
        retry = df.RetryOptions(policy.first_retry_interval_ms, policy.max_attempts)
        tasks = [context.call_activity_with_retry(names.GET_JOB_STATUS, retry, _status_request(inst).to_dict())
                 for inst in chunk]
        settled = yield from gather_settled(context, tasks)
        throttled = [i for i, (ok, value) in enumerate(settled)
                     if ok and isinstance(value, dict) and (value.get("error") or {}).get("kind") == "throttled"]
        if throttled:
            # wait the throttling out on a durable timer, then read those again (docs/architecture.md §3;
            # call_step waits out any further throttling, a bounded number of times)
            delay = max(throttle_delay((settled[i][1].get("error") or {}).get("retryAfterSeconds"), 1,
                                       f"{context.instance_id}:{index}", options) for i in throttled)
            yield context.create_timer(context.current_utc_datetime + dt.timedelta(seconds=delay))
            for i in throttled:
                settled[i] = (True, (yield from call_step(context, names.GET_JOB_STATUS,
                                                          _status_request(chunk[i]), options)))
        entries.extend(_entry(inst, ok, value) for inst, (ok, value) in zip(chunk, settled))
    return entries


def restart_credential_quarantines(context: df.DurableOrchestrationContext, instances: list[dict[str, Any]],
                                   entries: list[tuple[dict[str, Any], bool]],
                                   options: WorkflowOptions) -> Generator[Any, Any, list[dict[str, Any]]]:
    """``restart_quarantined_job`` for each credential-caused quarantine, one at a time: the outcomes."""
    restarted: list[dict[str, Any]] = []
    for inst, (entry, credential_caused) in zip(instances, entries):
        if entry["category"] == "quarantined" and credential_caused:
            request = RestartQuarantinedJobInput.of(inst, entry["servicePrincipalId"], entry.get("jobId"))
            result = yield from call_step(context, names.RESTART_QUARANTINED_JOB, request, options)
            if result.get("ok"):
                done = RestartQuarantinedJobOutput.from_dict(result)
                restarted.append({"servicePrincipalId": entry["servicePrincipalId"],
                                  "restarted": bool(done.restarted), "reason": done.reason})
            else:
                restarted.append({"servicePrincipalId": entry["servicePrincipalId"], "restarted": False,
                                  "reason": StepError.from_dict(result.get("error") or {}).message})
    return restarted


def _status_request(inst: dict[str, Any]) -> GetJobStatusInput:
    return GetJobStatusInput(service_principal_id=cast(str, inst.get("servicePrincipalId")), job_id=inst.get("jobId"),
                             started_at=None)


def _entry(inst: dict[str, Any], ok: bool, value: Any) -> tuple[dict[str, Any], bool]:
    """The report entry of one instance, and whether its quarantine was caused by its credentials."""
    entry = {"servicePrincipalId": inst.get("servicePrincipalId"), "displayName": inst.get("displayName"),
             "applicationTemplateId": inst.get("applicationTemplateId"), "labels": inst.get("labels") or {}}
    if not ok:
        entry.update(category="unreadable", reason=failure_message(value))
        return entry, False
    if not value.get("ok"):
        error = StepError.from_dict(value.get("error") or {})
        entry.update(category="unreadable", reason=f"{error.code}: {error.message}")
        return entry, False
    status = GetJobStatusOutput.from_dict(value).status or {}
    category = _CATEGORY[phase_of(status)]
    entry.update(category=category, jobId=status.get("jobId") or inst.get("jobId"), code=status.get("code"))
    if category == "quarantined":
        entry["reason"] = quarantine_reason(status) or "Quarantine"
        entry["cause"] = quarantine_cause(status) or "other"
        return entry, is_credential_quarantine(status)
    if category not in _HEALTHY:
        entry["reason"] = status.get("reason") or status.get("code") or category
    return entry, False


def _report(swept_at: str, entries: list[dict[str, Any]], restarted: list[dict[str, Any]]) -> SweepReport:
    tally = Counter(e["category"] for e in entries)
    by_reason = Counter(str(e.get("reason")) for e in entries if e["category"] == "quarantined")
    return SweepReport(swept_at=swept_at, total=len(entries), counts={c: tally.get(c, 0) for c in CATEGORIES},
                       quarantined_by_reason=dict(sorted(by_reason.items())),
                       unhealthy=[e for e in entries if e["category"] not in _HEALTHY], restarted=restarted)
