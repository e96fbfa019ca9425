"""``provision_batch`` over sub-batches: the batch's history stays small whatever N is.

Why: one orchestration that fans out N instances has a history that grows with N, and Durable
replays the whole history at every episode, so its CPU grows with N² (a 1,000-instance batch spent
149 s of its 215 s of CPU in replay). Here the batch cuts its instances into slices of
``subBatchSize`` (``BATCH_SUB_BATCH_SIZE``) and runs each slice as a ``provision_sub_batch``
sub-orchestration in two phases (setup, id ``<batchId>:part-<n>``, then watch, ``...:watch``: derived, so a replay, a crash recovery or a
re-submission addresses the same one). A sub-batch's history grows with its slice only; the batch's
own history holds per slice one start and one summary (counts, top errors, the few instances not in
a clean steady state). The instance orchestrations keep their ids ``<batchId>:<key>``.

The request itself: a request larger than one slice comes as a reference
(:class:`core.batch_contracts.StoredRequest`: blob, counts, distinct templates, one byte range per
slice; triggers/submission.py stored it) and each sub-batch reads its own slice (``read_request_part``),
so neither the batch's input nor its sub-batches' inputs carry instances (measured: see
benchmarks/workflow_scale.py, ``batchHistoryBytes``). A request of one slice comes inline.

In-flight bound: at most ``subBatchesInFlight`` (``BATCH_SUB_BATCHES_IN_FLIGHT``) sub-batches run at
once in their setup phase, each with ``maxInstancesInFlight // lanes`` instances in setup, so the
whole batch never has more than ``BATCH_MAX_IN_FLIGHT`` instances in setup. A slice's watch phase
(job reads until steady state, possibly hours) holds no lane: as in the single-history batch, a
slow first cycle does not hold back the rest of the fleet. Phases are started with the same
zero-delay dispatch timer as instances are (see ``provision_batch``'s docstring).

Output: the batch report (``core.contracts.BatchReport``'s fields) with ``instances`` = every
outcome in request order when the batch has at most ``reportInlineMax`` instances
(``instancesListed: "all"``), else the instances not in a clean steady state, worst first, at most
``reportInlineMax`` (``instancesListed: "notSteady"``, ``instancesOmitted``); and ``report``: the
blob container, ``<batchId>/report.json`` (this summary plus the part names) and the parts (every
outcome, one blob per sub-batch). Custom status while running: ``{"phase", "counts", "subBatches"}``;
``counts.queued`` are the instances of sub-batches not started yet and ``counts.running`` those of
running sub-batches (their own custom status splits them into queued/configuring/monitoring; the
``GET`` endpoint adds them up).
"""

from __future__ import annotations

from typing import Any, Generator

import azure.durable_functions as df

from core import names, report_store
from core.batch_contracts import (ReadRequestPartInput, ReadRequestPartOutput, StoredRequest, SubBatchInput,
                                  SubBatchSummary, WriteBatchReportInput)
from core.contracts import BatchReport, InstanceOutcome
from core.instance_ids import child_instance_id, sub_batch_instance_id, sub_batch_watch_instance_id
from core.times import iso, seconds_between
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step, failure_message
from orchestrators.provision_batch import resolve_templates, template_key
from orchestrators.provision_sub_batch import SETUP, WATCH
from orchestrators.report import crashed_outcome, final_counts, merge_top_errors, progress_counts, top_errors, worst_first

def plan(total: int, options: WorkflowOptions) -> tuple[int, int, int]:
    """``(slice size, lanes, share)``: sub-batch size, sub-batches at once, instances in setup per sub-batch.

    ``lanes * share <= max(1, maxInstancesInFlight)``: the batch's bound holds across its sub-batches.
    """
    size = max(1, options.sub_batch_size)
    parts = max(1, -(-total // size))
    bound = max(1, options.max_instances_in_flight)
    lanes = max(1, min(parts, options.sub_batches_in_flight, bound))
    return size, lanes, max(1, bound // lanes)


def run_over_sub_batches(context: df.DurableOrchestrationContext,
                         data: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    raw_options: dict[str, Any] = data.get("options") or {}
    options = WorkflowOptions.from_dict(raw_options)
    batch_id = context.instance_id
    request: dict[str, Any] = data.get("request") or {}
    stored = StoredRequest.from_dict(request["stored"]) if isinstance(request.get("stored"), dict) else None
    started_at = iso(context.current_utc_datetime)
    if stored is not None:
        # the request is in blob storage (triggers/submission.py): each sub-batch reads its own slice
        parts: list[list[dict[str, Any]]] = [[] for _ in stored.parts]
        sizes = [part.count for part in stored.parts]
        template_specs = [{"applicationTemplate": t} for t in stored.templates]
    else:
        instances: list[dict[str, Any]] = list(request.get("instances") or [])
        step = max(1, options.sub_batch_size)
        parts = [instances[i:i + step] for i in range(0, len(instances), step)]
        sizes = [len(part) for part in parts]
        template_specs = instances
    total = sum(sizes)
    size, lanes, share = plan(total, options)
    keep_all = total <= options.report_inline_max

    context.set_custom_status({"phase": "resolving templates", "counts": _counts(total, total, 0, []),
                               "subBatches": _lanes(len(parts), [], [], 0)})
    templates = yield from resolve_templates(context, template_specs, options)

    summaries: dict[int, SubBatchSummary] = {}
    setting_up: dict[Any, int] = {}  # setup phases: at most ``lanes`` (they write to Graph)
    watching: dict[Any, int] = {}    # watch phases: not bounded (job reads)
    ready: list[tuple[int, SubBatchSummary]] = []
    next_part = 0
    while next_part < len(parts) or setting_up or watching or ready:
        dispatched = []
        while next_part < len(parts) and len(setting_up) < lanes:
            part = parts[next_part]
            # a stored request's slice is read by the sub-batch; it gets every template (they are few)
            wanted = {template_key(inst) for inst in part} if stored is None else set(templates)
            sub_input = SubBatchInput(batch_id=batch_id, index=next_part, phase=SETUP, instances=part,
                                      templates={k: v for k, v in templates.items() if k in wanted},
                                      options=raw_options, max_in_flight=share, keep_all=keep_all,
                                      keep_max=options.report_inline_max, report_container=options.report_container,
                                      request_part=_request_part(stored, next_part))
            task = context.call_sub_orchestrator(names.PROVISION_SUB_BATCH, sub_input.to_dict(),
                                                 instance_id=sub_batch_instance_id(batch_id, next_part))
            setting_up[task] = next_part
            dispatched.append(task)
            next_part += 1
        for index, set_up in ready:
            sub_input = SubBatchInput(batch_id=batch_id, index=index, phase=WATCH, outcomes=set_up.instances,
                                      setup_blob=set_up.report_blob,
                                      instances=[] if set_up.instances else _keys_only(parts[index]),
                                      options=raw_options, keep_all=keep_all, keep_max=options.report_inline_max,
                                      report_container=options.report_container,
                                      request_part=None if set_up.instances else _request_part(stored, index))
            task = context.call_sub_orchestrator(names.PROVISION_SUB_BATCH, sub_input.to_dict(),
                                                 instance_id=sub_batch_watch_instance_id(batch_id, index))
            watching[task] = index
            dispatched.append(task)
        ready = []
        queued = sum(sizes[next_part:])
        in_parts = sum(sizes[i] for i in list(setting_up.values()) + list(watching.values()))
        context.set_custom_status({"phase": "provisioning",
                                   "counts": _counts(total, queued, in_parts, list(summaries.values())),
                                   "subBatches": _lanes(len(parts), sorted(setting_up.values()),
                                                        sorted(watching.values()), len(summaries))})
        if dispatched:
            yield context.task_any(dispatched + [context.create_timer(context.current_utc_datetime)])
        else:
            yield context.task_any(list(setting_up) + list(watching))
        now = iso(context.current_utc_datetime)
        for task in [t for t in setting_up if t.is_completed]:
            index = setting_up.pop(task)
            if task.state.name == "SUCCEEDED" and isinstance(task.result, dict):
                ready.append((index, SubBatchSummary.from_dict(task.result)))
            else:
                summaries[index] = yield from _failed_part(context, task, batch_id, index, parts[index],
                                                           _request_part(stored, index), keep_all, options, now)
        for task in [t for t in watching if t.is_completed]:
            index = watching.pop(task)
            if task.state.name == "SUCCEEDED" and isinstance(task.result, dict):
                summaries[index] = SubBatchSummary.from_dict(task.result)
            else:
                summaries[index] = yield from _failed_part(context, task, batch_id, index, parts[index],
                                                           _request_part(stored, index), keep_all, options, now)

    finished_at = iso(context.current_utc_datetime)
    ordered = [summaries[i] for i in range(len(parts))]
    counts = _add_counts(ordered)
    kept: list[InstanceOutcome] = [o for s in ordered for o in s.instances]
    if not keep_all:
        kept = worst_first(kept)[:max(0, options.report_inline_max)]
    report = BatchReport(batch_id=batch_id, request_id=data.get("requestId"), started_at=started_at,
                         finished_at=finished_at, duration_seconds=seconds_between(started_at, finished_at),
                         counts=counts, succeeded=counts["steadyState"] == total, instances=kept,
                         top_errors=merge_top_errors(s.top_errors for s in ordered)).to_dict()
    not_clean = total - counts["steadyState"]
    report["instancesListed"] = "all" if keep_all else "notSteady"
    report["instancesOmitted"] = 0 if keep_all else max(0, not_clean - len(kept))
    report["subBatches"] = {"count": len(parts), "size": size, "inFlight": lanes, "instancesInFlightEach": share}
    index_blob = report_store.report_blob_name(batch_id)
    link: dict[str, Any] = {"container": options.report_container, "blob": index_blob,
                            "parts": [s.report_blob for s in ordered]}
    missing = [s.index for s in ordered if not s.report_blob]
    if missing:
        link["missingParts"] = missing
    context.set_custom_status({"phase": "writing report", "counts": counts,
                               "subBatches": _lanes(len(parts), [], [], len(parts))})
    written = yield from call_step(context, names.WRITE_BATCH_REPORT,
                                   WriteBatchReportInput(container=options.report_container, blob=index_blob,
                                                         document={**report, "report": link}), options)
    if not written.get("ok"):
        link["error"] = str((written.get("error") or {}).get("message") or "not written")[:300]
        link["blob"] = None
    report["report"] = link
    context.set_custom_status({"phase": "completed", "counts": counts,
                               "subBatches": _lanes(len(parts), [], [], len(parts))})
    return report


def _failed_part(context: df.DurableOrchestrationContext, task: Any, batch_id: str, index: int,
                 part: list[dict[str, Any]], request_part: ReadRequestPartInput | None, keep_all: bool,
                 options: WorkflowOptions, at: str) -> Generator[Any, Any, SubBatchSummary]:
    # the sub-batch orchestration itself failed (a bug, terminated by hand, its slice unreadable): its
    # instances failed. A stored request's slice is read here to name them (only on this path, so the
    # batch's history holds a slice only for a sub-batch that failed).
    reason = failure_message(task.result) if isinstance(task.result, BaseException) else "no result"
    message = f"provision_sub_batch failed: {reason}"
    if request_part is not None:
        read = yield from call_step(context, names.READ_REQUEST_PART, request_part, options)
        if not read.get("ok"):
            counts = final_counts([])
            counts["total"] = counts["failed"] = request_part.part.count
            unread = str((read.get("error") or {}).get("message") or "unreadable")[:200]
            return SubBatchSummary(index=index, total=request_part.part.count, counts=counts,
                                   top_errors=[{"code": "SubBatchFailed", "count": request_part.part.count,
                                                "message": message[:300]}],
                                   report_blob=None,
                                   report_error=f"the sub-batch failed and its slice could not be read: {unread}")
        part = ReadRequestPartOutput.from_dict(read).instances
    outcomes = [crashed_outcome(inst, child_instance_id(batch_id, str(inst.get("key"))), message, at)
                for inst in part]
    return SubBatchSummary(index=index, total=len(part), counts=final_counts(outcomes),
                           top_errors=top_errors(outcomes, 50),
                           instances=outcomes if keep_all else outcomes[:max(0, options.report_inline_max)],
                           report_blob=None, report_error="the sub-batch failed before writing its part")


def _request_part(stored: StoredRequest | None, index: int) -> ReadRequestPartInput | None:
    """The slice ``index`` of a stored request (None for an inline one)."""
    if stored is None:
        return None
    return ReadRequestPartInput(container=stored.container, blob=stored.blob, part=stored.parts[index])


def _keys_only(part: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the watch phase needs of each instance when it must report the slice failed: key and name."""
    return [{"key": inst.get("key"), "displayName": inst.get("displayName")} for inst in part]


def _add_counts(summaries: list[SubBatchSummary]) -> dict[str, int]:
    counts = final_counts([])
    for summary in summaries:
        for name, value in summary.counts.items():
            counts[name] = counts.get(name, 0) + int(value)
    return counts


def _counts(total: int, queued: int, running: int, done: list[SubBatchSummary]) -> dict[str, int]:
    counts = progress_counts(total, queued, 0, 0, [])
    del counts["configuring"], counts["monitoring"]
    counts["running"] = running
    for name, value in _add_counts(done).items():
        if name != "total":
            counts[name] = value
    return counts


def _lanes(count: int, setting_up: list[int], watching: list[int], completed: int) -> dict[str, Any]:
    return {"total": count, "settingUp": setting_up, "watching": watching, "completed": completed}


__all__ = ["plan", "run_over_sub_batches"]
