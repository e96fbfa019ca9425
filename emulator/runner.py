"""Start and stop the emulator server on an event loop; compute and write its environment.

Used by ``python -m emulator`` (foreground, signal-driven) and by ``emulator.testing`` (a
background thread with its own loop). The env file is written only after the socket accepts
connections, so a script that waits for the file can use the emulator at once.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from emulator.app_keys import ORIGIN_KEY
from emulator.certs import ensure_certificates, server_ssl_context
from emulator.directory import check_directory_setting
from emulator.identity import managed_identity_header
from emulator.server import build_app
from emulator.state import EmulatorState, Options

DEFAULT_FOLDER = Path(".emulator")


@dataclass
class Started:
    """A running server: its aiohttp runner, state, public origin and client environment."""

    runner: web.AppRunner
    state: EmulatorState
    origin: str
    env: dict[str, str]


def load_faults_file(path: Path) -> dict:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the faults file must hold a JSON object")
    return data


def load_settings_file(path: Path) -> tuple[dict, dict]:
    """``--settings``: (directory settings, provisioning settings), checked before the server starts."""
    from emulator.provisioning.settings import EngineSettings  # the provisioning package loads lazily (state.py)

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or set(data) - {"directory", "provisioning"}:
        raise ValueError(f"{path}: expected a JSON object with 'directory' and/or 'provisioning'")
    directory, provisioning = data.get("directory") or {}, data.get("provisioning") or {}
    if not isinstance(directory, dict) or not isinstance(provisioning, dict):
        raise ValueError(f"{path}: 'directory' and 'provisioning' must be objects")
    for key, value in directory.items():
        check_directory_setting(key, value)
    capacity = provisioning.get("logCapacity", 1)
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError("'logCapacity' must be a positive integer")
    runtime = {k: v for k, v in provisioning.items() if k not in EngineSettings.START_ONLY}
    EngineSettings().with_changes(runtime)  # the same checks as PATCH /_emulator/settings
    EngineSettings.from_dict(provisioning)
    return directory, provisioning


def client_env(state: EmulatorState, origin: str, ca_pem: Path) -> dict[str, str]:
    """Every variable a client needs to reach this emulator (docs/architecture.md §4)."""
    workflow = state.directory.client_by_name("workflow")
    admin_client = state.directory.client_by_name("admin")
    ca = str(ca_pem.resolve())
    return {
        "AZURE_AUTHORITY_HOST": origin,
        "AZURE_TENANT_ID": state.directory.tenant_id,
        "AZURE_CLIENT_ID": workflow["clientId"],
        "AZURE_CLIENT_SECRET": workflow["secret"],
        "GRAPH_BASE_URL": origin,
        "KEY_VAULT_URL": origin,
        "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "false",
        "AZURE_DISABLE_INSTANCE_DISCOVERY": "true",
        "REQUESTS_CA_BUNDLE": ca,
        "SSL_CERT_FILE": ca,
        "EMULATOR_URL": f"{origin}/_emulator",
        "EMULATOR_ADMIN_CLIENT_ID": admin_client["clientId"],
        "EMULATOR_ADMIN_CLIENT_SECRET": admin_client["secret"],
        # Managed identity mode: export these as IDENTITY_ENDPOINT / IDENTITY_HEADER, unset the
        # AZURE_CLIENT_SECRET and set AZURE_CLIENT_ID to the identity's client id.
        "EMULATOR_IDENTITY_ENDPOINT": f"{origin}/managedIdentity/token",
        "EMULATOR_IDENTITY_HEADER": managed_identity_header(state.directory),
        "EMULATOR_MANAGED_IDENTITY_CLIENT_ID": state.directory.client_by_name("managed-identity")["clientId"],
    }


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """Dotenv file, written atomically (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{key}={value}\n" for key, value in env.items()), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def start_server(options: Options) -> Started:
    """Create state (loading ``--state-dir`` if present), bind, serve, write the env file."""
    folder = options.cert_dir or options.state_dir or DEFAULT_FOLDER
    certs = ensure_certificates(Path(folder))
    state = EmulatorState(options)
    if options.state_dir is not None:
        state.load(Path(options.state_dir))
    app = build_app(state)
    sock = _bind(options.host, options.port)
    port = sock.getsockname()[1]
    host = f"[{options.host}]" if ":" in options.host else options.host
    origin = f"https://{host}:{port}"
    app[ORIGIN_KEY]["origin"] = origin
    # Request lines up to 32 KiB (aiohttp's default is 8 KiB): long $filter queries get Graph's
    # answers from the app instead of aiohttp's plain-text 400, which has no OData envelope.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0, max_line_size=32768)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=server_ssl_context(certs))
    await site.start()
    env = client_env(state, origin, certs.ca_pem)
    if options.env_file is not None:
        write_env_file(options.env_file, env)
    return Started(runner=runner, state=state, origin=origin, env=env)


async def stop_server(started: Started) -> None:
    """Stop serving; the cleanup hook saves the tenant when ``--state-dir`` is set."""
    await started.runner.cleanup()
