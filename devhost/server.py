"""The devhost process: one aiohttp server for HTTP triggers, the Durable HTTP API and admin routes,
plus queue and timer listeners, the Durable engine and (if needed) Azurite.

Start-up order (what ``func start`` does, in devhost's terms):

1. ``local.settings.json`` ``Values`` -> environment (existing variables win), ``host.json`` parsed;
2. ``function_app.py`` imported from the script root and indexed once;
3. triggers validated (routes, queue names, schedules, ``%SETTING%`` references, connections):
   every problem stops start-up with a clear message before anything listens;
4. Azurite started if a development-storage connection is used and nothing listens on its port;
5. HTTP server bound (``--port 0`` picks a free port), Durable engine started, listeners started;
6. the function list is printed and ``<state-dir>/devhost.ready.json`` is written (``devhost.testing``
   waits for it). SIGINT/SIGTERM stop everything in reverse order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from devhost import __version__
from devhost.app_loader import LoadedApp
from devhost.azurite import AzuriteProcess, port_open, resolve_connection, wait_for_previous
from devhost.config import DEFAULT_BODY_LIMIT, HostConfig, log_level, resolve_setting_refs
from devhost.errors import ConfigError, DevhostError, StartupError
from devhost.triggers.eventgrid import EVENTGRID_SYSTEM_KEY_NAME, EventGridTriggers
from devhost.triggers.http import HttpTriggers
from devhost.triggers.queue import OutputWriter, QueueClients, QueueListener, connection_of, queue_name_of
from devhost.triggers.timer import TimerListener

log = logging.getLogger("devhost")

READY_FILE = "devhost.ready.json"
KEYS_FILE = "keys.json"
#: the system key the Durable extension registers; it (or the master key) opens /runtime/webhooks/durabletask
DURABLE_SYSTEM_KEY_NAME = "durabletask_extension"
#: binding types devhost implements; others are reported at start and their values ignored
SUPPORTED_BINDINGS = {"httpTrigger", "http", "queueTrigger", "queue", "timerTrigger", "orchestrationTrigger",
                      "activityTrigger", "durableClient", "entityTrigger", "eventGridTrigger"}


@dataclass
class StartOptions:
    app_path: str
    state_dir: str
    port: int = 7071
    host: str = "127.0.0.1"
    function_key: str | None = None
    virtual_clock: bool = False


@dataclass
class HostKeys:
    function_key: str
    master_key: str
    system_key: str  # the ``durabletask_extension`` system key (Durable HTTP API)
    eventgrid_key: str = ""  # the ``eventgrid_extension`` system key (/runtime/webhooks/eventgrid)


def load_keys(state_dir: str, function_key: str | None) -> HostKeys:
    """The host's keys, generated once and kept in ``<state-dir>/keys.json`` (mode 600)."""
    path = os.path.join(state_dir, KEYS_FILE)
    data: dict[str, Any] = {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        pass
    if not isinstance(data, dict):
        data = {}
    changed = False
    for k in ("functionKey", "masterKey"):
        if not data.get(k):
            data[k] = secrets.token_urlsafe(32)
            changed = True
    system_keys = data.get("systemKeys") if isinstance(data.get("systemKeys"), dict) else {}
    for name in (DURABLE_SYSTEM_KEY_NAME, EVENTGRID_SYSTEM_KEY_NAME):
        if not system_keys.get(name):
            system_keys = {**system_keys, name: secrets.token_urlsafe(32)}
            data["systemKeys"] = system_keys
            changed = True
    if changed:
        os.makedirs(state_dir, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
    return HostKeys(function_key or data["functionKey"], data["masterKey"],
                    data["systemKeys"][DURABLE_SYSTEM_KEY_NAME], data["systemKeys"][EVENTGRID_SYSTEM_KEY_NAME])


def _bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror} (use --port 0 for a free port)") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


class DevHost:
    """Everything one ``python -m devhost start`` runs. ``await start()``, then ``await stop()``."""

    def __init__(self, options: StartOptions, app: LoadedApp, host_config: HostConfig) -> None:
        self.options = options
        self.app = app
        self.config = host_config
        keys = load_keys(options.state_dir, options.function_key)
        self.function_key, self.master_key, self.system_key = keys.function_key, keys.master_key, keys.system_key
        self.eventgrid_key = keys.eventgrid_key
        self.eventgrid = EventGridTriggers(app, self.eventgrid_key, self.master_key, host_config.function_timeout)
        self.clients = QueueClients(host_config.queues)
        self.writer = OutputWriter(self.clients)
        self.http = HttpTriggers(app, host_config.route_prefix, self.function_key, self.master_key,
                                 self.writer, host_config.function_timeout)
        self.queue_listeners = [QueueListener(app, s, self.clients, self.writer, host_config.function_timeout)
                                for s in app.by_trigger("queueTrigger")]
        self.timer_listeners = [TimerListener(app, s, options.state_dir, self.writer, host_config.function_timeout)
                                for s in app.by_trigger("timerTrigger")]
        self._validate_queue_bindings()
        self.engine: Any = None
        self.azurite: list[AzuriteProcess] = []
        self.runner: web.AppRunner | None = None
        self.base_url = ""
        self.port = 0

    # -------------------------------------------------------------- validation
    def _validate_queue_bindings(self) -> None:
        problems = []
        for spec in self.app.functions.values():
            for b in spec.bindings:
                if b.get("type") not in SUPPORTED_BINDINGS:
                    log.warning("Function '%s': binding '%s' of type '%s' is not supported by devhost; it is ignored",
                                spec.name, b.get("name"), b.get("type"))
                if b.get("type") in ("queueTrigger", "queue"):
                    try:
                        queue_name_of(b)
                        resolve_connection(connection_of(b))
                    except ConfigError as exc:
                        problems.append(f"function '{spec.name}': {exc}")
        if problems:
            raise ConfigError("invalid bindings:\n  - " + "\n  - ".join(dict.fromkeys(problems)))

    def storage_connections(self) -> list:
        """Connections the app uses: queue bindings, plus ``AzureWebJobsStorage`` when set."""
        names = {connection_of(b) for s in self.app.functions.values() for b in s.bindings
                 if b.get("type") in ("queueTrigger", "queue")}
        if os.environ.get("AzureWebJobsStorage"):
            names.add("AzureWebJobsStorage")
        return [resolve_connection(n) for n in sorted(names)]

    # -------------------------------------------------------------- lifecycle
    def _start_azurite(self) -> None:
        started_ports = set()
        wait_for_previous(self.options.state_dir)  # a crashed devhost's Azurite writes its data first
        for conn in self.storage_connections():
            if not conn.is_local_emulator or conn.queue_port in started_ports:
                continue
            if port_open(conn.queue_port):
                log.info("Storage emulator already listening on port %s; using it", conn.queue_port)
                continue
            self.azurite.append(AzuriteProcess.start(conn, self.options.state_dir,
                                                     [self.app.script_root, os.path.dirname(os.path.dirname(__file__))]))
            started_ports.add(conn.queue_port)

    def _make_engine(self):
        try:
            from devhost.durable.engine import DurableEngine
        except ImportError as exc:
            log.warning("Durable engine unavailable (%s); durable functions will not run", exc)
            return None
        hub = resolve_setting_refs(str(self.config.durable_task.get("hubName") or "TestHubName"), what="host.json hubName")
        # the whole host.json (so functionTimeout also bounds activities), with hubName resolved
        raw = json.loads(json.dumps(self.config.raw))
        raw.setdefault("extensions", {}).setdefault("durableTask", {})["hubName"] = hub
        return DurableEngine(self.app, self.options.state_dir, raw, virtual_clock=self.options.virtual_clock,
                             task_hub=hub, system_key=self.system_key, master_key=self.master_key)

    def _web_app(self) -> web.Application:
        limit = int(os.environ.get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT") or DEFAULT_BODY_LIMIT)
        aio = web.Application(client_max_size=limit)
        aio.router.add_get("/admin/host/ping", self._ping)
        aio.router.add_get("/admin/host/status", self._status)
        aio.router.add_get("/admin/functions", self._functions)
        aio.router.add_get("/admin/devhost/durable-client", self._durable_client)
        aio.router.add_post("/admin/functions/{name}", self._run_function)
        if self.engine is not None:  # the Durable HTTP API, wired here: http_api gets the engine passed in
            from devhost.durable.http_api import make_routes

            aio.add_routes(make_routes(self.engine))
        aio.add_routes(self.eventgrid.routes())
        prefix = self.config.route_prefix
        aio.router.add_route("*", f"/{prefix}/{{tail:.*}}" if prefix else "/{tail:.*}", self.http.handle)
        if prefix:
            aio.router.add_route("*", f"/{prefix}", self.http.handle)
        return aio

    async def start(self) -> None:
        os.makedirs(self.options.state_dir, exist_ok=True)
        self._start_azurite()
        from devhost.workers import WorkerPool, worker_process_count

        if worker_process_count() > 1 and self.app.worker_pool is None:  # after Azurite: workers may use it
            self.app.worker_pool = WorkerPool(self.app.app_path, worker_process_count()).start()
        self.engine = self._make_engine()
        sock = _bind_socket(self.options.host, self.options.port)
        self.port = sock.getsockname()[1]
        host_for_url = "127.0.0.1" if self.options.host in ("0.0.0.0", "") else self.options.host
        self.base_url = f"http://{host_for_url}:{self.port}"
        os.environ.setdefault("WEBSITE_HOSTNAME", f"{host_for_url}:{self.port}")  # as Core Tools sets it
        # the engine runs before the first request can arrive, so durable clients always work
        if self.engine is not None:
            from devhost.durable.http_api import client_binding_json

            await self.engine.start()
            self.app.client_binding_json = client_binding_json(self.engine, self.base_url)
            if self.app.worker_pool is not None:
                self.app.worker_pool.client_binding_json = self.app.client_binding_json
        self.runner = web.AppRunner(self._web_app(), access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self.runner.setup()
        await web.SockSite(self.runner, sock).start()
        for listener in (*self.queue_listeners, *self.timer_listeners):
            listener.start()
        self._print_banner()
        self._write_ready()

    async def stop(self) -> None:
        try:
            os.remove(os.path.join(self.options.state_dir, READY_FILE))
        except FileNotFoundError:
            pass
        for listener in (*self.timer_listeners, *self.queue_listeners):
            await listener.stop()
        if self.engine is not None:
            try:
                await self.engine.stop()
            except Exception:
                log.exception("Stopping the Durable engine failed")
        if self.runner is not None:
            await self.runner.cleanup()
        await self.clients.close()
        try:  # the Durable SDK's global HTTP session used by durable-client functions in this process
            from azure.durable_functions.models.utils import http_utils

            await http_utils._handle_request_error()
        except Exception:
            pass
        self.app.shutdown()
        if self.app.worker_pool is not None:
            self.app.worker_pool.stop()
            self.app.worker_pool = None
        for az in self.azurite:
            az.stop()

    # -------------------------------------------------------------- admin routes
    def _is_master(self, request: web.Request) -> bool:
        given = request.headers.get("x-functions-key") or request.query.get("code") or ""
        return secrets.compare_digest(given, self.master_key)

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _status(self, request: web.Request) -> web.Response:
        if not self._is_master(request):
            return web.Response(status=401)
        engine = getattr(self, "engine", None)
        return web.json_response({"id": "devhost", "state": "Running", "version": f"devhost {__version__}",
                                  "processId": os.getpid(),
                                  **({"durable": dict(engine.counters)} if engine is not None else {})})

    async def _functions(self, request: web.Request) -> web.Response:
        if not self._is_master(request):
            return web.Response(status=401)
        return web.json_response(self.function_list())

    async def _durable_client(self, request: web.Request) -> web.Response:
        """The ``durableClient`` binding JSON (for ``devhost.testing``'s ``durable_client()``)."""
        if not self._is_master(request):
            return web.Response(status=401)
        if self.app.client_binding_json is None:
            return web.Response(status=404)
        return web.Response(text=self.app.client_binding_json, content_type="application/json")

    async def _run_function(self, request: web.Request) -> web.Response:
        """``POST /admin/functions/{name}`` with ``{"input": "..."}``: run a timer or queue function now.

        The Functions host's admin API for non-HTTP functions (master key; 202, runs in the
        background). A timer gets ``past_due=False``; a queue function gets a ``QueueMessage`` whose
        body is ``input`` (not taken from the queue, dequeue count 1).
        """
        if not self._is_master(request):
            return web.Response(status=401)
        name = request.match_info["name"]
        spec = next((s for s in self.app.functions.values() if s.name.lower() == name.lower()), None)
        if spec is None:
            return web.Response(status=404)
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return web.json_response({"error": "body must be JSON like {\"input\": \"...\"}"}, status=400)
        text = body.get("input") if isinstance(body, dict) else None
        if text is not None and not isinstance(text, str):
            return web.json_response({"error": "'input' must be a string"}, status=400)
        timers = {t.spec.name: t for t in self.timer_listeners}
        if spec.name in timers:
            asyncio.create_task(timers[spec.name].run_now())
        elif spec.trigger_type == "queueTrigger":
            asyncio.create_task(self._run_queue_function(spec, text or ""))
        else:
            return web.json_response({"error": f"'{spec.name}' is a {spec.trigger_type} function; only timer and "
                                               "queue functions can be run through the admin API"}, status=400)
        return web.Response(status=202)

    async def _run_queue_function(self, spec, text: str) -> None:
        import datetime as dt
        import uuid

        from azure.functions.queue import QueueMessage

        now = dt.datetime.now(dt.timezone.utc)
        msg = QueueMessage(id=str(uuid.uuid4()), body=text, dequeue_count=1, insertion_time=now,
                           expiration_time=now + dt.timedelta(days=7), time_next_visible=now, pop_receipt="admin")
        try:
            result = await self.app.invoke(spec.name, {spec.trigger["name"]: msg})
            await self.writer.write(spec, result)
        except Exception:
            log.exception("Admin run of 'Functions.%s' failed", spec.name)

    def function_list(self) -> list[dict]:
        out = []
        routes = {r.spec.name: r for r in self.http.routes}
        for spec in self.app.functions.values():
            item = {"name": spec.name, "trigger": spec.trigger_type, "bindings": spec.bindings}
            if spec.name in routes:
                r = routes[spec.name]
                item["url"] = self.base_url + self.http.url_path(r)
                item["methods"] = sorted(r.methods) if r.methods else None
                item["authLevel"] = r.auth_level
            out.append(item)
        return out

    def _print_banner(self) -> None:
        lines = [f"devhost {__version__}: app {self.app.app_path}", "", "Functions:", ""]
        for item in self.function_list():
            if "url" in item:
                methods = ",".join(item["methods"]) if item["methods"] else "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS"
                lines.append(f"        {item['name']}: [{methods}] {item['url']}  (auth: {item['authLevel']})")
            else:
                lines.append(f"        {item['name']}: {item['trigger']}")
        lines += ["", f"Function key: {self.function_key}   (header 'x-functions-key' or query '?code=')",
                  f"Master key:   {self.master_key}",
                  f"System key ({DURABLE_SYSTEM_KEY_NAME}): {self.system_key}",
                  f"System key ({EVENTGRID_SYSTEM_KEY_NAME}): {self.eventgrid_key}",
                  f"Durable HTTP API: {self.base_url}/runtime/webhooks/durabletask/   (system key or master key, "
                  "header 'x-functions-key' or query '?code=')",
                  f"State folder: {os.path.abspath(self.options.state_dir)}", "",
                  f"Host started; listening on {self.base_url}"]
        print("\n".join(lines), flush=True)

    def _write_ready(self) -> None:
        path = os.path.join(self.options.state_dir, READY_FILE)
        tmp = path + f".{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "port": self.port, "baseUrl": self.base_url,
                       "functionKey": self.function_key, "masterKey": self.master_key,
                       "systemKey": self.system_key,
                       "eventGridKey": self.eventgrid_key,
                       "startedAt": time.time(), "functions": [f["name"] for f in self.function_list()]}, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


def setup_logging(config: HostConfig) -> None:
    default = log_level(config.log_levels.get("default"), logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(default)
    fn_level = config.log_levels.get("Function")
    if fn_level:
        logging.getLogger("devhost.functions").setLevel(log_level(fn_level))
    for noisy in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def serve(options: StartOptions, app: LoadedApp, config: HostConfig) -> int:
    """Run devhost until SIGINT/SIGTERM; returns the process exit code."""
    try:
        host = DevHost(options, app, config)
    except DevhostError as exc:
        print(f"devhost: {exc}", file=sys.stderr, flush=True)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await host.start()
    except DevhostError as exc:
        print(f"devhost: {exc}", file=sys.stderr, flush=True)
        await host.stop()
        return 2
    except BaseException:
        await host.stop()
        raise
    await stop.wait()
    log.info("Stopping devhost")
    await host.stop()
    return 0
