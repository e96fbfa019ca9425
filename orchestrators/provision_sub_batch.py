"""``provision_sub_batch``: one slice of a batch (``BATCH_SUB_BATCH_SIZE`` instances), so no history grows with N.

Two phases, two orchestrations per slice (ids ``<batchId>:part-<n>`` and ``<batchId>:part-<n>:watch``),
so a slice holds one of the batch's setup lanes only while it writes to Graph, never while its jobs
run their first cycle (which can take hours: a slow cycle must not hold back the rest of the fleet).

Contract
--------
Input: :class:`core.batch_contracts.SubBatchInput`. Instance orchestrations keep their ids
``<batchId>:<key>`` (and ``<batchId>:<key>:monitor``), exactly as in a batch without sub-batches, so
re-submission and crash recovery find them.

* ``setup``: provision the slice's instances (given, or for a request kept in blob storage read by
  ``read_request_part``: ``requestPart``; the batch's resolved templates given), at most
  ``maxInFlight`` at once (this slice's share of ``BATCH_MAX_IN_FLIGHT``). Output: a
  :class:`~core.batch_contracts.SubBatchSummary` naming the blob ``<batchId>/setup-<n>.json`` that
  holds every outcome of the slice in request order: ``configured`` (setup done, job started) or
  failed. (Only if that write fails do the outcomes come back inline.)
* ``watch``: read the setup outcomes back (``read_batch_report``; the instances are in its input so that
  an unreadable blob still yields one failed outcome each), watch the jobs of the ``configured``
  ones (``monitor_job``, not bounded:
  reads), write every outcome of the slice to blob storage (``write_batch_report``,
  ``<batchId>/part-<n>.json``). Output: the summary - counts, top errors, the outcomes the batch keeps
  (all of them for a batch small enough to list every instance, else those not in a clean steady
  state, worst first, at most ``keepMax``) and the part's blob name.

Custom status while running: the same ``{"phase", "counts"}`` as a batch's, for this slice (the
batch's ``GET`` adds up the running sub-batches' counts). In the setup phase a configured instance
counts as ``monitoring`` (its job runs; the watch phase follows).
"""

from __future__ import annotations

from typing import Any, Generator

import azure.durable_functions as df

from core import names, report_store
from core.batch_contracts import (ReadBatchReportInput, ReadBatchReportOutput, ReadRequestPartOutput, SubBatchInput,
                                  SubBatchSummary, WriteBatchReportInput)
from core.contracts import CONFIGURED, InstanceOutcome
from core.instance_ids import child_instance_id
from core.times import iso
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step
from orchestrators.blueprint import bp
from orchestrators.provision_batch import run_instances
from orchestrators.report import crashed_outcome, final_counts, top_errors, worst_first

SETUP = "setup"
WATCH = "watch"


@bp.function_name(names.PROVISION_SUB_BATCH)
@bp.orchestration_trigger(context_name="context")
def provision_sub_batch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Set up one slice of a batch, or watch its jobs and write its report part (see module docstring)."""
    given = SubBatchInput.from_dict(context.get_input())
    started_at = iso(context.current_utc_datetime)
    if given.phase == SETUP:
        instances = list(given.instances)
        if given.request_part is not None:
            # the batch's request is in blob storage: read this slice (its history holds the slice, the batch's not)
            read = yield from call_step(context, names.READ_REQUEST_PART, given.request_part,
                                        WorkflowOptions.from_dict(given.options))
            if not read.get("ok"):
                # fails this orchestration: the batch reports the slice's instances failed (_failed_part)
                raise RuntimeError("the slice of the stored request could not be read: "
                                   f"{str((read.get('error') or {}).get('message') or 'unknown')[:300]}")
            instances = ReadRequestPartOutput.from_dict(read).instances
        outcomes = yield from run_instances(context, given.batch_id, instances, given.templates,
                                            given.options, given.max_in_flight, started_at, watch=False)
        ordered = [outcomes[child_instance_id(given.batch_id, str(inst.get("key")))] for inst in instances]
        context.set_custom_status({"phase": "set up", "counts": _done(ordered)})
        # the outcomes go to the watch phase through blob storage, not through the batch's history
        setup_blob = report_store.setup_blob_name(given.batch_id, given.index)
        written = yield from call_step(context, names.WRITE_BATCH_REPORT,
                                       WriteBatchReportInput(container=given.report_container, blob=setup_blob,
                                                             document={"instances": [o.to_dict() for o in ordered]}),
                                       WorkflowOptions.from_dict(given.options))
        if written.get("ok"):
            return SubBatchSummary(index=given.index, total=len(ordered), report_blob=setup_blob).to_dict()
        return SubBatchSummary(index=given.index, total=len(ordered), instances=ordered).to_dict()

    options = WorkflowOptions.from_dict(given.options)
    given_outcomes = list(given.outcomes)
    if given.setup_blob:
        read = yield from call_step(context, names.READ_BATCH_REPORT,
                                    ReadBatchReportInput(container=given.report_container, blob=given.setup_blob),
                                    options)
        if read.get("ok"):
            document = ReadBatchReportOutput.from_dict(read).document
            given_outcomes = [InstanceOutcome.from_dict(o) for o in document.get("instances") or []]
        else:
            named = list(given.instances)
            if not named and given.request_part is not None:
                part = yield from call_step(context, names.READ_REQUEST_PART, given.request_part, options)
                named = ReadRequestPartOutput.from_dict(part).instances if part.get("ok") else []
            return _unreadable(given, named, read, started_at)
    to_watch = tuple(o for o in given_outcomes if o.outcome == CONFIGURED)
    watched = yield from run_instances(context, given.batch_id, [], {}, given.options, 1, started_at,
                                       set_up_before=to_watch)
    ordered = [watched.get(str(o.orchestration_id), o) for o in given_outcomes]
    counts = final_counts(ordered)
    context.set_custom_status({"phase": "writing report", "counts": _done(ordered)})
    blob = report_store.part_blob_name(given.batch_id, given.index)
    document = {"batchId": given.batch_id, "index": given.index, "instances": [o.to_dict() for o in ordered]}
    written = yield from call_step(context, names.WRITE_BATCH_REPORT,
                                   WriteBatchReportInput(container=given.report_container, blob=blob,
                                                         document=document), options)
    error = None if written.get("ok") else str((written.get("error") or {}).get("message") or "not written")[:300]
    kept = ordered if given.keep_all else worst_first(ordered)[:max(0, given.keep_max)]
    context.set_custom_status({"phase": "completed", "counts": _done(ordered)})
    return SubBatchSummary(index=given.index, total=len(ordered), counts=counts, top_errors=top_errors(ordered, 50),
                           instances=kept, report_blob=None if error else blob, report_error=error).to_dict()


def _unreadable(given: SubBatchInput, named: list[dict[str, Any]], read: dict[str, Any], at: str) -> dict[str, Any]:
    """The setup outcomes could not be read back: the slice's instances are reported failed (their
    orchestrations ran; a re-submission under a new requestId finds and reuses their objects)."""
    message = f"the setup outcomes could not be read: {(read.get('error') or {}).get('message') or 'unknown'}"
    outcomes = [crashed_outcome(inst, child_instance_id(given.batch_id, str(inst.get("key"))), message, at)
                for inst in named]
    if not named and given.request_part is not None:  # neither the outcomes nor the slice could be read
        counts = final_counts([])
        counts["total"] = counts["failed"] = given.request_part.part.count
        return SubBatchSummary(index=given.index, total=given.request_part.part.count, counts=counts,
                               report_error=message[:300]).to_dict()
    return SubBatchSummary(index=given.index, total=len(outcomes), counts=final_counts(outcomes),
                           top_errors=top_errors(outcomes, 50), instances=outcomes[:max(0, given.keep_max)],
                           report_error=message[:300]).to_dict()


def _done(ordered: list[Any]) -> dict[str, int]:
    finished = [o for o in ordered if o.outcome != CONFIGURED]
    return {**final_counts(finished), "total": len(ordered), "queued": 0, "configuring": 0,
            "monitoring": len(ordered) - len(finished), "running": len(ordered) - len(finished)}


__all__ = ["SETUP", "WATCH", "provision_sub_batch"]
