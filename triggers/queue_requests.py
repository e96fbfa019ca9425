"""Queue trigger on ``provisioning-requests``: the same body and validation as the HTTP trigger.

An invalid message is answered by writing a message to ``provisioning-requests-rejected`` (with
every error) and returning normally, so it is *not* retried five times into the poison queue. A
redelivered or duplicated message starts nothing new: the batch id is derived from the request and
``start_once`` finds the existing instance. Infrastructure failures (the Durable client cannot be
reached) raise, so the queue's own retry applies.

Rejection message (JSON): ``{"rejectedAt", "messageId", "dequeueCount", "requestId", "bodySha256",
"error": {"code", "message", "details": [{"path", "message"}]}}``. The original body is not copied
(it could hold a secret pasted where a Key Vault reference belongs); ``bodySha256`` identifies it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from core import names
from core.errors import InvalidRequest
from core.settings import get_settings
from triggers.blueprint import bp
from triggers.submission import BodyNotJson, RequestConflict, prepare_safely, read_json, start_once

log = logging.getLogger("triggers.queue")


@bp.function_name(names.QUEUE_PROVISIONING_REQUEST)
@bp.queue_trigger(arg_name="msg", queue_name=names.QUEUE_PROVISIONING_REQUESTS, connection="AzureWebJobsStorage")
@bp.queue_output(arg_name="rejected", queue_name=names.QUEUE_PROVISIONING_REQUESTS_REJECTED,
                 connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def queue_provisioning_request(msg: func.QueueMessage, rejected: func.Out[str],
                                     client: df.DurableOrchestrationClient) -> None:
    """Start the batch of a valid message; reject an invalid one to the rejected queue."""
    settings = get_settings()  # a configuration error raises: retrying after a fix is right
    raw = msg.get_body() or b""
    meta = {"messageId": msg.id, "dequeueCount": msg.dequeue_count,
            "bodySha256": hashlib.sha256(raw).hexdigest()}
    if len(raw) > settings.request_max_body_bytes:
        _reject(rejected, meta, "RequestTooLarge",
                f"the message is {len(raw)} bytes; the limit is {settings.request_max_body_bytes}")
        return
    try:
        body = read_json(raw)
    except BodyNotJson as exc:
        _reject(rejected, meta, "InvalidJson", "the message is not valid UTF-8 JSON",
                [{"path": "$", "message": str(exc)}])
        return
    if isinstance(body, dict) and isinstance(body.get("requestId"), str):
        meta["requestId"] = body["requestId"][:200]
    try:
        submission = prepare_safely(body, settings)
    except InvalidRequest as exc:
        _reject(rejected, meta, "InvalidRequest", f"{len(exc.problems)} problem(s) in the request",
                [p.to_dict() for p in exc.problems])
        return
    try:
        started = await start_once(client, submission)
    except RequestConflict as exc:
        _reject(rejected, meta, "RequestIdConflict", str(exc))
        return
    log.info("queue message %s: batch %s %s", msg.id, submission.instance_id,
             "started" if started else "already known (duplicate delivery)")


def _reject(out: func.Out[str], meta: dict[str, Any], code: str, message: str,
            details: list[dict] | None = None) -> None:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    record = {"rejectedAt": dt.datetime.now(dt.timezone.utc).isoformat(), **meta, "error": error}
    out.set(json.dumps(record))
    log.warning("rejected queue message %s: %s (%s)", meta.get("messageId"), code, message)
