"""Durable HTTP management API (``/runtime/webhooks/durabletask/...``) and the durableClient binding.

Routes, status codes and bodies follow the extension's ``HttpApiHandler`` as summarised in the
note "Client binding and HTTP API" in devhost/durable/README.md (sources linked there), so the real
``DurableOrchestrationClient`` works unchanged. The same handlers are served twice, as in Azure:

* ``/runtime/webhooks/durabletask/...``, the public webhook: it needs the ``durabletask_extension``
  system key or the master key (``code`` query parameter or ``x-functions-key`` header), else 401.
  The binding's creation and management URLs (and so ``create_check_status_response``) carry the
  system key as ``code=``.
* ``/durabletask/...``, the client's ``rpcBaseUrl`` (with a trailing ``/`` because the client
  concatenates ``instances/...`` onto it): keyless, but it only answers peers on this machine
  (loopback, or this server's own address), like the extension's local RPC endpoint
  ``http://127.0.0.1:17071/durabletask/``; others get 404.

Parity choices: inputs and event data are stored as the extension stores them (the client's
double encoding is kept, so status ``input`` of a client-started instance is a string and raised
event data reaches the orchestrator as a string,
https://github.com/Azure/azure-functions-durable-python/issues/295); times are
``yyyy-MM-ddTHH:mm:ssZ``; ``historyEvents`` (not ``history``) is folded as the extension does.
"""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import secrets
from typing import Any, Awaitable, Callable, Protocol
from urllib.parse import quote

from aiohttp import web

from devhost.durable import history as h
from devhost.durable.clock import Clock
from devhost.durable.errors import (
    InstanceExistsError,
    InstanceGone,
    InstanceNotFound,
    InvalidInstanceIdError,
    UnknownFunctionError,
)
from devhost.durable.states import TERMINAL_STATES
from devhost.durable.store import InstanceRow, dumps, loads_stored


class DurableEngine(Protocol):
    """What the API needs of the engine (``devhost.durable.engine.DurableEngine`` provides it).

    devhost/server.py passes the engine in (``make_routes(engine)``); this module never imports the
    engine, so the two cannot form an import cycle (tests/devhost/test_durable_import_graph.py).
    """

    task_hub: str
    system_key: str | None
    master_key: str | None
    clock: Clock
    store: Any  # devhost.durable.store.Store while the engine runs

    def get_instance(self, instance_id: str) -> InstanceRow | None: ...
    def get_history(self, instance_id: str) -> list[dict]: ...
    def advance_clock(self, seconds: float) -> None: ...
    async def start_new(self, name: str, instance_id: str | None = None, input_text: str | None = None,
                        version: str | None = None) -> str: ...
    async def wait_for_instance(self, instance_id: str, timeout: float) -> InstanceRow: ...
    async def raise_event(self, instance_id: str, event_name: str, input_text: str | None) -> None: ...
    async def terminate(self, instance_id: str, reason: str | None) -> None: ...
    async def suspend(self, instance_id: str, reason: str | None) -> None: ...
    async def resume(self, instance_id: str, reason: str | None) -> None: ...
    async def restart(self, instance_id: str, new_instance_id: bool = True) -> str: ...
    async def rewind(self, instance_id: str, reason: str | None) -> None: ...
    async def purge(self, instance_ids: list[str]) -> int: ...

PREFIX = "/runtime/webhooks/durabletask"
RPC_PREFIX = "/durabletask"  # the SDK client's rpcBaseUrl path (the extension's local RPC endpoint)
DEFAULT_PAGE_SIZE = 100  # OrchestrationStatusQueryCondition.PageSize (the list API's ?top= default)
CONNECTION = "Storage"  # UNCONFIRMED default connection name in the URLs; only echoed back


# ---------------------------------------------------------------------------------- formatting
def _format_time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_payload(row: InstanceRow, *, show_input: bool = True, history: list[dict] | None = None) -> dict:
    payload = {"name": row.name, "instanceId": row.instance_id, "runtimeStatus": row.status,
               "input": loads_stored(row.input) if show_input else None,
               "customStatus": loads_stored(row.custom_status), "output": loads_stored(row.output),
               "createdTime": _format_time(row.created_time), "lastUpdatedTime": _format_time(row.last_updated_time)}
    if history is not None:
        payload["historyEvents"] = history
    return payload


def fold_history(events: list[dict], *, show_output: bool, show_input: bool) -> list[dict]:
    """The extension's ``historyEvents``: names for EventType, scheduling folded into completions."""
    completions = {ev.get("TaskScheduledId") for ev in events
                   if ev["EventType"] in (h.TASK_COMPLETED, h.TASK_FAILED, h.SUB_ORCHESTRATION_COMPLETED,
                                          h.SUB_ORCHESTRATION_FAILED)}
    scheduled: dict[int, dict] = {}
    folded: list[dict] = []
    for ev in events:
        kind = ev["EventType"]
        if kind in (h.ORCHESTRATOR_STARTED, h.ORCHESTRATOR_COMPLETED):
            continue
        if kind in (h.TASK_SCHEDULED, h.SUB_ORCHESTRATION_CREATED):
            scheduled[ev["EventId"]] = ev
            if ev["EventId"] in completions:
                continue
        item = {"EventType": h.EVENT_TYPE_NAMES.get(kind, str(kind)), "Timestamp": ev["Timestamp"]}
        if kind == h.EXECUTION_STARTED:
            item["FunctionName"] = ev.get("Name")
            if show_input:
                item["Input"] = loads_stored(ev.get("Input"))
        elif kind in (h.TASK_COMPLETED, h.TASK_FAILED, h.SUB_ORCHESTRATION_COMPLETED, h.SUB_ORCHESTRATION_FAILED):
            source = scheduled.get(ev.get("TaskScheduledId"), {})
            item["FunctionName"] = source.get("Name")
            item["ScheduledTime"] = source.get("Timestamp")
            if source.get("InstanceId"):
                item["InstanceId"] = source["InstanceId"]
            if show_input:
                item["Input"] = loads_stored(source.get("Input"))
            if kind in (h.TASK_COMPLETED, h.SUB_ORCHESTRATION_COMPLETED):
                if show_output:
                    item["Result"] = loads_stored(ev.get("Result"))
            else:
                item["Reason"] = ev.get("Reason")
                item["Details"] = ev.get("Details")
        elif kind in (h.TASK_SCHEDULED, h.SUB_ORCHESTRATION_CREATED):
            item["Name"] = ev.get("Name")
            if show_input:
                item["Input"] = loads_stored(ev.get("Input"))
        elif kind == h.EXECUTION_COMPLETED:
            code = ev.get("OrchestrationStatus")
            item["OrchestrationStatus"] = next((k for k, v in h.STATUS_CODE.items() if v == code), code)
            if show_output:
                item["Result"] = loads_stored(ev.get("Result"))
        else:
            for key, value in ev.items():
                if key not in ("EventType", "EventId", "IsPlayed", "Timestamp"):
                    item[key] = loads_stored(value) if key in ("Input", "Result") else value
        folded.append(item)
    return folded


def _management_urls(base: str, instance_id: str, hub: str, key: str | None, rewind: bool = True) -> dict:
    query = f"taskHub={quote(hub)}&connection={CONNECTION}" + (f"&code={key}" if key else "")
    instance = f"{base}/instances/{instance_id}"
    urls = {"id": instance_id,
            "statusQueryGetUri": f"{instance}?{query}",
            "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
            "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
            "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
            "purgeHistoryDeleteUri": f"{instance}?{query}",
            "restartPostUri": f"{instance}/restart?{query}",
            "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
            "resumePostUri": f"{instance}/resume?reason={{text}}&{query}"}
    if not rewind:
        urls.pop("rewindPostUri")
    return urls


def client_binding_json(engine: "DurableEngine", base_url: str) -> str:
    """:func:`client_binding` as the JSON text the ``durableClient`` binding receives."""
    return json.dumps(client_binding(engine, base_url))


def client_binding(engine: "DurableEngine", base_url: str) -> dict:
    """The ``durableClient`` binding value (note "Client binding and HTTP API" in devhost/durable/README.md). ``INSTANCEID`` is the placeholder the client replaces."""
    base = base_url.rstrip("/") + PREFIX
    key = engine.system_key
    code_only = f"?code={key}" if key else ""
    code_more = f"&code={key}" if key else ""
    return {
        "taskHubName": engine.task_hub,
        "creationUrls": {
            "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]{code_only}",
            "createAndWaitOnNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
                                                 f"?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}{code_more}",
        },
        "managementUrls": _management_urls(base, "INSTANCEID", engine.task_hub, key),
        "baseUrl": base,
        "requiredQueryStringParameters": f"code={key}" if key else "",
        "rpcBaseUrl": base_url.rstrip("/") + RPC_PREFIX + "/",
    }


# ---------------------------------------------------------------------------------- handlers
def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    for key, value in request.query.items():
        if key.lower() == name.lower():
            return value.strip().lower() == "true"
    return default


def _error(status: int, message: str, exc_message: str, exc_type: str) -> web.Response:
    return web.json_response({"Message": message, "ExceptionMessage": exc_message, "ExceptionType": exc_type,
                              "StackTrace": None}, status=status)


def _bad_request(exc_message: str) -> web.Response:
    return _error(400, "One or more of the arguments submitted is incorrect", exc_message, "System.ArgumentException")


def _body_input(body: bytes) -> str | None:
    """A request body as stored input text (None when empty); ValueError when it is not JSON."""
    if not body.strip():
        return None
    return dumps(json.loads(body))


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return h.parse_iso(text).timestamp()


class _Handlers:
    def __init__(self, engine: "DurableEngine") -> None:
        self.engine = engine

    def _base(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}{PREFIX}"

    def _check_status(self, request: web.Request, instance_id: str) -> web.Response:
        payload = _management_urls(self._base(request), instance_id, self.engine.task_hub, self.engine.system_key,
                                   rewind=False)
        return web.json_response(payload, status=202, headers={"Location": payload["statusQueryGetUri"],
                                                               "Retry-After": "10"})

    async def start(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        instance_id = request.match_info.get("instance_id") or None
        body = await request.read()
        try:
            input_text = _body_input(body)
        except ValueError:
            return _bad_request("The request content is not valid JSON.")
        try:
            instance_id = await self.engine.start_new(name, instance_id, input_text, request.query.get("version"))
        except (UnknownFunctionError, InvalidInstanceIdError) as exc:
            return _bad_request(str(exc))
        except InstanceExistsError as exc:
            return _error(500, "Something went wrong while processing your request", str(exc),
                          "System.InvalidOperationException")
        timeout = request.query.get("timeout")
        if timeout:  # createAndWaitOnNewInstancePostUri: answer like wait_for_completion_or_create_check_status
            try:
                row = await self.engine.wait_for_instance(instance_id, float(timeout))
            except (TimeoutError, ValueError):
                return self._check_status(request, instance_id)
            if row.status == "Completed":
                return web.Response(status=200, text=row.output or "null", content_type="application/json")
            return web.json_response(status_payload(row), status=500 if row.status == "Failed" else 200)
        return self._check_status(request, instance_id)

    async def status(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        row = self.engine.get_instance(instance_id)
        if row is None:
            return web.Response(status=404)
        show_input = _flag(request, "showInput", True)
        history = None
        if _flag(request, "showHistory"):
            history = fold_history(self.engine.get_history(instance_id), show_output=_flag(request, "showHistoryOutput"),
                                   show_input=show_input)
        payload = status_payload(row, show_input=show_input, history=history)
        if row.status in TERMINAL_STATES:
            code = 500 if (row.status == "Failed" and _flag(request, "returnInternalServerErrorOnFailure")) else 200
            return web.json_response(payload, status=code)
        # the extension answers with the request's own URL (its key included) as Location
        return web.json_response(payload, status=202, headers={"Location": str(request.url), "Retry-After": "5"})

    def _filters(self, request: web.Request) -> dict:
        statuses = None
        raw = request.query.get("runtimeStatus")
        if raw:
            statuses = [s.strip() for s in raw.split(",") if s.strip()]
        return {"statuses": statuses, "created_from": _parse_time(request.query.get("createdTimeFrom")),
                "created_to": _parse_time(request.query.get("createdTimeTo")),
                "prefix": request.query.get("instanceIdPrefix")}

    async def list(self, request: web.Request) -> web.Response:
        try:
            filters = self._filters(request)
        except ValueError as exc:
            return _bad_request(f"Invalid query: {exc}")
        top = request.query.get("top")
        token = request.headers.get("x-ms-continuation-token")
        offset = 0
        if token and token.lower() != "null":
            try:
                offset = int(base64.b64decode(token).decode())
            except ValueError:
                return _bad_request("Invalid continuation token.")
        # OrchestrationStatusQueryCondition: PageSize 100 unless ?top=N; ShowInput true unless ?showInput=false.
        # The 1.7.0 client's get_status_all()/get_status_by() never send the continuation token back,
        # so in Azure (and here) they return at most the first 100 instances.
        limit = int(top) if top and top.isdigit() and int(top) > 0 else DEFAULT_PAGE_SIZE
        rows = self.engine.store.query(**filters, limit=limit + 1, offset=offset)
        headers = {}
        if len(rows) > limit:
            rows = rows[:limit]
            headers["x-ms-continuation-token"] = base64.b64encode(str(offset + limit).encode()).decode()
        show_input = _flag(request, "showInput", True)
        return web.json_response([status_payload(r, show_input=show_input) for r in rows], headers=headers)

    async def purge_one(self, request: web.Request) -> web.Response:
        deleted = await self.engine.purge([request.match_info["instance_id"]])
        if not deleted:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": deleted})

    async def purge_many(self, request: web.Request) -> web.Response:
        if not request.query.get("createdTimeFrom"):
            return _bad_request("A 'createdTimeFrom' query parameter is required to purge instance history.")
        try:
            filters = self._filters(request)
        except ValueError as exc:
            return _bad_request(f"Invalid query: {exc}")
        rows = self.engine.store.query(**filters)
        deleted = await self.engine.purge([r.instance_id for r in rows])
        if not deleted:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": deleted})

    async def operation(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        operation = request.match_info["operation"].lower()
        reason = request.query.get("reason")
        try:
            if operation == "terminate":
                await self.engine.terminate(instance_id, reason)
            elif operation == "suspend":
                await self.engine.suspend(instance_id, reason)
            elif operation == "resume":
                await self.engine.resume(instance_id, reason)
            elif operation == "rewind":
                await self.engine.rewind(instance_id, reason)
            elif operation == "restart":
                new_id = request.query.get("restartWithNewInstanceId", "true").strip().lower() != "false"
                try:
                    started = await self.engine.restart(instance_id, new_id)
                except InstanceNotFound as exc:
                    return _bad_request(str(exc))
                except InstanceExistsError as exc:
                    return _error(500, "Something went wrong while processing your request", str(exc),
                                  "System.InvalidOperationException")
                return self._check_status(request, started)
            else:
                return web.Response(status=404)
        except InstanceNotFound:
            return web.Response(status=404)
        except InstanceGone:
            return web.Response(status=410)
        return web.Response(status=202)

    async def raise_event(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        event_name = request.match_info["event_name"]
        if request.content_type != "application/json":
            return _bad_request("Only application/json request content is supported")
        body = await request.read()
        try:
            input_text = _body_input(body)
        except ValueError:
            return _bad_request("Invalid JSON content")
        try:
            await self.engine.raise_event(instance_id, event_name, input_text)
        except InstanceNotFound:
            return web.Response(status=404)
        except InstanceGone:
            return web.Response(status=410)
        return web.Response(status=202)


async def _entity_get(request: web.Request) -> web.Response:
    return web.Response(status=404)  # no entity has state: the client reports entity_exists=False


async def _entity_signal(request: web.Request) -> web.Response:
    return _bad_request("Durable entities are not supported by devhost.")


def _clock_handler(engine: "DurableEngine"):
    async def clock(request: web.Request) -> web.Response:
        """devhost only (not an Azure route): read the engine clock; POST ?advanceSeconds=N moves virtual time."""
        if request.method == "POST":
            if not engine.clock.virtual:
                return web.json_response({"Message": "devhost was not started with a virtual clock"}, status=409)
            try:
                seconds = float(request.query.get("advanceSeconds", ""))
            except ValueError:
                return _bad_request("advanceSeconds must be a number of seconds")
            engine.advance_clock(seconds)
        return web.json_response({"virtual": engine.clock.virtual, "now": h.iso(engine.clock.now_datetime())})

    return clock


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_key(request: web.Request) -> str:
    """The key a caller sent: ``x-functions-key`` header, else the ``code`` query parameter."""
    return request.headers.get("x-functions-key") or request.query.get("code") or ""


def _require_key(engine: "DurableEngine", handler: Handler) -> Handler:
    """The public webhook: the durabletask_extension system key or the master key, else 401."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        keys = [k for k in (engine.system_key, engine.master_key) if k]
        if keys:
            given = request_key(request)
            if not any(secrets.compare_digest(given.encode(), k.encode()) for k in keys):
                return web.Response(status=401)
        return await handler(request)

    return guarded


def _is_local_peer(request: web.Request) -> bool:
    """True for a loopback peer, or one connecting from this server's own address (same machine)."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    own = transport.get_extra_info("sockname") if transport is not None else None
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    if address.is_loopback or (mapped is not None and mapped.is_loopback):
        return True
    return bool(own) and str(peer[0]) == str(own[0])


def _local_only(handler: Handler) -> Handler:
    """The client's rpcBaseUrl: keyless, but only for callers on this machine (404 for others)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        if not _is_local_peer(request):
            return web.Response(status=404)
        return await handler(request)

    return guarded


def make_routes(engine: "DurableEngine") -> list:
    """The API under the public webhook prefix (key required) and under the local RPC prefix."""
    handlers = _Handlers(engine)
    clock = _clock_handler(engine)
    table: list[tuple[str, str, Handler]] = [
        ("GET", "/devhost/clock", clock),
        ("POST", "/devhost/clock", clock),
        ("GET", "/entities/{name}/{key}", _entity_get),
        ("POST", "/entities/{name}/{key}", _entity_signal),
        ("POST", "/orchestrators/{name}", handlers.start),
        ("POST", "/orchestrators/{name}/{instance_id}", handlers.start),
        ("GET", "/instances", handlers.list),
        ("GET", "/instances/", handlers.list),
        ("DELETE", "/instances", handlers.purge_many),
        ("DELETE", "/instances/", handlers.purge_many),
        ("GET", "/instances/{instance_id}", handlers.status),
        ("DELETE", "/instances/{instance_id}", handlers.purge_one),
        ("POST", "/instances/{instance_id}/raiseEvent/{event_name}", handlers.raise_event),
        ("POST", "/instances/{instance_id}/{operation}", handlers.operation),
    ]
    routes = [web.route(method, PREFIX + path, _require_key(engine, handler)) for method, path, handler in table]
    routes += [web.route(method, RPC_PREFIX + path, _local_only(handler)) for method, path, handler in table]
    return routes
