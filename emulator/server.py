"""The emulator's HTTPS server: one aiohttp application serving identity, Graph, Key Vault and
the admin API on one loopback origin.

Order of work for a Graph request (what the real service does first answers first): request ids
-> simulated time catches up -> added latency -> authentication (401) -> throttling (429) ->
scheduled/random server errors (5xx) -> the handler (403/404/400 and the answer). Every Graph
error leaves as the OData envelope with ``request-id``, ``client-request-id`` and ``date``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import traceback
import uuid
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from emulator import admin, graph_routes, keyvault_routes
from emulator.app_keys import ORIGIN_KEY, STATE_KEY, info, origin_of
from emulator.clock import iso
from emulator.errors import GraphError
from emulator.eventgrid import EVENTGRID_KEY, EventGrid, event_grid_of
from emulator.identity import (
    TOKEN_LIFETIME_SECONDS,
    InvalidToken,
    TokenRequestError,
    audience_for_scope,
    issue_token,
    managed_identity_header,
    mint_token,
    openid_configuration,
    verify_bearer,
)
from emulator.permissions import GRAPH_APP_ID, GRAPH_AUDIENCE
from emulator.state import EmulatorState

log = logging.getLogger("emulator")



def error_response(request: web.Request, error: GraphError) -> web.Response:
    """The OData error envelope (https://learn.microsoft.com/graph/errors) with the correlation headers."""
    request_id = info(request).get("request_id", str(uuid.uuid4()))
    client_request_id = info(request).get("client_request_id", request_id)
    inner = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "request-id": request_id,
        "client-request-id": client_request_id,
    }
    if error.status == 429:
        inner.update({"code": "429", "message": "Please retry after", "status": "429"})
    body = {"error": {"code": error.code, "message": error.message, "innerError": inner}}
    return web.json_response(body, status=error.status, headers=error.headers)


def _caller_label(request: web.Request) -> str | None:
    return info(request).get("caller_id")


@web.middleware
async def correlation_middleware(request: web.Request, handler):
    """Request ids, error envelope, request log and persistence for every request."""
    info(request)["request_id"] = str(uuid.uuid4())
    info(request)["client_request_id"] = request.headers.get("client-request-id") or info(request)["request_id"]
    state: EmulatorState = request.app[STATE_KEY]
    started = time.monotonic()
    try:
        response = await handler(request)
    except GraphError as error:
        response = error_response(request, error)
    except web.HTTPException as http_error:
        if not request.path.startswith(("/v1.0", "/beta")):
            raise
        if http_error.status == 404:
            response = error_response(request, GraphError(400, "BadRequest", "Resource not found."))
        elif http_error.status == 413:
            response = error_response(request, GraphError(413, "RequestEntityTooLarge", "The request body is too large."))
        else:
            response = error_response(request, GraphError(http_error.status, "BadRequest", http_error.reason))
    except Exception:  # never a stack trace to the client; the emulator's own log gets it
        log.error("unhandled error on %s %s\n%s", request.method, request.path, traceback.format_exc())
        response = error_response(
            request, GraphError(500, "InternalServerError", "The emulator hit an unexpected error; see its log.")
        )
    response.headers["request-id"] = info(request)["request_id"]
    response.headers["client-request-id"] = info(request)["client_request_id"]
    response.headers.setdefault("Date", formatdate(usegmt=True))
    kind = info(request).get("kind", "other")
    if kind != "admin":
        state.log_request(
            {
                "time": iso(state.clock.now()),
                "realTime": time.time(),
                "method": request.method,
                "path": request.path,
                "query": request.query_string,
                "route": info(request).get("route", request.path),
                "status": response.status,
                "caller": _caller_label(request),
                "kind": kind,
                "durationMs": round((time.monotonic() - started) * 1000, 2),
                "replica": info(request).get("replica"),  # the read replica a Graph request landed on (replicas fault)
            }
        )
    if kind != "admin" or request.method != "GET":
        request.app[ORIGIN_KEY]["dirty"] = True  # the flush loop saves the tenant (with --state-dir)
    return response


# -- identity -----------------------------------------------------------------------------------

async def openid_config_handler(request: web.Request) -> web.Response:
    info(request)["kind"] = "identity"
    info(request)["route"] = "/{tenant}/v2.0/.well-known/openid-configuration"
    state = request.app[STATE_KEY]
    tenant = request.match_info["tenant"]
    if not state.directory.is_tenant(tenant):
        return web.json_response(
            {"error": "invalid_tenant", "error_description": f"AADSTS90002: Tenant '{tenant}' not found."}, status=400
        )
    return web.json_response(openid_configuration(origin_of(request), state.directory.tenant_id))


async def token_handler(request: web.Request) -> web.Response:
    info(request)["kind"] = "identity"
    info(request)["route"] = "/{tenant}/oauth2/v2.0/token"
    state = request.app[STATE_KEY]
    try:
        form = {key: str(value) for key, value in (await request.post()).items()}
    except (UnicodeDecodeError, ValueError):
        error = TokenRequestError(400, "invalid_request", 900144, "The request body must be a UTF-8 form (application/x-www-form-urlencoded).")
        return web.json_response(error.body, status=error.status)
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("basic ") and "client_id" not in form:
        try:
            decoded = base64.b64decode(auth[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            form["client_id"], form["client_secret"] = unquote(client_id), unquote(secret)
        except ValueError:
            pass
    try:
        body = issue_token(state.directory, {k: str(v) for k, v in form.items()}, request.match_info["tenant"], origin_of(request))
    except TokenRequestError as error:
        return web.json_response(error.body, status=error.status)
    client = state.directory.clients.get(form.get("client_id", ""))
    info(request)["caller_id"] = client["clientId"] if client else None
    return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def managed_identity_handler(request: web.Request) -> web.Response:
    """App Service-style managed identity endpoint (``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``).

    Lets ``ManagedIdentityCredential`` / ``DefaultAzureCredential`` run with only
    ``AZURE_CLIENT_ID`` set, as the function app does in Azure. Without ``client_id`` the seeded
    ``managed-identity`` client answers.
    """
    info(request)["kind"] = "identity"
    info(request)["route"] = "/managedIdentity/token"
    state = request.app[STATE_KEY]
    directory = state.directory
    if request.headers.get("X-IDENTITY-HEADER") != managed_identity_header(directory):
        return web.json_response({"statusCode": 400, "message": "No X-IDENTITY-HEADER or a wrong one."}, status=400)
    resource = request.query.get("resource", "")
    client_id = request.query.get("client_id")
    client = directory.clients.get(client_id) if client_id else directory.client_by_name("managed-identity")
    if client is None:
        return web.json_response({"statusCode": 400, "message": f"Identity '{client_id}' not found."}, status=400)
    try:
        audience = audience_for_scope(resource.rstrip("/") + "/.default", origin_of(request))
    except TokenRequestError as error:
        return web.json_response({"statusCode": 400, "message": error.body["error_description"]}, status=400)
    info(request)["caller_id"] = client["clientId"]
    token = mint_token(directory, client, audience)
    return web.json_response(
        {
            "access_token": token,
            "expires_on": str(int(time.time()) + TOKEN_LIFETIME_SECONDS),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client["clientId"],
        }
    )


async def jwks_handler(request: web.Request) -> web.Response:
    info(request)["kind"] = "identity"
    return web.json_response({"keys": []})


# -- Graph --------------------------------------------------------------------------------------

async def graph_handler(request: web.Request) -> web.Response:
    state: EmulatorState = request.app[STATE_KEY]
    info(request)["kind"] = "graph"
    version = request.match_info["version"]
    path = request.match_info["tail"].strip("/")
    state.advance()
    delay = state.faults.latency_seconds()
    if delay:
        await asyncio.sleep(delay)
    try:
        caller = verify_bearer(state.directory, request.headers.get("Authorization"), GRAPH_AUDIENCE)
    except InvalidToken as reason:
        raise GraphError(
            401,
            "InvalidAuthenticationToken",
            str(reason),
            {
                "WWW-Authenticate": f'Bearer realm="", authorization_uri="{origin_of(request)}/{state.directory.tenant_id}/oauth2/authorize", client_id="{GRAPH_APP_ID}"'
            },
        ) from None
    info(request)["caller_id"] = caller.client_id
    path = graph_routes.resolve_alternate_key(path, state)
    route, params = graph_routes.match_route(request.method, path)
    info(request)["route"] = f"/{version}/{route.name}"
    buckets = (["writes"] if graph_routes.is_write(request.method) else []) + ([route.budget] if route.budget else [])
    highest = state.faults.throttle(buckets, caller.client_id, state.directory.tenant_id) or 0.0
    state.faults.maybe_error()
    body = await request.read()
    replica = state.faults.pick_replica()
    info(request)["replica"] = None if replica is None else replica[0]
    graph_request = graph_routes.GraphRequest(
        method=request.method,
        version=version,
        path=path,
        query=dict(parse_qsl(request.query_string, keep_blank_values=True)),
        raw_body=body,
        origin=origin_of(request),
        caller=caller,
        state=state,
        headers={k.lower(): v for k, v in request.headers.items()},
        replica=replica,
    )
    reply = route.handler(graph_request, **params)
    cost = graph_routes.resource_units(request.method, route, graph_request.query)
    if cost is not None:
        reply.headers["x-ms-resource-unit"] = str(cost)
    if highest >= 0.8:  # Graph adds this header once usage passes 80% of a limit (throttling-limits page)
        reply.headers["x-ms-throttle-limit-percentage"] = f"{highest:.1f}"
    if reply.status == 204 or reply.body is None:
        return web.Response(status=reply.status, headers=reply.headers)
    return web.json_response(
        reply.body, status=reply.status, headers={"OData-Version": "4.0", **reply.headers},
        content_type="application/json", dumps=_dumps,
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def graph_root_handler(request: web.Request) -> web.Response:
    info(request)["kind"] = "graph"
    raise GraphError(400, "BadRequest", "Invalid version.")


async def unknown_version_handler(request: web.Request) -> web.Response:
    """``/v2.0/...`` and the like: Graph answers 400 "Invalid version: v2.0" in its envelope."""
    info(request)["kind"] = "graph"
    raise GraphError(400, "BadRequest", f"Invalid version: {request.match_info['version']}")


# -- application ---------------------------------------------------------------------------------

async def _flush_loop(app: web.Application) -> None:
    state: EmulatorState = app[STATE_KEY]
    folder = state.options.state_dir
    while True:
        await asyncio.sleep(0.5)
        if folder is not None and app[ORIGIN_KEY].get("dirty"):
            app[ORIGIN_KEY]["dirty"] = False
            try:
                state.save(folder)
            except OSError as error:  # keep serving; the next change retries the save
                app[ORIGIN_KEY]["dirty"] = True
                log.error("cannot save the tenant to %s: %s", folder, error)


async def _expiry_loop(app: web.Application) -> None:
    """Key Vault's expiry events as the simulated clock runs (emulator/eventgrid.py): checked once a second."""
    while True:
        await asyncio.sleep(1.0)
        try:
            keyvault_routes.publish_due_expiry(app)
        except Exception:  # never stop checking; the next second retries
            log.exception("Key Vault expiry check failed")


async def _on_startup(app: web.Application) -> None:
    if app[STATE_KEY].options.state_dir is not None:
        app[ORIGIN_KEY]["flush_task"] = asyncio.ensure_future(_flush_loop(app))
    app[ORIGIN_KEY]["expiry_task"] = asyncio.ensure_future(_expiry_loop(app))


async def _on_cleanup(app: web.Application) -> None:
    await event_grid_of(app).close()
    for name in ("flush_task", "expiry_task"):
        task = app[ORIGIN_KEY].get(name)
        if task is not None:
            task.cancel()
    state: EmulatorState = app[STATE_KEY]
    if state.options.state_dir is not None:
        state.save(state.options.state_dir)


def build_app(state: EmulatorState) -> web.Application:
    """The aiohttp application; ``app[ORIGIN_KEY]["origin"]`` must be set once the port is known."""
    app = web.Application(middlewares=[correlation_middleware], client_max_size=4 * 1024 * 1024)
    app[STATE_KEY] = state
    app[ORIGIN_KEY] = {"origin": "", "dirty": False}
    app[EVENTGRID_KEY] = EventGrid(state.clock)
    admin.add_routes(app)
    keyvault_routes.add_routes(app)
    app.router.add_route("*", r"/{version:v1\.0|beta}/{tail:.*}", graph_handler)
    app.router.add_route("*", r"/{version:v1\.0|beta}", graph_root_handler)
    app.router.add_route("*", r"/{version:v\d+(?:\.\d+)?}/{tail:.*}", unknown_version_handler)
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid_config_handler)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token_handler)
    app.router.add_get("/{tenant}/discovery/v2.0/keys", jwks_handler)
    app.router.add_get("/managedIdentity/token", managed_identity_handler)
    app.on_startup.append(_on_startup)
    app.on_cleanup.append(_on_cleanup)
    return app
