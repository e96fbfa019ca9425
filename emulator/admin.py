"""The admin API under ``/_emulator/``: reset, seed, faults, clock, clients, tokens, request log.

No token is needed, so these routes answer only callers on the loopback interface (the server
binds 127.0.0.1 by default; this check also holds with ``--host 0.0.0.0``). Errors use the Graph
envelope so one client helper handles both.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from emulator.app_keys import info, state_of
from emulator.directory import check_directory_setting
from emulator.errors import GraphError, bad_request
from emulator.fleet import seed_fleet
from emulator.identity import mint_token
from emulator.permissions import GRAPH_AUDIENCE, VAULT_AUDIENCE

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


async def _body(request: web.Request) -> dict:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise GraphError(400, "BadRequest", "The admin request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The admin request body must be a JSON object.")
    return body


def _admin(func):
    async def handler(request: web.Request) -> web.Response:
        info(request)["kind"] = "admin"
        if request.remote not in LOOPBACK:
            raise GraphError(403, "Forbidden", "The emulator admin API answers loopback callers only.")
        state_of(request).advance()
        return await func(request)

    return handler


@_admin
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@_admin
async def get_state(request: web.Request) -> web.Response:
    return web.json_response(state_of(request).summary())


@_admin
async def reset(request: web.Request) -> web.Response:
    body = await _body(request)
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise bad_request("'seed' must be an integer.")
    state = state_of(request)
    state.reset(seed, keep_faults=bool(body.get("keepFaults", False)))
    return web.json_response(state.summary())


@_admin
async def seed(request: web.Request) -> web.Response:
    """Add objects to the tenant: users, groups (with members), clients, Key Vault secrets."""
    body = await _body(request)
    state = state_of(request)
    directory = state.directory
    created: dict[str, list] = {"users": [], "groups": [], "clients": [], "secrets": []}
    for spec in body.get("users", []):
        if not isinstance(spec, dict) or not isinstance(spec.get("displayName"), str):
            raise bad_request("users[]: each user needs a string 'displayName'.")
        user_id = directory.new_id()
        nick = spec.get("mailNickname") or "".join(ch for ch in spec["displayName"].lower() if ch.isalnum()) or user_id[:8]
        upn = spec.get("userPrincipalName") or f"{nick}.{user_id[:4]}@contoso-emulator.onmicrosoft.com"
        directory.users[user_id] = {
            "@odata.type": "#microsoft.graph.user",
            "id": user_id,
            "accountEnabled": spec.get("accountEnabled", True),
            "businessPhones": [],
            "displayName": spec["displayName"],
            "givenName": spec.get("givenName"),
            "surname": spec.get("surname"),
            "jobTitle": spec.get("jobTitle"),
            "department": spec.get("department"),
            "mail": spec.get("mail", upn),
            "mailNickname": nick,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": "en-US",
            "userPrincipalName": upn,
            "userType": "Member",
        }
        created["users"].append(directory.users[user_id])
    for spec in body.get("groups", []):
        if not isinstance(spec, dict) or not isinstance(spec.get("displayName"), str):
            raise bad_request("groups[]: each group needs a string 'displayName'.")
        members = spec.get("members", [])
        for member in members:
            if directory.directory_object(member) is None:
                raise bad_request(f"groups[].members: unknown directory object '{member}'.")
        group_id = directory.new_id()
        directory.groups[group_id] = {
            "@odata.type": "#microsoft.graph.group",
            "id": group_id,
            "createdDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "description": spec.get("description"),
            "displayName": spec["displayName"],
            "groupTypes": [],
            "mail": None,
            "mailEnabled": False,
            "mailNickname": "".join(ch for ch in spec["displayName"].lower() if ch.isalnum()),
            "securityEnabled": True,
            "visibility": None,
        }
        directory.members[group_id] = list(members)
        created["groups"].append(directory.groups[group_id])
    for spec in body.get("clients", []):
        created["clients"].append(_add_client(state, spec))
    secrets = body.get("secrets", {})
    if not isinstance(secrets, dict):
        raise bad_request("'secrets' must be an object of name -> value.")
    for name, value in secrets.items():
        if not isinstance(value, str):
            raise bad_request(f"secrets.{name}: value must be a string.")
        try:
            version = state.key_vault.set(name, value)
        except Exception as error:  # KeyVaultError for a bad name
            raise bad_request(f"secrets.{name}: {error}") from None
        created["secrets"].append({"name": name, "version": version["version"]})
        from emulator.keyvault_routes import publish_new_version

        publish_new_version(request, state.key_vault.canonical(name), version)
    return web.json_response(created, status=201)


@_admin
async def seed_fleet_route(request: web.Request) -> web.Response:
    """Add N managed app instances at once (:mod:`emulator.fleet`): scale tests and benchmarks."""
    body = await _body(request)
    return web.json_response(seed_fleet(state_of(request), body), status=201)


def _add_client(state, spec: dict) -> dict:
    if not isinstance(spec, dict):
        raise bad_request("A client must be an object.")
    roles = spec.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise bad_request("'roles' must be a list of Graph application permission names.")
    return state.directory.add_client(
        spec.get("displayName") or spec.get("name") or "Emulator client",
        roles,
        key_vault=spec.get("keyVault", "none"),
        name=spec.get("name"),
        client_id=spec.get("clientId"),
        secret=spec.get("secret"),
        sp_type=spec.get("servicePrincipalType", "Application"),
    )


@_admin
async def clients(request: web.Request) -> web.Response:
    state = state_of(request)
    if request.method == "POST":
        client = _add_client(state, await _body(request))
        return web.json_response(client, status=201)
    return web.json_response({"value": list(state.directory.clients.values())})


@_admin
async def faults(request: web.Request) -> web.Response:
    state = state_of(request)
    if request.method == "GET":
        return web.json_response(state.faults.config)
    if request.method == "DELETE":
        state.faults.reset(None)
        return web.json_response(state.faults.config)
    body = await _body(request)
    config = state.faults.update(body, replace=request.method in ("POST", "PUT"))
    return web.json_response(config)


@_admin
async def clock(request: web.Request) -> web.Response:
    state = state_of(request)
    if request.method == "POST":
        body = await _body(request)
        advance = body.get("advanceSeconds", 0)
        scale = body.get("scale")
        if isinstance(advance, bool) or not isinstance(advance, (int, float)) or advance < 0:
            raise bad_request("'advanceSeconds' must be a number >= 0.")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0):
            raise bad_request("'scale' must be a number > 0.")
        if scale is not None:
            state.clock.scale = scale
        if advance:
            state.clock.advance(advance)
        state.advance()
        from emulator.keyvault_routes import publish_due_expiry

        publish_due_expiry(request.app)  # SecretNearExpiry / SecretExpired now due (emulator/eventgrid.py)
    return web.json_response(state.clock.to_state())


@_admin
async def requests_log(request: web.Request) -> web.Response:
    state = state_of(request)
    if request.method == "DELETE":
        state.request_log.clear()
        return web.Response(status=204)
    q = request.query
    entries = state.request_log
    if q.get("kind"):
        entries = [e for e in entries if e["kind"] == q["kind"]]
    if q.get("method"):
        entries = [e for e in entries if e["method"] == q["method"].upper()]
    if q.get("pathContains"):
        entries = [e for e in entries if q["pathContains"] in e["path"]]
    if q.get("routeContains"):
        entries = [e for e in entries if q["routeContains"] in e["route"]]
    if q.get("caller"):
        entries = [e for e in entries if e["caller"] == q["caller"]]
    if q.get("status"):
        entries = [e for e in entries if str(e["status"]) == q["status"]]
    if q.get("since"):
        try:
            since = float(q["since"])
        except ValueError:
            raise bad_request("'since' must be a Unix time in seconds.") from None
        entries = [e for e in entries if e["realTime"] >= since]
    return web.json_response({"count": len(entries), "counts": state.request_summary(entries), "value": entries})


@_admin
async def tokens(request: web.Request) -> web.Response:
    """Mint a token for tests: e.g. expired (``lifetimeSeconds`` < 0) or for the wrong audience."""
    state = state_of(request)
    body = await _body(request)
    wanted = body.get("client", "workflow")
    client = state.directory.clients.get(wanted)
    if client is None:
        try:
            client = state.directory.client_by_name(wanted)
        except KeyError:
            raise bad_request(f"Unknown client '{wanted}'.") from None
    requested = body.get("audience", "graph")
    if not isinstance(requested, str):
        raise bad_request("'audience' must be graph, vault or an audience URI.")
    audience = {"graph": GRAPH_AUDIENCE, "vault": VAULT_AUDIENCE}.get(requested, requested)
    lifetime = body.get("lifetimeSeconds", 3600)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int):
        raise bad_request("'lifetimeSeconds' must be an integer.")
    claims = body.get("claims", {})
    if not isinstance(claims, dict):
        raise bad_request("'claims' must be an object.")
    return web.json_response({"access_token": mint_token(state.directory, client, audience, lifetime, **claims)})


@_admin
async def settings(request: web.Request) -> web.Response:
    """Directory switches and the provisioning simulation's knobs (UNCONFIRMED behaviours, timings).

    PATCH changes last until ``reset``; with ``--state-dir`` they are saved with the tenant and
    survive a restart, except for the keys the new start's ``--settings FILE`` names (the file wins,
    as a ``--faults`` file does).
    """
    state = state_of(request)
    if request.method == "PATCH":
        body = await _body(request)
        unknown = set(body) - {"directory", "provisioning"}
        if unknown:
            raise bad_request(f"Unknown settings section(s): {', '.join(sorted(unknown))} (directory, provisioning).")
        directory_settings = body.get("directory", {})
        if not isinstance(directory_settings, dict):
            raise bad_request("'directory' must be an object.")
        for key, value in directory_settings.items():
            try:
                check_directory_setting(key, value)
            except ValueError as error:
                raise bad_request(str(error)) from None
            state.directory.settings[key] = value
        if "provisioning" in body:
            if state.provisioning is None:
                raise bad_request("The provisioning simulation is not available.")
            try:
                state.provisioning.update_settings(body["provisioning"])
            except ValueError as error:
                raise bad_request(str(error)) from None
    provisioning = state.provisioning.settings.public() if state.provisioning is not None else None
    return web.json_response({"directory": state.directory.settings, "provisioning": provisioning})


@_admin
async def eventgrid_subscriptions(request: web.Request) -> web.Response:
    """Event Grid subscriptions to the vault's events (emulator/eventgrid.py): POST adds one, GET lists, DELETE clears."""
    from emulator.eventgrid import event_grid_of

    grid = event_grid_of(request.app)
    if request.method == "POST":
        try:
            store = state_of(request).key_vault
            existing = [(name.lower(), v["version"]) for name, versions in store.secrets.items() for v in versions]
            sub = await grid.subscribe(await _body(request), existing)
        except ValueError as error:
            raise bad_request(str(error)) from None
        return web.json_response(sub, status=201)
    if request.method == "DELETE":
        grid.clear()
        return web.Response(status=204)
    return web.json_response({"value": grid.subscriptions, "deliveries": grid.deliveries})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_emulator/health", health)
    r.add_get("/_emulator/state", get_state)
    r.add_post("/_emulator/reset", reset)
    r.add_post("/_emulator/seed", seed)
    r.add_post("/_emulator/seed-fleet", seed_fleet_route)
    r.add_route("GET", "/_emulator/clients", clients)
    r.add_route("POST", "/_emulator/clients", clients)
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        r.add_route(method, "/_emulator/faults", faults)
    r.add_route("GET", "/_emulator/clock", clock)
    r.add_route("POST", "/_emulator/clock", clock)
    r.add_route("GET", "/_emulator/requests", requests_log)
    r.add_route("DELETE", "/_emulator/requests", requests_log)
    r.add_post("/_emulator/tokens", tokens)
    r.add_route("GET", "/_emulator/settings", settings)
    r.add_route("PATCH", "/_emulator/settings", settings)
    for method in ("GET", "POST", "DELETE"):
        r.add_route(method, "/_emulator/eventgrid/subscriptions", eventgrid_subscriptions)
