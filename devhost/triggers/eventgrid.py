"""Event Grid triggers, served as the Functions host's Event Grid extension serves them.

Endpoint: ``/runtime/webhooks/eventgrid?functionName=<name>`` with the ``eventgrid_extension``
system key (or the master key) in ``code`` or ``x-functions-key``
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-event-grid-trigger, "Create a
subscription": the endpoint URL and the system key); a wrong or missing key is 401, an unknown
function 404.

Delivery (https://learn.microsoft.com/azure/event-grid/webhook-event-delivery):

* Event Grid schema: ``aeg-event-type: SubscriptionValidation`` carries one
  ``Microsoft.EventGrid.SubscriptionValidationEvent`` whose ``data.validationCode`` is answered
  ``200 {"validationResponse": code}`` (the synchronous handshake); ``aeg-event-type: Notification``
  carries a JSON array of events; ``Unsubscribe`` is acknowledged.
* CloudEvents v1.0 schema: the abuse-protection handshake is an ``OPTIONS`` request with
  ``WebHook-Request-Origin``, answered 200 with ``WebHook-Allowed-Origin`` (the same origin); a
  ``POST`` without ``aeg-event-type`` carries one event (``application/cloudevents+json``) or an
  array (``application/cloudevents-batch+json``).

Each event runs the function once (the binding's ``EventGridEvent``/``CloudEvent``, decoded by the
real ``azure.functions`` converter from the event's JSON). All succeeded: 202; any failed: 500, so
Event Grid retries the delivery (its retry schedule: non-2xx answers are retried).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets

from aiohttp import web

from devhost.app_loader import FunctionSpec, LoadedApp

log = logging.getLogger("devhost.eventgrid")

#: the system key the Event Grid extension registers
EVENTGRID_SYSTEM_KEY_NAME = "eventgrid_extension"
PATH = "/runtime/webhooks/eventgrid"
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"


class EventGridTriggers:
    """The webhook of every ``eventGridTrigger`` function of the app."""

    def __init__(self, app: LoadedApp, system_key: str, master_key: str, function_timeout: float | None = None) -> None:
        self.app = app
        self.keys = [k for k in (system_key, master_key) if k]
        self.function_timeout = function_timeout
        self.specs = {s.name.lower(): s for s in app.by_trigger("eventGridTrigger")}

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", PATH, self.handle)]

    def _authorized(self, request: web.Request) -> bool:
        given = request.query.get("code") or request.headers.get("x-functions-key") or ""
        return any(secrets.compare_digest(given, key) for key in self.keys)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401)
        spec = self.specs.get((request.query.get("functionName") or "").lower())
        if spec is None:
            return web.json_response({"error": "no Event Grid function with this functionName"}, status=404)
        if request.method == "OPTIONS":  # CloudEvents abuse protection
            origin = request.headers.get("WebHook-Request-Origin")
            if not origin:
                return web.Response(status=400)
            return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin, "Allow": "POST"})
        if request.method != "POST":
            return web.Response(status=405)
        try:
            body = json.loads(await request.read() or b"null")
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "the body is not JSON"}, status=400)
        kind = request.headers.get("aeg-event-type", "")
        if kind == "SubscriptionValidation":
            first = body[0] if isinstance(body, list) and body else body
            code = (first.get("data") or {}).get("validationCode") if isinstance(first, dict) else None
            if not isinstance(first, dict) or first.get("eventType") != VALIDATION_EVENT or not code:
                return web.json_response({"error": "not a subscription validation event"}, status=400)
            log.info("Event Grid subscription validated for Functions.%s", spec.name)
            return web.json_response({"validationResponse": code})
        if kind == "Unsubscribe":
            return web.Response(status=202)
        if kind not in ("Notification", ""):
            return web.json_response({"error": f"unknown aeg-event-type {kind!r}"}, status=400)
        events = body if isinstance(body, list) else [body]
        if not all(isinstance(e, dict) for e in events):
            return web.json_response({"error": "events must be JSON objects"}, status=400)
        failed = 0
        for event in events:
            if not await self._run(spec, event):
                failed += 1
        return web.Response(status=500 if failed else 202)

    async def _run(self, spec: FunctionSpec, event: dict) -> bool:
        from azure.functions import meta

        converter = meta._ConverterMeta.get("eventGridTrigger")
        try:
            value = converter.decode(meta.Datum(type="json", value=json.dumps(event)), trigger_metadata={})
            call = self.app.invoke(spec.name, {spec.trigger["name"]: value})
            await (asyncio.wait_for(call, self.function_timeout) if self.function_timeout else call)
            return True
        except Exception:  # the invocation's own log line has the failure; Event Grid retries
            log.warning("Event Grid event %s for Functions.%s failed", event.get("id"), spec.name)
            return False
