"""Storage connections, and starting Azurite for ``UseDevelopmentStorage=true``.

Core Tools expects you to run Azurite yourself; devhost starts it for you when a queue trigger or
queue output uses a development-storage connection and nothing listens on its queue port. Azurite
runs with ``--skipApiVersionCheck`` (the pinned azure-storage-queue speaks a newer API version than
Azurite 3.35 knows), keeps its data in ``<state-dir>/azurite`` (so queued messages survive a devhost
restart), listens on loopback only, and is stopped when devhost exits. On Linux it also gets
``PR_SET_PDEATHSIG`` so a SIGKILLed devhost does not leave it running, and a devhost restarted on the
same state folder waits for that Azurite to finish writing its data and exit (:func:`wait_for_previous`).

The Azurite binary is ``$AZURITE_BIN``, else ``node_modules/.bin/azurite`` in the app folder or any
parent of it (or of the devhost package), else ``azurite`` on ``PATH``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlparse

from devhost.errors import ConfigError, StartupError

log = logging.getLogger("devhost.azurite")

DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class StorageConnection:
    """How to reach one storage account, resolved from an app setting."""

    setting: str
    connection_string: str | None = None  # None for identity-based connections
    queue_account_url: str | None = None  # identity-based: https://acct.queue.core.windows.net
    blob_port: int | None = None
    queue_port: int | None = None
    table_port: int | None = None

    @property
    def is_local_emulator(self) -> bool:
        """True when the account is Azurite on this machine (then devhost may start it)."""
        return self.queue_port is not None

    def queue_service_client(self):
        """An async ``QueueServiceClient`` (raw text messages: devhost does base64 itself)."""
        from azure.storage.queue.aio import QueueServiceClient

        if self.connection_string is not None:
            return QueueServiceClient.from_connection_string(self.connection_string)
        from azure.identity.aio import DefaultAzureCredential

        return QueueServiceClient(self.queue_account_url, credential=DefaultAzureCredential())


def dev_connection_string(blob_port: int = 10000, queue_port: int = 10001, table_port: int = 10002) -> str:
    """The connection string ``UseDevelopmentStorage=true`` stands for (ports adjustable)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob_port}/{DEV_ACCOUNT};"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/{DEV_ACCOUNT};"
        f"TableEndpoint=http://127.0.0.1:{table_port}/{DEV_ACCOUNT};"
    )


def _parse_conn(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip().lower()] = v.strip()
    return out


def _local_port(url: str | None) -> int | None:
    if not url:
        return None
    u = urlparse(url)
    if u.hostname in _LOCAL_HOSTS and u.port:
        return u.port
    return None


def resolve_connection(setting: str, env: dict[str, str] | None = None) -> StorageConnection:
    """Resolve a binding's ``connection`` the way the host does.

    Looks for the setting itself, then ``AzureWebJobs<setting>``; a connection string (or
    ``UseDevelopmentStorage=true``) or an identity-based ``<setting>__queueServiceUri`` /
    ``<setting>__accountName``.
    """
    env = os.environ if env is None else env
    for name in (setting, f"AzureWebJobs{setting}"):
        value = env.get(name)
        if value:
            break
    else:
        name, value = setting, None
    if value:
        parts = _parse_conn(value)
        if parts.get("usedevelopmentstorage", "").lower() == "true":
            return StorageConnection(name, dev_connection_string(), None, 10000, 10001, 10002)
        if "accountname" not in parts and "queueendpoint" not in parts and "sharedaccesssignature" not in parts:
            raise ConfigError(f"app setting '{name}' is not a storage connection string (expected AccountName=...;AccountKey=... or UseDevelopmentStorage=true)")
        qport = _local_port(parts.get("queueendpoint"))
        if qport is not None and parts.get("accountname", DEV_ACCOUNT) == DEV_ACCOUNT:
            return StorageConnection(name, value, None, _local_port(parts.get("blobendpoint")), qport,
                                     _local_port(parts.get("tableendpoint")))
        return StorageConnection(name, value)
    uri = env.get(f"{setting}__queueServiceUri")
    if not uri and env.get(f"{setting}__accountName"):
        uri = f"https://{env[f'{setting}__accountName']}.queue.core.windows.net"
    if uri:
        return StorageConnection(setting, None, uri)
    raise ConfigError(
        f"storage connection '{setting}' is not configured: set the app setting '{setting}' "
        f"(e.g. UseDevelopmentStorage=true in local.settings.json) or '{setting}__queueServiceUri'"
    )


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_azurite(start_dirs: list[str]) -> str:
    """Locate the Azurite executable (see module docstring for the search order)."""
    explicit = os.environ.get("AZURITE_BIN")
    if explicit:
        if not os.path.exists(explicit):
            raise StartupError(f"AZURITE_BIN={explicit} does not exist")
        return explicit
    for start in start_dirs:
        d = os.path.abspath(start)
        while True:
            cand = os.path.join(d, "node_modules", ".bin", "azurite")
            if os.path.exists(cand):
                return cand
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
    found = shutil.which("azurite")
    if found:
        return found
    raise StartupError("Azurite is needed for UseDevelopmentStorage=true but was not found: run 'npm ci' "
                       "(installs node_modules/.bin/azurite) or set AZURITE_BIN")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


_PID_FILE = "azurite.pid"


def wait_for_previous(state_dir: str, timeout: float = 30.0) -> None:
    """Wait until the Azurite a previous devhost started on ``state_dir`` has exited.

    A SIGKILLed devhost leaves its Azurite shutting down (``PR_SET_PDEATHSIG`` sends it SIGTERM):
    Azurite closes its ports first and writes its metadata (LokiJS, otherwise saved every 5 s) after.
    An Azurite started in between on the same folder loads the metadata from before, and a blob written
    a second before the crash reads as missing (seen: azurite.log shows the new blob service starting
    before the old one's "successfully closed"; tests/workflow/test_sub_batches.py's crash test then
    found its stored request gone).
    """
    path = os.path.join(state_dir, "azurite", _PID_FILE)
    try:
        with open(path) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_azurite(pid):
        time.sleep(0.05)


def _is_azurite(pid: int) -> bool:
    """True while ``pid`` is a running (not zombie) Azurite process (Linux /proc; elsewhere False)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return b"azurite" in cmdline and state != b"Z"


class AzuriteProcess:
    """An Azurite child process owned by devhost."""

    def __init__(self, proc: subprocess.Popen, queue_port: int, log_path: str) -> None:
        self.proc = proc
        self.queue_port = queue_port
        self.log_path = log_path

    @classmethod
    def start(cls, conn: StorageConnection, state_dir: str, search_dirs: list[str], timeout: float = 30.0) -> "AzuriteProcess":
        binary = find_azurite(search_dirs)
        location = os.path.join(state_dir, "azurite")
        os.makedirs(location, exist_ok=True)
        qport = conn.queue_port or 10001
        bport = conn.blob_port if conn.blob_port and not port_open(conn.blob_port) else _free_port()
        tport = conn.table_port if conn.table_port and not port_open(conn.table_port) else _free_port()
        log_path = os.path.join(state_dir, "azurite.log")
        cmd = [binary, "--silent", "--skipApiVersionCheck", "--disableTelemetry", "--location", location,
               "--blobHost", "127.0.0.1", "--blobPort", str(bport), "--queueHost", "127.0.0.1", "--queuePort", str(qport),
               "--tableHost", "127.0.0.1", "--tablePort", str(tport)]
        logf = open(log_path, "ab")
        try:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=location, preexec_fn=_die_with_parent if os.name == "posix" else None)
        except OSError as exc:
            raise StartupError(f"cannot start Azurite ({binary}): {exc}") from exc
        finally:
            logf.close()
        try:  # read by the next devhost on this folder (wait_for_previous)
            with open(os.path.join(location, _PID_FILE), "w") as f:
                f.write(str(proc.pid))
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StartupError(f"Azurite exited with code {proc.returncode}; see {log_path}")
            if port_open(qport) and (not conn.blob_port or port_open(bport)):
                log.info("Azurite started (pid %s): blob %s, queue %s, table %s, data in %s", proc.pid, bport, qport, tport, location)
                return cls(proc, qport, log_path)
            time.sleep(0.1)
        proc.kill()
        raise StartupError(f"Azurite did not listen on port {qport} within {timeout:.0f}s; see {log_path}")

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        log.info("Azurite stopped")
