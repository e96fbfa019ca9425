"""Run the emulator from tests and benchmarks: in-process (a background thread with its own event
loop) or as a subprocess (for tests that restart or kill it).

    emu = start_emulator()              # free port, in-memory tenant
    emu.url, emu.env, emu.admin.reset()
    emu.stop()

``emu.admin`` is a small ``requests`` client for the ``/_emulator/`` admin API.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from emulator.runner import Started, read_env_file, start_server, stop_server
from emulator.state import Options

REPO_ROOT = Path(__file__).resolve().parent.parent


class AdminError(RuntimeError):
    """The admin API answered an error (message = its error body)."""


class AdminClient:
    """Client for ``/_emulator/``; every method returns the decoded JSON answer."""

    def __init__(self, base_url: str, ca_bundle: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca_bundle = ca_bundle
        self.session = requests.Session()

    def _call(self, method: str, path: str, json: Any = None, params: dict | None = None) -> Any:
        response = self.session.request(method, f"{self.base_url}/{path}", json=json, params=params, timeout=30,
                                        verify=self.ca_bundle)  # per call: REQUESTS_CA_BUNDLE in the env would override session.verify
        if response.status_code >= 400:
            raise AdminError(f"{method} /_emulator/{path} -> {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def health(self) -> dict:
        return self._call("GET", "health")

    def state(self) -> dict:
        """Summary: tenant id, clients (ids, roles, Key Vault access), object counts, faults, clock."""
        return self._call("GET", "state")

    def reset(self, seed: int | None = None, keep_faults: bool = False) -> dict:
        """Back to the seeded tenant; faults back to the start settings unless ``keep_faults``.

        Another ``seed`` means another tenant id and other client ids/secrets: read them from
        ``state()`` / ``clients()`` then (``RunningEmulator.env`` keeps the start values).
        """
        body: dict = {"keepFaults": keep_faults}
        if seed is not None:
            body["seed"] = seed
        return self._call("POST", "reset", json=body)

    def seed(self, users: list | None = None, groups: list | None = None, clients: list | None = None, secrets: dict | None = None) -> dict:
        """Add users ``{displayName,...}``, groups ``{displayName, members:[ids]}``, clients, secrets."""
        return self._call("POST", "seed", json={"users": users or [], "groups": groups or [], "clients": clients or [], "secrets": secrets or {}})

    def seed_fleet(self, count: int, tag: str, template_id: str, **spec: Any) -> dict:
        """Add ``count`` managed instances at once (``emulator.fleet``: prefix, states, labels, returnIds)."""
        return self._call("POST", "seed-fleet", json={"count": count, "tag": tag, "templateId": template_id, **spec})

    def clients(self) -> list[dict]:
        """Registered clients, with ``clientId``, ``secret``, ``name``, ``servicePrincipalId``, ``keyVault``."""
        return self._call("GET", "clients")["value"]

    def client(self, name: str) -> dict:
        """One client by its name: ``workflow``, ``admin``, ``unprivileged``, ``managed-identity``."""
        for client in self.clients():
            if client["name"] == name or client["clientId"] == name:
                return client
        raise KeyError(name)

    def add_client(self, name: str, roles: list[str], key_vault: str = "none", **extra: Any) -> dict:
        return self._call("POST", "clients", json={"name": name, "roles": roles, "keyVault": key_vault, **extra})

    def faults(self) -> dict:
        return self._call("GET", "faults")

    def set_faults(self, replace: bool = True, **config: Any) -> dict:
        """Set faults, e.g. ``set_faults(throttling={"writes": {"limit": 20, "windowSeconds": 1}})``.

        ``replace=True`` starts from the defaults; ``False`` merges into the current settings.
        """
        return self._call("POST" if replace else "PATCH", "faults", json=config)

    def clear_faults(self) -> dict:
        return self._call("DELETE", "faults")

    def clock(self) -> dict:
        return self._call("GET", "clock")

    def advance(self, seconds: float) -> dict:
        """Jump simulated time forward (the provisioning simulation catches up at once)."""
        return self._call("POST", "clock", json={"advanceSeconds": seconds})

    def set_scale(self, scale: float) -> dict:
        return self._call("POST", "clock", json={"scale": scale})

    def requests(self, **filters: Any) -> dict:
        """Request log: ``{"count", "counts": {byStatus, byRoute, byCaller, byKind}, "value": [...]}``.

        Filters: ``kind`` (graph/identity/keyvault), ``method``, ``pathContains``, ``routeContains``
        (e.g. ``"synchronization/jobs"``), ``caller`` (client id), ``status``, ``since`` (Unix time).
        """
        return self._call("GET", "requests", params={k: str(v) for k, v in filters.items()})

    def clear_requests(self) -> None:
        self._call("DELETE", "requests")

    def token(self, client: str = "workflow", audience: str = "graph", lifetime_seconds: int = 3600, **claims: Any) -> str:
        """A token minted directly (e.g. expired with a negative lifetime, or another audience)."""
        body = {"client": client, "audience": audience, "lifetimeSeconds": lifetime_seconds, "claims": claims}
        return self._call("POST", "tokens", json=body)["access_token"]

    def subscribe_events(self, endpoint: str, **options: Any) -> dict:
        """Subscribe ``endpoint`` to the vault's events (``schema``, ``includedEventTypes``, ``maxDeliveryAttempts``)."""
        return self._call("POST", "eventgrid/subscriptions", json={"endpoint": endpoint, **options})

    def event_deliveries(self) -> list[dict]:
        """Every delivery attempt so far: ``{subscription, eventId, eventType, subject, attempt, status}``."""
        return self._call("GET", "eventgrid/subscriptions")["deliveries"]

    def settings(self, **directory: Any) -> dict:
        """Read or change directory settings (``instantiateOwnsApplication``, ``synchronizationDeniedStatus``, ...)."""
        if directory:
            return self._call("PATCH", "settings", json={"directory": directory})
        return self._call("GET", "settings")

    def provisioning_settings(self, **changes: Any) -> dict:
        """Read or change the provisioning simulation's knobs (camelCase, e.g. ``secretKeyErrorStatus=400``)."""
        if changes:
            return self._call("PATCH", "settings", json={"provisioning": changes})["provisioning"]
        return self._call("GET", "settings")["provisioning"]


class RunningEmulator:
    """Handle on a started emulator (in-process thread or subprocess)."""

    def __init__(self, env: dict[str, str], stopper, process: subprocess.Popen | None = None, started: Started | None = None) -> None:
        self.env = dict(env)
        self.url = env["GRAPH_BASE_URL"]
        self.ca_bundle = env["REQUESTS_CA_BUNDLE"]
        self.admin = AdminClient(env["EMULATOR_URL"], self.ca_bundle)
        self.process = process
        self.started = started
        self._stopper = stopper

    @property
    def state(self):
        """The in-process ``EmulatorState`` (in-process mode only; for white-box checks)."""
        if self.started is None:
            raise RuntimeError("state is only available for an in-process emulator")
        return self.started.state

    def stop(self) -> None:
        if self._stopper is not None:
            self._stopper()
            self._stopper = None

    def kill(self) -> None:
        """SIGKILL a subprocess emulator (no final save)."""
        if self.process is None:
            raise RuntimeError("kill() needs a subprocess emulator")
        self.process.kill()
        self.process.wait(timeout=10)
        self._stopper = None

    def __enter__(self) -> "RunningEmulator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_emulator(
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    state_dir: str | Path | None = None,
    cert_dir: str | Path | None = None,
    seed: int = 0,
    time_scale: float = 1.0,
    faults: dict | None = None,
    secrets_file: str | Path | None = None,
    env_file: str | Path | None = None,
    directory_settings: dict | None = None,
    provisioning_settings: dict | None = None,
) -> RunningEmulator:
    """Start an emulator in a background thread of this process and wait until it serves."""
    options = Options(
        host=host,
        port=port,
        state_dir=Path(state_dir) if state_dir else None,
        cert_dir=Path(cert_dir) if cert_dir else (None if state_dir else REPO_ROOT / ".emulator"),
        env_file=Path(env_file) if env_file else None,
        seed=seed,
        time_scale=time_scale,
        faults=faults,
        secrets_file=Path(secrets_file) if secrets_file else None,
        directory_settings=dict(directory_settings or {}),
        provisioning_settings=dict(provisioning_settings or {}),
    )
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["started"] = loop.run_until_complete(start_server(options))
        except BaseException as error:  # reported to the caller below
            box["error"] = error
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(stop_server(box["started"]))
        loop.close()

    thread = threading.Thread(target=run, name="emulator", daemon=True)
    thread.start()
    ready.wait(timeout=30)
    if "error" in box:
        raise RuntimeError(f"emulator failed to start: {box['error']}") from box["error"]
    if "started" not in box:
        raise RuntimeError("emulator did not start within 30 s")

    def stop() -> None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=15)

    started: Started = box["started"]
    return RunningEmulator(started.env, stop, started=started)


def start_emulator_process(
    *,
    state_dir: str | Path | None = None,
    port: int = 0,
    seed: int = 0,
    time_scale: float = 1.0,
    faults_file: str | Path | None = None,
    extra_args: list[str] | None = None,
    timeout: float = 20.0,
) -> RunningEmulator:
    """Start ``python -m emulator`` as a subprocess (stop = SIGTERM + wait; ``kill()`` = SIGKILL)."""
    workdir = Path(tempfile.mkdtemp(prefix="emulator-proc-"))
    env_file = workdir / "emulator.env"
    args = [sys.executable, "-m", "emulator", "--port", str(port), "--env-file", str(env_file), "--seed", str(seed),
            "--time-scale", str(time_scale), "--quiet"]
    if state_dir:
        args += ["--state-dir", str(state_dir)]
    else:
        args += ["--cert-dir", str(REPO_ROOT / ".emulator")]
    if faults_file:
        args += ["--faults", str(faults_file)]
    args += extra_args or []
    process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=open(workdir / "stderr.log", "wb"))
    deadline = time.monotonic() + timeout
    while not env_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"emulator exited with {process.returncode}: {(workdir / 'stderr.log').read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("emulator subprocess did not write its env file in time")
        time.sleep(0.02)

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    return RunningEmulator(read_env_file(env_file), stop, process=process)


def apply_env(env: dict[str, str]) -> dict[str, str | None]:
    """Set ``env`` in ``os.environ``; return the previous values (for restoring)."""
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    return previous
