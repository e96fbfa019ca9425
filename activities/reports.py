"""Activities of the batch-report family: write one JSON document (a report part, a slice's setup
outcomes or the batch summary) to blob storage (:mod:`core.report_store`), read one back, read one
slice of a stored request. The document holds outcomes (ids, codes, messages), never
a secret; the write overwrites the same blob name, so a retry is harmless."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import fleet, names, report_store, steps
from core.batch_contracts import (ReadBatchReportInput, ReadBatchReportOutput, ReadRequestPartInput,
                                  ReadRequestPartOutput, WriteBatchReportInput, WriteBatchReportOutput)
from core.errors import PermanentError

bp = df.Blueprint()


def write_batch_report_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = WriteBatchReportInput.from_dict(p)
    size = report_store.write_json(i.container, i.blob, i.document)
    # a sub-batch's report part holds its instances' final outcomes: each one's lastBatch in the fleet
    # registry (best effort; no orchestration step, so recorded histories replay unchanged)
    batch_id, index = i.document.get("batchId"), i.document.get("index")
    if isinstance(batch_id, str) and isinstance(index, int) and i.blob == report_store.part_blob_name(batch_id, index):
        fleet.record_batch_part(i.document)
    return WriteBatchReportOutput(container=i.container, blob=i.blob, bytes=size).to_dict()


def read_batch_report_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = ReadBatchReportInput.from_dict(p)
    document = report_store.read_json(i.container, i.blob)
    if document is None:
        raise PermanentError(f"no blob {i.blob} in {i.container}", code="ReportNotFound")
    return ReadBatchReportOutput(document=document).to_dict()


def read_request_part_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    """One slice of a stored request (core.batch_contracts.StoredRequest): its byte range, checked
    against the sha256 and count recorded when the request was stored."""
    i = ReadRequestPartInput.from_dict(p)
    chunk = report_store.read_bytes(i.container, i.blob, i.part.offset, i.part.length)
    if chunk is None:
        raise PermanentError(f"no stored request {i.blob} in {i.container}", code="RequestNotFound")
    try:
        instances = report_store.parse_lines(chunk, i.part.count, i.part.sha256)
    except (report_store.DamagedPart, ValueError) as exc:
        raise PermanentError(f"stored request {i.blob}: {exc}", code="RequestPartDamaged") from None
    return ReadRequestPartOutput(instances=instances).to_dict()


BODIES = {names.WRITE_BATCH_REPORT: write_batch_report_body, names.READ_BATCH_REPORT: read_batch_report_body,
          names.READ_REQUEST_PART: read_request_part_body}


@bp.function_name(names.WRITE_BATCH_REPORT)
@bp.activity_trigger(input_name="payload")
def write_batch_report(payload: dict) -> dict:
    return run(names.WRITE_BATCH_REPORT, payload, write_batch_report_body)


@bp.function_name(names.READ_BATCH_REPORT)
@bp.activity_trigger(input_name="payload")
def read_batch_report(payload: dict) -> dict:
    return run(names.READ_BATCH_REPORT, payload, read_batch_report_body)


@bp.function_name(names.READ_REQUEST_PART)
@bp.activity_trigger(input_name="payload")
def read_request_part(payload: dict) -> dict:
    return run(names.READ_REQUEST_PART, payload, read_request_part_body)
