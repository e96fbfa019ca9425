"""Run devhost as a subprocess from tests, demos and benchmarks.

``start_devhost`` starts ``python -m devhost start`` in a child process (so a test can SIGKILL it
and start it again on the same state folder), waits until it is ready and returns a
:class:`DevhostProcess` handle::

    from devhost.testing import start_devhost

    host = start_devhost("path/to/function_app.py", tmp_path / "state", env={"MY_SETTING": "x"})
    try:
        r = host.post("/api/orchestrators/hello", json={"city": "Tokyo"})   # function key added
        status = host.wait_for_instance(r.json()["id"], timeout=30)
        assert status["runtimeStatus"] == "Completed"
    finally:
        host.stop()

Readiness: the child writes ``<state_dir>/devhost.ready.json`` (pid, port, base URL, keys) after
its HTTP server, Durable engine and trigger listeners are running; ``start_devhost`` waits for that
file with the child's pid, so ``port=0`` (any free port) works. The child's stdout and stderr go to
``<state_dir>/devhost.log`` (appended across restarts; ``.logs()`` returns the path,
``.log_text()`` the content). If the child exits or does not become ready in time,
:class:`DevhostStartError` carries the tail of that log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import requests

from devhost.errors import DevhostError

if TYPE_CHECKING:
    from devhost.durable.engine import DurableEngine

READY_FILE = "devhost.ready.json"
LOG_FILE = "devhost.log"
DURABLE_WEBHOOK = "/runtime/webhooks/durabletask"  # the Durable HTTP API (system key or master key)
TERMINAL_STATUSES = {"Completed", "Failed", "Terminated", "Canceled"}
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DevhostStartError(DevhostError):
    """The devhost child exited or did not become ready; the message ends with its log tail."""


class DevhostProcess:
    """Handle on a running devhost child process (see module docstring)."""

    def __init__(self, app_path: str, state_dir: str, env: dict[str, str | None] | None, port: int,
                 function_key: str | None, virtual_clock: bool, timeout: float, extra_args: list[str]) -> None:
        self.app_path = os.path.abspath(str(app_path))
        self.state_dir = os.path.abspath(str(state_dir))
        self.env = dict(env or {})
        self.requested_port = port
        self.requested_function_key = function_key
        self.virtual_clock = virtual_clock
        self.timeout = timeout
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.base_url = ""
        self.port = 0
        self.function_key = ""
        self.master_key = ""
        self.system_key = ""  # durabletask_extension: opens /runtime/webhooks/durabletask
        self.eventgrid_key = ""  # eventgrid_extension: opens /runtime/webhooks/eventgrid
        self.session = requests.Session()

    # ------------------------------------------------------------------ lifecycle
    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def logs(self) -> str:
        """Path of the captured stdout/stderr of the child (all runs on this state folder)."""
        return os.path.join(self.state_dir, LOG_FILE)

    def log_text(self) -> str:
        try:
            with open(self.logs(), encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "devhost", "start", "--app", self.app_path, "--state-dir", self.state_dir,
               "--port", str(self.requested_port)]
        if self.requested_function_key:
            cmd += ["--function-key", self.requested_function_key]
        if self.virtual_clock:
            cmd.append("--virtual-clock")
        return cmd + self.extra_args

    def start(self) -> "DevhostProcess":
        """Start the child and wait until it is ready (called by :func:`start_devhost`)."""
        if self.proc is not None and self.proc.poll() is None:
            raise DevhostStartError(f"devhost is already running (pid {self.proc.pid})")
        os.makedirs(self.state_dir, exist_ok=True)
        ready = os.path.join(self.state_dir, READY_FILE)
        try:
            os.remove(ready)
        except FileNotFoundError:
            pass
        env = {**os.environ, **{k: v for k, v in self.env.items() if v is not None}}
        for k, v in self.env.items():
            if v is None:  # None removes an inherited variable (e.g. a developer's AzureWebJobsStorage)
                env.pop(k, None)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO_ROOT, env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.logs(), "ab") as log:
            log.write(f"\n===== devhost start {time.strftime('%Y-%m-%dT%H:%M:%S')} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self._command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=os.path.dirname(self.app_path))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise DevhostStartError(f"devhost exited with code {code} before it was ready:\n{self._tail()}")
            info = self._read_ready(ready)
            if info and info.get("pid") == self.proc.pid:
                self.port = int(info["port"])
                self.base_url = info["baseUrl"]
                self.function_key = info["functionKey"]
                self.master_key = info["masterKey"]
                self.system_key = info.get("systemKey", "")
                self.eventgrid_key = info.get("eventGridKey", "")
                return self
            time.sleep(0.05)
        self.kill()
        raise DevhostStartError(f"devhost did not become ready within {self.timeout:.0f}s:\n{self._tail()}")

    @staticmethod
    def _read_ready(path: str) -> dict | None:
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def _tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the child (a crash: no clean shutdown), and wait for it to be gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 20.0) -> int | None:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout``); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.session.close()
        self.session = requests.Session()
        return self.proc.returncode

    def restart(self, *, kill: bool = False) -> "DevhostProcess":
        """Stop (or SIGKILL with ``kill=True``) and start again on the same state folder.

        With ``port=0`` the new process may get another port: ``base_url`` is updated.
        """
        self.kill() if kill else self.stop()
        return self.start()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "DevhostProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP helpers
    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def request(self, method: str, path: str, *, key: bool = True, timeout: float = 30.0, **kwargs: Any) -> requests.Response:
        """HTTP request to ``base_url + path``; adds ``x-functions-key`` unless ``key=False``.

        The key is the one the route needs: the system key for the Durable HTTP API
        (``/runtime/webhooks/durabletask/...``), the function key for everything else.
        """
        headers = dict(kwargs.pop("headers", None) or {})
        if key and "x-functions-key" not in {k.lower() for k in headers}:
            headers["x-functions-key"] = self.key_for(path)
        return self.session.request(method, self.url(path), headers=headers, timeout=timeout, **kwargs)

    def key_for(self, path: str) -> str:
        """The key ``request`` sends for ``path`` (see there)."""
        if path.split("?", 1)[0].lstrip("/").startswith(DURABLE_WEBHOOK.lstrip("/")):
            return self.system_key
        if path.split("?", 1)[0].lstrip("/").lower().startswith("runtime/webhooks/eventgrid"):
            return self.eventgrid_key
        return self.function_key

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json=json, **kwargs)

    def run_function(self, name: str, input: str | None = None) -> requests.Response:
        """Run a timer or queue function now through the admin API (202; it runs in the background)."""
        body = {} if input is None else {"input": input}
        return self.session.post(self.url(f"/admin/functions/{name}"), json=body,
                                 headers={"x-functions-key": self.master_key}, timeout=30)

    # ------------------------------------------------------------------ durable helpers
    @property
    def durable_api(self) -> str:
        """Base URL of the Durable HTTP API (``.../runtime/webhooks/durabletask``; needs :attr:`system_key`)."""
        return self.base_url + DURABLE_WEBHOOK

    def durable_request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A Durable HTTP API call, ``path`` relative to :attr:`durable_api`, with the system key."""
        return self.request(method, DURABLE_WEBHOOK + "/" + path.lstrip("/"), **kwargs)

    def get_status(self, instance_id: str, *, show_history: bool = False, show_history_output: bool = False) -> dict | None:
        """The instance's status JSON, or None if unknown (404)."""
        params = {}
        if show_history:
            params["showHistory"] = "true"
        if show_history_output:
            params["showHistoryOutput"] = "true"
        r = self.durable_request("GET", f"instances/{instance_id}", params=params)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def wait_for_instance(self, instance_id: str, timeout: float = 60.0, poll: float = 0.1,
                          statuses: set[str] | None = None) -> dict:
        """Poll until the instance reaches one of ``statuses`` (default: a terminal status); return its status."""
        wanted = statuses or TERMINAL_STATUSES
        deadline = time.monotonic() + timeout
        last: dict | None = None
        while time.monotonic() < deadline:
            last = self.get_status(instance_id)
            if last and last.get("runtimeStatus") in wanted:
                return last
            if not self.is_running():
                raise DevhostStartError(f"devhost exited while waiting for {instance_id}:\n{self._tail()}")
            time.sleep(poll)
        raise TimeoutError(f"instance {instance_id} not in {sorted(wanted)} after {timeout}s; last status: {last}")

    def client_binding_json(self) -> str:
        """The ``durableClient`` binding JSON this host gives functions (admin route, master key)."""
        r = self.session.get(self.url("/admin/devhost/durable-client"), headers={"x-functions-key": self.master_key}, timeout=30)
        r.raise_for_status()
        return r.text

    def durable_client(self):
        """A real ``azure.durable_functions.DurableOrchestrationClient`` bound to this host (async methods).

        The SDK keeps one global aiohttp session bound to the event loop of its first call: use the
        client inside one event loop and ``await close_sdk_session()`` before that loop ends.
        """
        import azure.durable_functions as df

        return df.DurableOrchestrationClient(self.client_binding_json())


async def close_sdk_session() -> None:
    """Close the Durable SDK's global HTTP session (call at the end of the loop that used a client)."""
    from azure.durable_functions.models.utils import http_utils

    await http_utils._handle_request_error()  # the SDK's own "close and reset the session" helper


def local_storage_connection_string() -> str:
    """A development-storage connection string on free loopback ports.

    Pass it as ``AzureWebJobsStorage`` (``env=``) to get a private Azurite, started by devhost,
    that cannot collide with another Azurite on 10000-10002 (tests running side by side).
    """
    import socket

    from devhost.azurite import dev_connection_string

    ports = []
    socks = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return dev_connection_string(*ports)


def start_devhost(app_path: str | os.PathLike, state_dir: str | os.PathLike, env: dict[str, str | None] | None = None,
                  port: int = 0, function_key: str | None = None, virtual_clock: bool = False,
                  timeout: float = 60.0, extra_args: list[str] | None = None) -> DevhostProcess:
    """Start ``python -m devhost start`` as a subprocess and wait until it is ready.

    ``env`` is added to this process's environment for the child (and, as in ``func start``, wins
    over the app's ``local.settings.json``); a ``None`` value removes that variable. ``port=0`` picks a free port. Raises
    :class:`DevhostStartError` (with the log tail) if the child fails or is not ready in ``timeout``.
    """
    return DevhostProcess(str(app_path), str(state_dir), env, port, function_key, virtual_clock, timeout,
                          extra_args or []).start()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (for a server the test starts next)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_engine(app: Any, tmp_path: str | os.PathLike, scenario: Callable[[DurableEngine], Awaitable[Any]], *,
               virtual_clock: bool = True, host_config: dict | None = None,
               orchestrator_threads: int | None = None) -> Any:
    """Run ``scenario(engine)`` on a fresh in-process DurableEngine (state under ``tmp_path``), then stop it.

    ``app`` is a :class:`devhost.app_loader.LoadedApp`; ``orchestrator_threads``, when given, replaces the
    DEVHOST_ORCHESTRATOR_THREADS default. For engine-level tests (no subprocess, no HTTP server).
    """
    import asyncio

    from devhost.durable.engine import DurableEngine

    async def main() -> Any:
        engine = DurableEngine(app, os.path.join(os.fspath(tmp_path), "state"), host_config or {},
                               virtual_clock=virtual_clock)
        if orchestrator_threads is not None:
            engine.settings.orchestrator_threads = orchestrator_threads
        await engine.start()
        try:
            return await scenario(engine)
        finally:
            await engine.stop()

    return asyncio.run(main())
