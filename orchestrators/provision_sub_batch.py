"""``provision_sub_batch``: one slice of a batch (``BATCH_SUB_BATCH_SIZE`` instances), so no history grows with N.

Contract
--------
Input: :class:`core.batch_contracts.SubBatchInput` - the slice's instances (validated, secret-free),
the batch's resolved templates for them, the options, and this sub-batch's share of the batch's
in-flight bound (``maxInFlight``). Instance orchestrations keep their ids ``<batchId>:<key>`` (and
``<batchId>:<key>:monitor``), exactly as in a batch without sub-batches, so re-submission and crash
recovery find them.

Output: :class:`core.batch_contracts.SubBatchSummary` - counts, top errors, the outcomes the batch
keeps (all of them for a batch small enough to list every instance, else those not in a clean
steady state, worst first, at most ``keepMax``), and the name of this slice's report part: every
outcome of the slice, written to blob storage by ``write_batch_report`` (``<batchId>/part-<n>.json``).

Custom status while running: the same ``{"phase", "counts"}`` as a batch's, for this slice (the
batch's ``GET`` adds up the running sub-batches' counts).
"""

from __future__ import annotations

from typing import Any, Generator

import azure.durable_functions as df

from core import names, report_store
from core.batch_contracts import SubBatchInput, SubBatchSummary, WriteBatchReportInput
from core.instance_ids import child_instance_id
from core.times import iso
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step
from orchestrators.blueprint import bp
from orchestrators.provision_batch import run_instances
from orchestrators.report import final_counts, top_errors, worst_first


@bp.function_name(names.PROVISION_SUB_BATCH)
@bp.orchestration_trigger(context_name="context")
def provision_sub_batch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Provision and watch one slice of a batch; write its report part; return its summary."""
    given = SubBatchInput.from_dict(context.get_input())
    options = WorkflowOptions.from_dict(given.options)
    started_at = iso(context.current_utc_datetime)
    outcomes = yield from run_instances(context, given.batch_id, given.instances, given.templates, given.options,
                                        given.max_in_flight, started_at)
    ordered = [outcomes[child_instance_id(given.batch_id, str(inst.get("key")))] for inst in given.instances]
    counts = final_counts(ordered)
    context.set_custom_status({"phase": "writing report", "counts": {**counts, "queued": 0, "configuring": 0,
                                                                     "monitoring": 0, "running": 0}})
    blob = report_store.part_blob_name(given.batch_id, given.index)
    document = {"batchId": given.batch_id, "index": given.index, "instances": [o.to_dict() for o in ordered]}
    written = yield from call_step(context, names.WRITE_BATCH_REPORT,
                                   WriteBatchReportInput(container=given.report_container, blob=blob,
                                                         document=document), options)
    error = None if written.get("ok") else str((written.get("error") or {}).get("message") or "not written")[:300]
    kept = ordered if given.keep_all else worst_first(ordered)[:max(0, given.keep_max)]
    context.set_custom_status({"phase": "completed", "counts": {**counts, "queued": 0, "configuring": 0,
                                                                "monitoring": 0, "running": 0}})
    return SubBatchSummary(index=given.index, total=len(ordered), counts=counts, top_errors=top_errors(ordered, 50),
                           instances=kept, report_blob=None if error else blob, report_error=error).to_dict()


__all__ = ["provision_sub_batch"]
