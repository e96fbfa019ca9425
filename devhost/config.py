"""``local.settings.json`` and ``host.json``: read once at start, as ``func start`` does.

* ``local.settings.json`` ``Values`` become environment variables, **except** those already set in
  the process environment: the environment wins (Core Tools logs "Skipping 'X' from local settings
  as it's already defined in current environment variables" and does the same). ``Host.LocalHttpPort``
  is the default port when ``--port`` is not given.
* ``host.json``: the parts devhost honours are parsed into :class:`HostConfig`; the full
  ``extensions.durableTask`` dict is handed to the Durable engine unchanged.
* ``%NAME%`` in binding values (queue names, routes, schedules) resolves from app settings
  (the environment), as the host's ``[AutoResolve]`` attributes do.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from devhost.errors import ConfigError

log = logging.getLogger("devhost")

_SETTING_REF = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d+))?$")

#: Functions' own request body limit (bytes); the app setting of the same name overrides it.
DEFAULT_BODY_LIMIT = 100 * 1024 * 1024


def parse_timespan(text: str | int | float, what: str = "timespan") -> float:
    """``[d.]hh:mm:ss[.fff]`` (a .NET TimeSpan) -> seconds. Numbers are taken as seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    m = _TIMESPAN.match(str(text).strip())
    if not m:
        raise ConfigError(f"{what}: {text!r} is not a TimeSpan like '00:05:00' or '1.00:00:00'")
    neg, days, h, mi, s, frac = m.groups()
    seconds = int(days or 0) * 86400 + int(h) * 3600 + int(mi) * 60 + int(s) + float(f"0.{frac}" if frac else 0)
    return -seconds if neg else seconds


def timespan_text(seconds: float) -> str:
    """A .NET TimeSpan in its "c" format, ``[d.]hh:mm:ss[.fffffff]`` (how host.json timeouts are shown)."""
    ticks = round(seconds * 10_000_000)
    days, ticks = divmod(ticks, 86400 * 10_000_000)
    whole, fraction = divmod(ticks, 10_000_000)
    hours, rest = divmod(whole, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    if days:
        text = f"{days}.{text}"
    return text + (f".{fraction:07d}" if fraction else "")


def resolve_setting_refs(value: str, env: dict[str, str] | None = None, what: str = "binding") -> str:
    """Replace every ``%NAME%`` with the app setting ``NAME``; a missing setting is a ConfigError."""
    env = os.environ if env is None else env

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in env:
            raise ConfigError(f"{what}: app setting '{name}' referenced as %{name}% is not set")
        return env[name]

    return _SETTING_REF.sub(sub, value)


@dataclass
class QueuesConfig:
    """``extensions.queues`` with the Storage queues extension 5.x defaults.

    The defaults are the host.json table of
    https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue (host.json settings).
    """

    batch_size: int = 16
    new_batch_threshold: int | None = None  # default batchSize/2 * CPU count (computed by the listener)
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    def effective_new_batch_threshold(self) -> int:
        if self.new_batch_threshold is not None:
            return self.new_batch_threshold
        return max(1, self.batch_size // 2) * (os.cpu_count() or 1)


@dataclass
class HostConfig:
    """The parts of ``host.json`` devhost honours (see README's support table)."""

    raw: dict = field(default_factory=dict)
    function_timeout: float | None = None  # seconds; None = unlimited
    route_prefix: str = "api"
    queues: QueuesConfig = field(default_factory=QueuesConfig)
    durable_task: dict = field(default_factory=dict)
    log_levels: dict[str, str] = field(default_factory=dict)


_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "information": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL, "none": logging.CRITICAL + 10}


def log_level(name: str | None, default: int = logging.INFO) -> int:
    """Map a host.json ``logging.logLevel`` value (Information, Warning...) to a Python level."""
    if not name:
        return default
    return _LEVELS.get(str(name).strip().lower(), default)


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} ({path}) is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} ({path}) must be a JSON object")
    return data


def load_host_json(script_root: str) -> HostConfig:
    """Parse ``host.json`` in the script root (absent file = all defaults)."""
    path = os.path.join(script_root, "host.json")
    raw = _read_json(path, "host.json")
    cfg = HostConfig(raw=raw)
    problems: list[str] = []
    timeout = raw.get("functionTimeout")
    if timeout not in (None, "", "-1", -1):
        try:
            cfg.function_timeout = parse_timespan(timeout, "host.json functionTimeout")
        except ConfigError as exc:
            problems.append(str(exc))
    ext = raw.get("extensions") or {}
    http = ext.get("http") or {}
    if "routePrefix" in http:
        cfg.route_prefix = str(http["routePrefix"]).strip("/")
    q = ext.get("queues") or {}
    qc = cfg.queues
    try:
        if "batchSize" in q:
            qc.batch_size = int(q["batchSize"])
            if not 1 <= qc.batch_size <= 32:
                problems.append(f"host.json extensions.queues.batchSize must be 1..32, got {qc.batch_size}")
        if "newBatchThreshold" in q:
            qc.new_batch_threshold = int(q["newBatchThreshold"])
        if "maxDequeueCount" in q:
            qc.max_dequeue_count = int(q["maxDequeueCount"])
            if qc.max_dequeue_count < 1:
                problems.append("host.json extensions.queues.maxDequeueCount must be at least 1")
        if "maxPollingInterval" in q:
            qc.max_polling_interval = max(0.1, parse_timespan(q["maxPollingInterval"], "host.json extensions.queues.maxPollingInterval"))
        if "visibilityTimeout" in q:
            qc.visibility_timeout = parse_timespan(q["visibilityTimeout"], "host.json extensions.queues.visibilityTimeout")
        if "messageEncoding" in q:
            qc.message_encoding = str(q["messageEncoding"]).strip().lower()
            if qc.message_encoding not in ("base64", "none"):
                problems.append(f"host.json extensions.queues.messageEncoding must be 'base64' or 'none', got {q['messageEncoding']!r}")
    except (TypeError, ValueError) as exc:
        problems.append(f"host.json extensions.queues: {exc}")
    except ConfigError as exc:
        problems.append(str(exc))
    cfg.durable_task = dict(ext.get("durableTask") or {})
    levels = ((raw.get("logging") or {}).get("logLevel")) or {}
    cfg.log_levels = {str(k): str(v) for k, v in levels.items()} if isinstance(levels, dict) else {}
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg


@dataclass
class LocalSettings:
    values: dict[str, str]
    applied: list[str]
    skipped: list[str]
    local_http_port: int | None = None


def apply_local_settings(script_root: str, environ: Any = None) -> LocalSettings:
    """Copy ``local.settings.json`` ``Values`` into the environment; existing variables win."""
    environ = os.environ if environ is None else environ
    path = os.path.join(script_root, "local.settings.json")
    raw = _read_json(path, "local.settings.json")
    if raw.get("IsEncrypted") is True:
        raise ConfigError("local.settings.json is encrypted (IsEncrypted=true); devhost reads plain values only")
    values = raw.get("Values") or {}
    if not isinstance(values, dict):
        raise ConfigError("local.settings.json 'Values' must be an object of strings")
    applied, skipped = [], []
    for k, v in values.items():
        if v is None:
            continue
        if k in environ:
            skipped.append(k)
            continue
        environ[k] = v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) else str(v)
        applied.append(k)
    port = (raw.get("Host") or {}).get("LocalHttpPort")
    return LocalSettings(values={k: str(v) for k, v in values.items()}, applied=applied, skipped=skipped,
                         local_http_port=int(port) if port else None)
