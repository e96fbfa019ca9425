"""Activity of the batch-report family: write one JSON document (a report part or the batch summary)
to blob storage (:mod:`core.report_store`). The document holds outcomes (ids, codes, messages), never
a secret; the write overwrites the same blob name, so a retry is harmless."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import names, report_store, steps
from core.batch_contracts import WriteBatchReportInput

bp = df.Blueprint()


def write_batch_report_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = WriteBatchReportInput.from_dict(p)
    size = report_store.write_json(i.container, i.blob, i.document)
    return {"container": i.container, "blob": i.blob, "bytes": size}


BODIES = {names.WRITE_BATCH_REPORT: write_batch_report_body}


@bp.function_name(names.WRITE_BATCH_REPORT)
@bp.activity_trigger(input_name="payload")
def write_batch_report(payload: dict) -> dict:
    return run(names.WRITE_BATCH_REPORT, payload, write_batch_report_body)
