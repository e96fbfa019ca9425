"""HTTP triggers: submit a provisioning request, read a batch's summary.

``POST /api/provisioning-requests`` (function key): 202 + Durable check-status payload (also for
a re-submission of the same request, which starts nothing new); 400 with every field error; 409
when the ``requestId`` is taken by a different request; 413 over ``REQUEST_MAX_BODY_BYTES``; 415
for a non-JSON content type.

``GET /api/provisioning-requests/{id}`` (function key; ``id`` = the batch id or the caller's
request id): a readable summary - status, counts (``steadyWithFailures`` apart from the clean
``steadyState``), per-instance outcomes with reasons, ids, timings and, for a steady instance,
``failedObjects`` / ``topErrorCodes`` / ``withFailures``. No request input, no secrets, no management URLs (those carry keys).
A batch run over sub-batches (orchestrators/batch_over_parts.py) also shows ``subBatches`` and ``report`` (the blob names);
its ``progress`` while running adds up the running sub-batches' own counts; once it is done the
instances come from the output, or for a batch larger than ``BATCH_REPORT_INLINE_MAX`` from the
report parts in blob storage.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from core import names, report_store
from core.contracts import CONFIGURED, decode_json
from core.instance_ids import (batch_instance_id, child_instance_id, monitor_instance_id, sub_batch_instance_id,
                                sub_batch_watch_instance_id)
from core.errors import ConfigurationError, InvalidRequest
from core.settings import get_settings
from triggers.blueprint import bp
from triggers.responses import error_response, invalid_json_response, json_response
from triggers.submission import (BodyNotJson, RequestConflict, prepare_safely, read_json,
                                 start_once)

log = logging.getLogger("triggers.http")

ROUTE = "provisioning-requests"
_JSON_TYPES = ("application/json",)
_SUMMARY_CONCURRENCY = 16
#: above this many instances a running batch's summary shows counts only (one status read per instance)
_LIVE_DETAIL_LIMIT = 250


@bp.function_name(names.HTTP_SUBMIT_PROVISIONING_REQUEST)
@bp.route(route=ROUTE, methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_submit_provisioning_request(req: func.HttpRequest,
                                           client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Validate the body and start (or find) its ``provision_batch`` instance."""
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        return error_response(500, "InvalidConfiguration", str(exc))
    content_type = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES and not content_type.endswith("+json"):
        return error_response(415, "UnsupportedMediaType", "send the request as application/json")
    raw = req.get_body() or b""
    if len(raw) > settings.request_max_body_bytes:
        return error_response(413, "RequestTooLarge",
                              f"the body is {len(raw)} bytes; the limit is {settings.request_max_body_bytes}",
                              [{"path": "$", "message": f"at most {settings.request_max_body_bytes} bytes "
                                                        f"(got {len(raw)}); split the batch"}])
    try:
        body = read_json(raw)
    except BodyNotJson as exc:
        return invalid_json_response(exc)
    try:
        submission = prepare_safely(body, settings)
    except InvalidRequest as exc:
        return error_response(400, "InvalidRequest", f"{len(exc.problems)} problem(s) in the request",
                              [p.to_dict() for p in exc.problems])
    try:
        started = await start_once(client, submission)
    except RequestConflict as exc:
        return error_response(409, "RequestIdConflict", str(exc))
    log.info("provisioning request %s: %s", submission.instance_id, "started" if started else "already known")
    response: func.HttpResponse = client.create_check_status_response(req, submission.instance_id)
    response.headers["X-Provisioning-Duplicate"] = "false" if started else "true"
    return response


@bp.function_name(names.HTTP_GET_PROVISIONING_REQUEST)
@bp.route(route=ROUTE + "/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_get_provisioning_request(req: func.HttpRequest,
                                        client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """A readable summary of one batch (by batch id or by the caller's request id)."""
    wanted = req.route_params.get("id") or ""
    status = None
    for candidate in dict.fromkeys([wanted, batch_instance_id(wanted)]):
        found = await client.get_status(candidate, show_input=True)
        if found and found.name == names.PROVISION_BATCH:
            status = found
            break
    if status is None:
        return error_response(404, "NotFound", "no provisioning batch with this id")
    return json_response(await _summary(client, status))


async def _summary(client: df.DurableOrchestrationClient, status: Any) -> dict[str, Any]:
    runtime = status.runtime_status.value if status.runtime_status else None
    data = decode_json(status.input_) or {}
    summary: dict[str, Any] = {
        "id": status.instance_id,
        "requestId": data.get("requestId"),
        "runtimeStatus": runtime,
        "createdTime": _time(status.created_time),
        "lastUpdatedTime": _time(status.last_updated_time),
        "progress": (status.custom_status or {}).get("counts") if isinstance(status.custom_status, dict) else None,
    }
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    if runtime in ("Running", "Pending") and isinstance(custom.get("subBatches"), dict):
        summary["progress"] = await _progress_over_sub_batches(client, status.instance_id, custom)
        summary["subBatches"] = custom["subBatches"]
    output = status.output
    if runtime == "Completed" and isinstance(output, dict):
        summary.update({key: output.get(key) for key in ("counts", "succeeded", "durationSeconds", "topErrors")})
        summary["instances"] = [_instance_view(o) for o in output.get("instances") or []]
        if isinstance(output.get("report"), dict):
            summary["report"] = output["report"]
            summary["subBatches"] = output.get("subBatches")
            if output.get("instancesListed") != "all":
                # the output lists the instances not in a clean steady state; every instance is in the parts
                summary.update(await _instances_from_report(output["report"]))
    elif runtime == "Failed":
        summary["error"] = str(output)[:500] if output else "the batch orchestration failed"
    else:
        summary["instances"] = await _live_instances(client, status.instance_id, data)
    return summary


async def _progress_over_sub_batches(client: Any, batch_id: str, custom: dict[str, Any]) -> dict[str, Any]:
    """The batch's counts with its running sub-batches' own split (queued / configuring / monitoring)."""
    counts = dict(custom.get("counts") or {})
    lanes = custom.get("subBatches") or {}
    ids = [sub_batch_instance_id(batch_id, int(i)) for i in lanes.get("settingUp") or []]
    ids += [sub_batch_watch_instance_id(batch_id, int(i)) for i in lanes.get("watching") or []]
    limit = asyncio.Semaphore(_SUMMARY_CONCURRENCY)

    async def one(instance_id: str) -> Any:
        async with limit:
            return await client.get_status(instance_id)

    subs = await asyncio.gather(*(one(i) for i in ids))
    in_parts = {"queued": 0, "configuring": 0, "monitoring": 0}
    for sub in subs:
        sub_counts = (sub.custom_status or {}).get("counts") if sub and isinstance(sub.custom_status, dict) else None
        for name, value in (sub_counts or {}).items():
            if name in in_parts:
                in_parts[name] += int(value)
            elif name not in ("total", "running") and isinstance(value, int):
                counts[name] = counts.get(name, 0) + value
    counts["queued"] = int(counts.get("queued", 0)) + in_parts["queued"]
    counts["configuring"], counts["monitoring"] = in_parts["configuring"], in_parts["monitoring"]
    counts["running"] = in_parts["configuring"] + in_parts["monitoring"]
    return counts


async def _instances_from_report(report: dict[str, Any]) -> dict[str, Any]:
    """Every instance's view, read from the batch's report parts in blob storage (request order)."""
    parts = [p for p in report.get("parts") or [] if p]
    container = str(report.get("container") or "")
    if len(parts) != len(report.get("parts") or []):
        return {"instancesError": "some report parts were not written; the instances listed are those not in a "
                                  "clean steady state"}
    try:
        documents = await asyncio.gather(*(asyncio.to_thread(report_store.read_json, container, p) for p in parts))
    except Exception as exc:  # noqa: BLE001 - storage unreachable: answer with what the output has
        log.warning("could not read a batch report part: %s", type(exc).__name__)
        return {"instancesError": f"the report parts could not be read ({type(exc).__name__}); the instances "
                                  "listed are those not in a clean steady state"}
    views = [_instance_view(o) for doc in documents for o in (doc or {}).get("instances") or []]
    return {"instances": views}


async def _live_instances(client: Any, batch_id: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-instance state while the batch runs, read from the children's own statuses."""
    request = data.get("request") or {}
    instances = request.get("instances") or []
    stored = request.get("stored")
    if isinstance(stored, dict):  # kept in blob storage (triggers/submission.py)
        if int(stored.get("count") or 0) > _LIVE_DETAIL_LIMIT:
            return []
        try:
            raw = await asyncio.to_thread(report_store.read_bytes, str(stored.get("container") or ""),
                                          str(stored.get("blob") or ""))
            instances = report_store.parse_lines(raw or b"")
        except Exception as exc:  # noqa: BLE001 - storage unreachable: the counts still answer
            log.warning("could not read a stored request: %s", type(exc).__name__)
            return []
    if len(instances) > _LIVE_DETAIL_LIMIT:
        return []
    limit = asyncio.Semaphore(_SUMMARY_CONCURRENCY)

    async def one(inst: dict[str, Any]) -> dict[str, Any]:
        child_id = child_instance_id(batch_id, str(inst.get("key")))
        async with limit:
            child = await client.get_status(child_id)
        view = {"instanceKey": inst.get("key"), "displayName": inst.get("displayName"), "outcome": None,
                "step": "queued"}
        if not child:
            return view
        runtime = child.runtime_status.value if child.runtime_status else "Pending"
        output = child.output if isinstance(child.output, dict) else {}
        if runtime == "Completed" and output.get("outcome") == CONFIGURED:
            # configured; the batch watches the job (monitor_job <child id>:monitor)
            async with limit:
                monitor = await client.get_status(monitor_instance_id(child_id))
            custom = monitor.custom_status if monitor and isinstance(monitor.custom_status, dict) else {}
            view.update(step="monitor_job", ids=output.get("ids"), polls=custom.get("polls", 0))
        elif runtime == "Completed" and output:
            return _instance_view(output)
        elif runtime == "Failed":
            view.update(step="failed", outcome="failed", reason="the instance orchestration failed")
        else:
            custom = child.custom_status if isinstance(child.custom_status, dict) else {}
            view["step"] = custom.get("step") or runtime
        return view

    return list(await asyncio.gather(*(one(inst) for inst in instances)))


def _instance_view(outcome: dict[str, Any]) -> dict[str, Any]:
    keys = ("instanceKey", "displayName", "outcome", "reason", "ids", "timings", "polls", "provisioningErrors")
    view = {key: outcome.get(key) for key in keys}
    if outcome.get("outcome") == "steadyState" or outcome.get("failedObjects") is not None:
        # steady with failures reads apart from a clean steady state (failedObjects > 0, topErrorCodes)
        view["failedObjects"] = int(outcome.get("failedObjects") or 0)
        view["topErrorCodes"] = outcome.get("topErrorCodes") or []
        view["withFailures"] = outcome.get("outcome") == "steadyState" and bool(
            outcome.get("failedObjects") or outcome.get("provisioningErrors"))
    for key in ("jobKind", "rolesImported"):  # role-import templates (AWS Single-Account Access)
        if key in outcome:
            view[key] = outcome[key]
    view["step"] = "done"
    return view


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


