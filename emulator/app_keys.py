"""Keys under which the aiohttp application stores the emulator's state (shared by route modules)."""

from __future__ import annotations

from aiohttp import web

from emulator.state import EmulatorState

STATE_KEY = web.AppKey("state", EmulatorState)
ORIGIN_KEY = web.AppKey("origin", dict)


INFO_KEY = web.RequestKey("emulator_info", dict)


def info(request: web.Request) -> dict:
    """Per-request bookkeeping (ids, kind, route, caller) read by the middleware's request log."""
    try:
        return request[INFO_KEY]
    except KeyError:
        data: dict = {}
        request[INFO_KEY] = data
        return data


def state_of(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


def origin_of(request: web.Request) -> str:
    """The public origin, e.g. ``https://127.0.0.1:8443`` (set once the port is bound)."""
    return request.app[ORIGIN_KEY]["origin"]
