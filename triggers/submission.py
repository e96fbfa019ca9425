"""Turn a request body into exactly one ``provision_batch`` orchestration (shared by HTTP and queue).

Idempotency: the batch's instance id is derived from the caller's (required) ``requestId``, so a re-submission, a redelivered queue message or a
duplicate message addresses the *same* instance. Before starting we look the id up; an existing
instance (running or finished) is answered, never restarted - ``start_new`` on a finished id would
replace it (Durable's ``overridableExistingInstanceStates``). Two submissions racing past the
lookup are settled by Durable itself: the second ``start_new`` is refused while the first instance
is pending or running, and we then look it up again.

A different body under an already used ``requestId`` is a conflict (:class:`RequestConflict`),
detected through the request hash stored in the orchestration input.

A request of more instances than one sub-batch (``BATCH_SUB_BATCH_SIZE``) is kept in blob storage
(``BATCH_REPORT_CONTAINER``, ``<batchId>/request-<hash>.jsonl``, JSON Lines) and the batch is
started with a reference, the counts and one byte range per sub-batch
(:class:`core.batch_contracts.StoredRequest`): an orchestration input travels through the batch's
history (and every status query with ``showInput``), and at 10,000 instances it was ~8 MB. The blob
is written before ``start_new`` and named by the request hash: a retry or a duplicate writes the same
bytes to the same name; a different body under the same ``requestId`` writes another name, so
whichever batch starts reads the body it was started with. A request that fits one sub-batch stays
inline (its history holds one slice either way). The blob holds the validated request, whose
credentials are Key Vault references (core/model.py), never secret values.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import asyncio

from core import model, names, report_store
from core.batch_contracts import StoredRequest
from core.errors import InvalidRequest, Problem
from core.contracts import decode_json
from core.instance_ids import batch_instance_id
from core.settings import Settings
from core.workflow_options import WorkflowOptions, workflow_options

log = logging.getLogger("triggers.submission")



class RequestConflict(Exception):
    """The request id is already used by a batch with a different request body."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"requestId is already used by batch {instance_id} with a different request")
        self.instance_id = instance_id


class BodyNotJson(Exception):
    """The body is not UTF-8 JSON that can be read; ``str(exc)`` says where, never quoting the body."""


def read_json(raw: bytes) -> Any:
    """The JSON document in ``raw``, or :class:`BodyNotJson`.

    RecursionError is caught too: a small body of thousands of nested brackets makes ``json.loads``
    recurse past Python's limit, and must be a 400 (or a rejected message), not a crash.
    """
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BodyNotJson("the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BodyNotJson(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise BodyNotJson("nested too deeply" if isinstance(exc, RecursionError) else "not valid JSON") from None


def prepare_safely(body: Any, settings: Settings) -> Submission:
    """:func:`prepare`, with any unexpected failure turned into a request problem (logged for operators).

    A request that makes validation itself fail is still the request's problem to the caller (400 /
    the rejected queue), never a 500 or a poison message; the log keeps the error type, not the body.
    """
    try:
        return prepare(body, settings)
    except InvalidRequest:
        raise
    except Exception as exc:  # noqa: BLE001 - reported to the caller as a request problem
        log.error("could not validate a provisioning request: %s", type(exc).__name__)
        raise InvalidRequest([Problem("$", f"the request could not be read ({type(exc).__name__})")]) from None


@dataclass(frozen=True)
class Submission:
    """A validated request, ready to start: its batch id and the orchestration input."""

    instance_id: str
    input: dict[str, Any]
    #: the request as JSON Lines when it is kept in blob storage (``input["request"]["stored"]`` names it)
    stored: bytes | None = None

    @property
    def request_hash(self) -> str:
        return str(self.input["requestHash"])


def prepare(body: Any, settings: Settings) -> Submission:
    """Validate ``body`` (raises ``core.errors.InvalidRequest`` listing every problem) and build the input."""
    request = model.parse_request(body, settings.request_max_instances)
    # the orchestrators address each instance by its key (derived from the display name)
    specs: list[dict[str, Any]] = [{**spec.to_dict(), "key": spec.key} for spec in request.instances]
    normalized = {"requestId": request.request_id, "instances": specs}
    canonical = json.dumps(normalized, sort_keys=True, separators=(",", ":"))
    request_hash = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    request_id = request.request_id
    instance_id = batch_instance_id(request_id)
    options = workflow_options(settings)
    parsed = WorkflowOptions.from_dict(options)
    size = max(1, parsed.sub_batch_size)
    if len(specs) <= size:
        return Submission(instance_id=instance_id,
                          input={"requestId": request_id, "requestHash": request_hash, "request": normalized,
                                 "options": options})
    data, parts = report_store.request_lines(specs, size)
    templates: dict[str, Any] = {}
    for inst in specs:
        template = inst.get("applicationTemplate") or {}
        templates.setdefault(json.dumps(template, sort_keys=True), template)
    stored = StoredRequest.from_dict({
        "container": parsed.report_container, "blob": report_store.request_blob_name(instance_id, request_hash),
        "count": len(specs), "bytes": len(data), "templates": list(templates.values()),
        "parts": parts})
    return Submission(instance_id=instance_id,
                      input={"requestId": request_id, "requestHash": request_hash,
                             "request": {"requestId": request_id, "stored": stored.to_dict()}, "options": options},
                      stored=data)


async def start_once(client: Any, submission: Submission) -> bool:
    """Start the batch unless it exists; return True if this call started it.

    Raises :class:`RequestConflict` when the id belongs to a batch with another request body.
    """
    existing = await client.get_status(submission.instance_id, show_input=True)
    if existing:
        _check_same_request(existing, submission)
        return False
    if submission.stored is not None:
        ref = submission.input["request"]["stored"]
        await asyncio.to_thread(report_store.write_bytes, ref["container"], ref["blob"], submission.stored)
    try:
        await client.start_new(names.PROVISION_BATCH, submission.instance_id, submission.input)
    except Exception:
        # most likely a concurrent submission won the race; if so, answer with its instance
        existing = await client.get_status(submission.instance_id, show_input=True)
        if not existing:
            raise
        _check_same_request(existing, submission)
        return False
    log.info("started %s %s", names.PROVISION_BATCH, submission.instance_id)
    return True


def _check_same_request(status: Any, submission: Submission) -> None:
    stored = decode_json(status.input_)
    if isinstance(stored, dict) and stored.get("requestHash") not in (None, submission.request_hash):
        raise RequestConflict(submission.instance_id)
