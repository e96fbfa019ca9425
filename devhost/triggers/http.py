"""HTTP triggers under ``/{routePrefix}/{route}``: routing, auth levels, request/response mapping.

Routes use the ASP.NET template syntax the host uses: literal segments (case-insensitive),
``{name}``, optional ``{name?}`` (trailing), defaults ``{name=value}``, catch-all ``{*rest}``, and
constraints ``{id:int}``, ``{x:alpha}``, ``{g:guid}``, ``{b:bool}``, ``{d:double}``/``decimal``/
``float``/``long``, ``{n:min(1)}``/``max``/``range``/``length``/``minlength``/``maxlength``,
``{s:regex(...)}``; unknown constraints are ignored (any value matches). A request whose path matches
but whose method is not in the binding's ``methods`` gets 404, as in the host. Literal routes win
over parameterised ones.

Auth levels: ``anonymous`` is open; ``function`` accepts the function key or the master key;
``admin`` accepts only the master key. Keys come in the ``x-functions-key`` header or the ``code``
query parameter; missing or wrong -> 401 with an empty body.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from multidict import CIMultiDict

from devhost.app_loader import FunctionSpec, LoadedApp
from devhost.config import resolve_setting_refs, timespan_text

log = logging.getLogger("devhost.http")

_CONSTRAINTS = {
    "int": r"-?\d+", "long": r"-?\d+", "alpha": r"[A-Za-z]+", "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?", "decimal": r"-?\d+(?:\.\d+)?", "float": r"-?\d+(?:\.\d+)?",
    "datetime": r"[^/]+",
}
_PARAM = re.compile(r"\{([^{}]+)\}")


@dataclass
class Param:
    name: str
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    pattern: str = r"[^/]+"
    checks: tuple = ()


def _parse_param(text: str, route: str) -> Param:
    p = Param(name="")
    if text.startswith("*"):
        p.catch_all, text = True, text.lstrip("*")
        p.pattern = r".*"
    if "=" in text:
        text, p.default = text.split("=", 1)
        p.optional = True
    parts = _split_constraints(text)
    name = parts[0]
    if name.endswith("?"):
        name, p.optional = name[:-1], True
    p.name = name
    checks = []
    for c in parts[1:]:
        m = re.match(r"^(\w+)(?:\((.*)\))?$", c, re.S)
        if not m:
            continue
        kind, arg = m.group(1).lower(), m.group(2)
        if kind in _CONSTRAINTS:
            p.pattern = _CONSTRAINTS[kind]
        elif kind == "regex" and arg is not None:
            # the constraint must match the whole segment value: anchors are implied, so drop them
            p.pattern = f"(?:{arg.removeprefix('^').removesuffix('$')})"
        elif kind in ("min", "max", "range", "length", "minlength", "maxlength") and arg is not None:
            checks.append((kind, [a.strip() for a in arg.split(",")]))
        else:
            log.warning("route %r: constraint %r is not supported by devhost and is ignored", route, c)
    p.checks = tuple(checks)
    return p


def _split_constraints(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == ":" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _check(p: Param, value: str) -> bool:
    for kind, args in p.checks:
        try:
            if kind == "min" and int(value) < int(args[0]):
                return False
            if kind == "max" and int(value) > int(args[0]):
                return False
            if kind == "range" and not int(args[0]) <= int(value) <= int(args[1]):
                return False
            if kind == "length" and (len(value) != int(args[0]) if len(args) == 1 else not int(args[0]) <= len(value) <= int(args[1])):
                return False
            if kind == "minlength" and len(value) < int(args[0]):
                return False
            if kind == "maxlength" and len(value) > int(args[0]):
                return False
        except ValueError:
            return False
    return True


class RouteTemplate:
    """A compiled route template (see module docstring)."""

    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        self.params: list[Param] = []
        regex = ""
        literal_segments = 0
        for i, seg in enumerate(self.template.split("/") if self.template else []):
            pieces = _PARAM.split(seg)
            seg_rx = ""
            all_optional = True
            for j, piece in enumerate(pieces):
                if j % 2 == 0:
                    seg_rx += re.escape(piece)
                    if piece:
                        all_optional = False
                else:
                    p = _parse_param(piece, template)
                    self.params.append(p)
                    seg_rx += f"(?P<p{len(self.params) - 1}>{p.pattern})"
                    if not p.optional:
                        all_optional = False
            if len(pieces) == 1:
                literal_segments += 1
            sep = "/" if i else ""
            regex += f"(?:{sep}{seg_rx})?" if all_optional else f"{sep}{seg_rx}"
        self.regex = re.compile(f"^{regex}/?$", re.IGNORECASE)
        # precedence: more literal segments first, then fewer catch-alls, then more constrained params
        self.sort_key = (-literal_segments, sum(p.catch_all for p in self.params),
                         -sum(p.pattern != r"[^/]+" for p in self.params))

    def match(self, path: str) -> dict[str, str] | None:
        m = self.regex.match(path.strip("/"))
        if not m:
            return None
        values: dict[str, str] = {}
        for idx, p in enumerate(self.params):
            v = m.group(f"p{idx}")
            if v is None:
                if p.default is not None:
                    values[p.name] = p.default
                continue
            if not _check(p, v):
                return None
            values[p.name] = v
        return values


@dataclass
class HttpRoute:
    spec: FunctionSpec
    template: RouteTemplate
    methods: set[str] | None
    auth_level: str

    @property
    def route(self) -> str:
        return self.template.template


def build_routes(app: LoadedApp) -> list[HttpRoute]:
    routes = []
    for spec in app.by_trigger("httpTrigger"):
        trig = spec.trigger
        route = resolve_setting_refs(trig.get("route") or spec.name, what=f"route of '{spec.name}'")
        methods = {m.upper() for m in trig.get("methods") or []} or None
        auth = str(trig.get("authLevel") or "FUNCTION").lower()
        routes.append(HttpRoute(spec, RouteTemplate(route), methods, auth))
    routes.sort(key=lambda r: r.template.sort_key)
    return routes


def _key_ok(request: web.Request, accepted: list[str]) -> bool:
    given = request.headers.get("x-functions-key") or request.query.get("code") or ""
    return any(k and hmac.compare_digest(given.encode(), k.encode()) for k in accepted)


def make_request(request: web.Request, body: bytes, route_params: dict[str, str]) -> func.HttpRequest:
    params = {k: request.query.getone(k) for k in request.query.keys()}
    headers = {k.lower(): ", ".join(request.headers.getall(k)) for k in request.headers.keys()}
    return func.HttpRequest(method=request.method, url=str(request.url), headers=headers, params=params,
                            route_params=route_params, body=body)


def to_response(value: Any) -> web.Response:
    """Map a function's HTTP output (``func.HttpResponse``, str, bytes, None, JSON-able) to aiohttp."""
    if isinstance(value, func.HttpResponse):
        headers = CIMultiDict()
        for k, v in value.headers.items():
            headers.add(k, v)
        if "content-type" not in {k.lower() for k in headers}:  # the worker's http converter rule
            ct = value.mimetype
            headers["Content-Type"] = f"{ct}; charset={value.charset}" if ct.startswith("text/") else ct
        return web.Response(status=value.status_code, body=value.get_body(), headers=headers)
    if value is None:
        return web.Response(status=204)
    if isinstance(value, bytes):
        return web.Response(status=200, body=value, content_type="application/octet-stream")
    if isinstance(value, str):
        return web.Response(status=200, text=value, content_type="text/plain")
    import json

    return web.Response(status=200, text=json.dumps(value), content_type="application/json")


class HttpTriggers:
    """The aiohttp handler for ``/{routePrefix}/...``."""

    def __init__(self, app: LoadedApp, route_prefix: str, function_key: str, master_key: str,
                 writer, function_timeout: float | None) -> None:
        self.app = app
        self.prefix = route_prefix.strip("/")
        self.routes = build_routes(app)
        self.function_key = function_key
        self.master_key = master_key
        self.writer = writer
        self.function_timeout = function_timeout

    def url_path(self, route: HttpRoute) -> str:
        return "/" + "/".join(x for x in (self.prefix, route.route) if x)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info.get("tail", "")
        matched = None
        for r in self.routes:
            values = r.template.match(path)
            if values is not None and (r.methods is None or request.method.upper() in r.methods):
                matched = (r, values)
                break
        if matched is None:  # no route, or the route exists for other methods only: 404 like the host
            return web.Response(status=404)
        route, values = matched
        if route.auth_level != "anonymous":
            accepted = [self.master_key] if route.auth_level in ("admin", "system") else [self.function_key, self.master_key]
            if not _key_ok(request, accepted):
                return web.Response(status=401)
        body = await request.read()
        req = make_request(request, body, values)
        try:
            call = self.app.invoke(route.spec.name, {route.spec.trigger["name"]: req})
            result = await (asyncio.wait_for(call, self.function_timeout) if self.function_timeout else call)
            await self.writer.write(route.spec, result)
        except asyncio.TimeoutError:
            log.error("Function 'Functions.%s' timed out after %ss (functionTimeout): Timeout value of %s was exceeded "
                      "by function: Functions.%s", route.spec.name, self.function_timeout,
                      timespan_text(self.function_timeout), route.spec.name)
            return web.Response(status=500)
        except Exception:
            log.exception("Function 'Functions.%s' failed", route.spec.name)
            return web.Response(status=500)
        value = result.return_value
        if value is None:  # an http output binding other than $return (func.Out[func.HttpResponse])
            for b in route.spec.bindings:
                if b.get("type") == "http" and b.get("direction", "").upper() == "OUT" and b.get("name") != "$return":
                    value = result.outputs.get(b["name"], value)
        try:
            return to_response(value)
        except Exception:
            log.exception("Function 'Functions.%s' returned a value that is not an HTTP response", route.spec.name)
            return web.Response(status=500)
