"""Helpers for the workflow's end-to-end tests: the emulator + devhost stack and what tests ask of it.

A :class:`Stack` is one in-process emulator (its own tenant, time scale and faults) plus one devhost
subprocess running the real ``function_app.py`` with the emulator's environment and an Azurite
that devhost starts on free ports. Every HTTP response the tests receive from devhost is kept in
``responses`` so the secret scan can read them all.
"""

from __future__ import annotations

import functools

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devhost.azurite import dev_connection_string
from devhost.testing import DevhostProcess, free_port, start_devhost
from emulator.testing import RunningEmulator, start_emulator
from polling import wait_until as _wait_until

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "function_app.py"
EXAMPLES = ROOT / "examples"

#: fast polling for local runs; every other setting keeps its default
FAST_SETTINGS = {
    "HEALTH_SWEEP_SCHEDULE": "0 0 0 1 1 *",  # once a year: tests start sweeps themselves
    "MONITOR_FIRST_POLL_SECONDS": "1",
    "MONITOR_MAX_POLL_SECONDS": "2",
    "MONITOR_DEADLINE_SECONDS": "900",
    "ACTIVITY_RETRY_FIRST_INTERVAL_SECONDS": "1",
    # a new service principal reads back VISIBILITY_CONSECUTIVE_READS (5) times this far apart: 1 s per
    # instance here, not the 20 s of the real-tenant default (5 s apart)
    "VISIBILITY_POLL_SECONDS": "0.25",
    "PYTHON_THREADPOOL_THREAD_COUNT": "16",
}


#: the workflow's end-to-end waits are longer and poll less often than devhost's unit-level ones
wait_until = functools.partial(_wait_until, timeout=60.0, interval=0.2)


def load_example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def make_batch(request_id: str, count: int, *, prefix: str, target: str = "contoso") -> dict:
    """A request of ``count`` healthy custom-SCIM instances (one target of emulator/data/targets.json)."""
    address, secret = {
        "contoso": ("https://scim.contoso.test/scim/v2", "scim-contoso-token"),
        "fabrikam": ("https://scim.fabrikam.test/scim/v2", "scim-fabrikam-token"),
        "slow": ("https://scim.slow.test/scim/v2", "scim-slow-token"),
        "wingtip": ("https://scim.wingtip.test/scim/v2", "scim-wingtip-token"),
    }[target]
    return {"requestId": request_id, "instances": [
        {"applicationTemplate": {"displayName": "Custom"}, "displayName": f"{prefix} {i:03d}",
         "credentials": {"BaseAddress": address, "SecretToken": {"keyVaultSecret": secret}},
         "assignments": {"groups": ["SaaS Pilot"]}}
        for i in range(1, count + 1)]}


class Stack:
    """Emulator + devhost for one test module (see module docstring)."""

    def __init__(self, root: Path, *, time_scale: float = 30.0, faults: dict | None = None,
                 env: dict[str, str] | None = None, virtual_clock: bool = False,
                 provisioning_settings: dict | None = None) -> None:
        self.root = root
        self.emulator: RunningEmulator = start_emulator(time_scale=time_scale, faults=faults,
                                                         provisioning_settings=provisioning_settings)
        self.storage = dev_connection_string(free_port(), free_port(), free_port())
        self.env = {**self.emulator.env, **FAST_SETTINGS, "AzureWebJobsStorage": self.storage, **(env or {})}
        self.responses: list[str] = []
        self.host: DevhostProcess = start_devhost(APP, root / "devhost", env=self.env,
                                                  virtual_clock=virtual_clock, timeout=90)

    # ---------------------------------------------------------------- HTTP through devhost
    def request(self, method: str, path: str, **kwargs: Any):
        response = self.host.request(method, path, **kwargs)
        self.responses.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response

    def submit(self, body: dict) -> str:
        response = self.request("POST", "/api/provisioning-requests", json=body)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def summary(self, batch_or_request_id: str) -> dict:
        response = self.request("GET", f"/api/provisioning-requests/{batch_or_request_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, instance_id: str, timeout: float = 120.0) -> dict:
        status = self.host.wait_for_instance(instance_id, timeout=timeout, poll=0.25)
        self.responses.append(json.dumps(status))
        return status

    def durable_instances(self) -> list[str]:
        """Every orchestration instance id devhost knows (Durable HTTP API list, all pages)."""
        ids: list[str] = []
        token = None
        while True:
            r = self.host.durable_request("GET", "instances", params={"showInput": "false", "top": "1000"},
                                          headers={"x-ms-continuation-token": token} if token else {})
            r.raise_for_status()
            ids += [row["instanceId"] for row in r.json()]
            token = r.headers.get("x-ms-continuation-token")
            if not token:
                return sorted(ids)

    # ---------------------------------------------------------------- emulator white-box views
    def applications_by_name(self) -> Counter:
        return Counter(app.get("displayName") for app in list(self.emulator.state.directory.applications.values()))

    def service_principals_by_name(self) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        for sp in list(self.emulator.state.directory.service_principals.values()):
            found.setdefault(sp.get("displayName"), []).append(sp)
        return found

    def jobs_of(self, sp_id: str) -> list[dict]:
        return self.emulator.state.provisioning.list_jobs(sp_id)

    def graph_requests(self, **filters: Any) -> list[dict]:
        return self.emulator.admin.requests(**filters)["value"]

    # ---------------------------------------------------------------- queues (Azurite)
    def queue(self, name: str) -> QueueClient:
        client = QueueClient.from_connection_string(self.storage, name, message_encode_policy=TextBase64EncodePolicy(),
                                                    message_decode_policy=TextBase64DecodePolicy())
        try:
            client.create_queue()
        except Exception:  # already there
            pass
        return client

    # ---------------------------------------------------------------- what the secret scan reads
    def task_hub_bytes(self) -> bytes:
        """Every SQLite file devhost keeps (task hub), plus a dump of its rows (in case of compression)."""
        blobs = []
        for path in sorted((self.root / "devhost").rglob("*")):
            if path.is_file() and path.suffix in {".db", ".sqlite", ".sqlite3", ".db-wal", ".db-shm"}:
                blobs.append(path.read_bytes())
                if path.suffix in {".db", ".sqlite", ".sqlite3"}:
                    blobs.append(_dump_sqlite(path))
        return b"\n".join(blobs)

    def stop(self) -> None:
        try:
            self.host.stop()
        finally:
            self.emulator.stop()


def _dump_sqlite(path: Path) -> bytes:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return "\n".join(str(row) for row in db.iterdump()).encode("utf-8", "replace")
    except sqlite3.Error:
        return b""


def secret_values(stack: Stack) -> set[str]:
    """Every secret value in play: the seeded Key Vault secrets and the emulator client's secret."""
    seeded = json.loads((ROOT / "emulator" / "data" / "secrets.json").read_text())["secrets"]
    values = {entry["value"] for entry in seeded.values()}
    values.add(stack.env["AZURE_CLIENT_SECRET"])
    return {v for v in values if v and len(v) >= 6}


def secret_names() -> set[str]:
    """The Key Vault secret names (references may appear anywhere; only values must not)."""
    return set(json.loads((ROOT / "emulator" / "data" / "secrets.json").read_text())["secrets"])
