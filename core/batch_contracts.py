"""Contracts of the batch over sub-batches (docs/architecture.md, data flow): ``provision_batch`` -> ``provision_sub_batch``
-> ``write_batch_report``. Same rules as :mod:`core.contracts` (frozen dataclasses, camelCase JSON)."""

from __future__ import annotations

import dataclasses
from typing import Any

from core.contracts import ACTIVITY_CONTRACTS, Contract, Input, InstanceOutcome, always, listed, mapped


@dataclasses.dataclass(frozen=True, kw_only=True)
class RequestPart(Contract):
    """One slice of a stored request: bytes ``[offset, offset + length)`` of the request blob, ``count``
    JSON lines (one instance each, request order), ``sha256`` of those bytes (checked when read)."""

    offset: int = 0
    length: int = 0
    count: int = 0
    sha256: str = always("")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoredRequest(Contract):
    """A validated request kept in blob storage (``triggers/submission.py``) instead of the batch's input.

    The batch's input holds this reference: the blob (JSON Lines, ``<batchId>/request-<hash>.jsonl``
    in ``BATCH_REPORT_CONTAINER``), the instance count, the distinct application templates (resolved
    once by the batch) and one :class:`RequestPart` per sub-batch; each sub-batch reads its own slice
    (``read_request_part``). Instances hold Key Vault references, never secret values (core/model.py).
    """

    container: str = always("")
    blob: str = always("")
    count: int = 0
    bytes: int = 0
    templates: list[dict[str, Any]] = listed()
    parts: list[RequestPart] = listed()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReadRequestPartInput(Input):
    """The input of ``read_request_part``: one slice of a stored request."""

    container: str
    blob: str
    part: RequestPart


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReadRequestPartOutput(Contract):
    """The slice's instances, in request order (the validated, secret-free form of core/model.py)."""

    instances: list[dict[str, Any]] = listed()


@dataclasses.dataclass(frozen=True, kw_only=True)
class SubBatchInput(Contract):
    """The input of ``provision_sub_batch``: a slice of the batch's instances and its share of the bound.

    ``phase``: ``setup`` (provision ``instances``, at most ``maxInFlight`` at once, and return their
    outcomes: ``configured`` or failed) or ``watch`` (watch the jobs of the ``configured`` ones among
    ``outcomes`` - the setup phase's outcomes, read from ``setupBlob`` when given (so they do not
    travel through the batch's history) - write the report part and return the summary).

    ``templates``: the batch's resolved templates (key -> ``resolve_application_template`` result) for
    the keys this slice uses. ``keepAll``: return every outcome (a batch small enough to list them all
    in its output); else only those not in a clean steady state, at most ``keepMax``.

    ``requestPart``: for a request kept in blob storage (:class:`StoredRequest`), the slice to read
    (``read_request_part``) instead of ``instances``, so no slice of the request travels through the
    batch's history; the setup phase provisions it, the watch phase reads it only to name the
    instances of a slice whose setup outcomes cannot be read.
    """

    batch_id: str = always("")
    index: int = 0
    phase: str = "setup"
    instances: list[dict[str, Any]] = listed()
    outcomes: list[InstanceOutcome] = listed()
    setup_blob: str | None = None
    templates: dict[str, dict[str, Any]] = mapped()
    options: dict[str, Any] = mapped()
    max_in_flight: int = 1
    keep_all: bool = False
    keep_max: int = 0
    report_container: str = always("")
    request_part: ReadRequestPartInput | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SubBatchSummary(Contract):
    """The output of ``provision_sub_batch``: counts, top errors, the instances kept, its report part."""

    index: int = 0
    total: int = 0
    counts: dict[str, int] = mapped()
    top_errors: list[dict[str, Any]] = listed()
    instances: list[InstanceOutcome] = listed()
    report_blob: str | None = always()
    report_error: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class WriteBatchReportInput(Input):
    """The input of ``write_batch_report``: one JSON document to one blob (overwritten: idempotent)."""

    container: str
    blob: str
    document: dict[str, Any] = mapped()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReadBatchReportInput(Input):
    """The input of ``read_batch_report``: the blob to read (its JSON comes back as ``document``)."""

    container: str
    blob: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class WriteBatchReportOutput(Contract):
    container: str | None = always()
    blob: str | None = always()
    bytes: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReadBatchReportOutput(Contract):
    document: dict[str, Any] = mapped()


def _register() -> None:
    from core import names

    ACTIVITY_CONTRACTS.update({
        names.WRITE_BATCH_REPORT: (WriteBatchReportInput, WriteBatchReportOutput),
        names.READ_BATCH_REPORT: (ReadBatchReportInput, ReadBatchReportOutput),
        names.READ_REQUEST_PART: (ReadRequestPartInput, ReadRequestPartOutput),
    })


_register()

__all__ = ["ReadBatchReportInput", "ReadBatchReportOutput", "ReadRequestPartInput", "ReadRequestPartOutput",
           "RequestPart", "StoredRequest", "WriteBatchReportOutput", "SubBatchInput", "SubBatchSummary", "WriteBatchReportInput"]
