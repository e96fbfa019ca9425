"""Key Vault secrets routes, path-based on the emulator origin (``KEY_VAULT_URL`` = the origin).

Behaves as ``azure-keyvault-secrets`` expects (its challenge policy:
https://github.com/Azure/azure-sdk-for-python/blob/main/sdk/keyvault/azure-keyvault-secrets/azure/keyvault/secrets/_shared/challenge_auth_policy.py):
a request without a valid Key Vault token gets 401 with ``WWW-Authenticate: Bearer authorization="{authority}/
{tenant}", resource="https://vault.azure.net"``; the client then fetches a token for
``https://vault.azure.net/.default`` and resends. Each registered client has a Key Vault access flag
(``none`` / ``read`` / ``readwrite``) standing in for an RBAC role assignment.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from emulator.app_keys import info, origin_of, state_of
from emulator.identity import InvalidToken, verify_bearer
from emulator.keyvault import KeyVaultError, secret_bundle, secret_item
from emulator.permissions import VAULT_AUDIENCE


def _state(request: web.Request):
    return state_of(request)


def _vault_url(request: web.Request) -> str:
    return origin_of(request)


def _error(error: KeyVaultError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers)


def _authorize(request: web.Request, write: bool) -> None:
    state = _state(request)
    challenge = {
        "WWW-Authenticate": f'Bearer authorization="{_vault_url(request)}/{state.directory.tenant_id}", resource="{VAULT_AUDIENCE}"'
    }
    header = request.headers.get("Authorization")
    if not header:
        raise KeyVaultError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", challenge)
    try:
        caller = verify_bearer(state.directory, header, VAULT_AUDIENCE)
    except InvalidToken as reason:
        raise KeyVaultError(401, "Unauthorized", f"AKV10022: {reason}", challenge) from None
    info(request)["caller_id"] = caller.client_id
    client = state.directory.clients.get(caller.client_id)
    access = client["keyVault"] if client else "none"
    if access == "none" or (write and access != "readwrite"):
        action = "Microsoft.KeyVault/vaults/secrets/setSecret/action" if write else "Microsoft.KeyVault/vaults/secrets/getSecret/action"
        raise KeyVaultError(
            403,
            "Forbidden",
            f"Caller is not authorized to perform action on resource. If role assignments, deny assignments or role definitions were changed recently, please observe propagation time. Caller: appid={caller.client_id};oid={caller.sp_id} Action: '{action}'",
            inner="ForbiddenByRbac",
        )
    if not request.query.get("api-version"):
        raise KeyVaultError(400, "BadParameter", "The request URI contains an invalid or missing api-version query parameter.")


def _handler(write: bool):
    def wrap(func):
        async def handler(request: web.Request) -> web.Response:
            info(request)["kind"] = "keyvault"
            info(request)["route"] = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
            state = _state(request)
            delay = state.faults.latency_seconds()
            if delay:
                await asyncio.sleep(delay)
            try:
                _authorize(request, write)
                return await func(request)
            except KeyVaultError as error:
                return _error(error)

        return handler

    return wrap


@_handler(write=False)
async def kv_list(request: web.Request) -> web.Response:
    store = _state(request).key_vault
    vault = _vault_url(request)
    items = [secret_item(vault, name, versions[-1], with_version=False) for name, versions in sorted(store.secrets.items())]
    return web.json_response({"value": items, "nextLink": None})


@_handler(write=False)
async def kv_get(request: web.Request) -> web.Response:
    store = _state(request).key_vault
    name = store.canonical(request.match_info["name"])
    version = request.match_info.get("version") or None
    found = store.get(name, version)
    return web.json_response(secret_bundle(_vault_url(request), name, found))


@_handler(write=False)
async def kv_versions(request: web.Request) -> web.Response:
    store = _state(request).key_vault
    name = store.canonical(request.match_info["name"])
    store.get(name, None)  # 404 SecretNotFound for an unknown name
    vault = _vault_url(request)
    items = [secret_item(vault, name, v, with_version=True) for v in store.secrets[name]]
    return web.json_response({"value": items, "nextLink": None})


@_handler(write=True)
async def kv_set(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise KeyVaultError(400, "BadParameter", "The request body must be a JSON object with a 'value' property.")
    value = body.get("value")
    if not isinstance(value, str):
        raise KeyVaultError(400, "BadParameter", "Property 'value' is required and must be a string.")
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())):
        raise KeyVaultError(400, "BadParameter", "Property 'tags' must be an object of strings.")
    content_type = body.get("contentType")
    if content_type is not None and not isinstance(content_type, str):
        raise KeyVaultError(400, "BadParameter", "Property 'contentType' must be a string.")
    attributes = body.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise KeyVaultError(400, "BadParameter", "Property 'attributes' must be an object.")
    expires = (attributes or {}).get("exp")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int)):
        raise KeyVaultError(400, "BadParameter", "Property 'attributes.exp' must be a number of seconds since 1970.")
    store = _state(request).key_vault
    version = store.set(name, value, content_type, tags, expires)
    publish_new_version(request, store.canonical(name), version)
    return web.json_response(secret_bundle(_vault_url(request), store.canonical(name), version))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/secrets", kv_list)
    app.router.add_get("/secrets/", kv_list)
    app.router.add_get("/secrets/{name}/versions", kv_versions)
    app.router.add_get("/secrets/{name}", kv_get)
    app.router.add_get("/secrets/{name}/", kv_get)
    app.router.add_get("/secrets/{name}/{version}", kv_get)
    app.router.add_put("/secrets/{name}", kv_set)


def publish_new_version(request: web.Request, name: str, version: dict) -> None:
    """Key Vault publishes SecretNewVersionCreated for every new version (emulator/eventgrid.py)."""
    from emulator.eventgrid import NEW_VERSION, event_grid_of

    grid = event_grid_of(request.app)
    grid.publish(grid.key_vault_event(NEW_VERSION, _vault_url(request), name, version))
    publish_due_expiry(request.app)  # a version set with less than 30 days left is near expiry at once


def publish_due_expiry(app: web.Application) -> list[dict]:
    """Key Vault's ``SecretNearExpiry`` / ``SecretExpired`` now due on the emulator's clock (emulator/eventgrid.py)."""
    from emulator.app_keys import ORIGIN_KEY, STATE_KEY
    from emulator.eventgrid import event_grid_of

    return event_grid_of(app).publish_expiry(app[STATE_KEY].key_vault, app[ORIGIN_KEY]["origin"])
