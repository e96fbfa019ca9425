"""Fault injection: throttling, error rates, latency, replication lag and lying instantiate calls.

Everything is data (``DEFAULT_FAULTS`` shape), set with ``--faults FILE`` or ``/_emulator/faults``,
and deterministic under ``--seed`` (one dedicated random generator). Throttling uses token buckets
on the simulated clock with Graph's real limits as defaults (https://learn.microsoft.com/graph/throttling-limits):
identity writes 3,000 per 150 s per app+tenant; reports (``/auditLogs/provisioning``) and
``provisionOnDemand`` 5 per 10 s. A rejected request consumes nothing, so a client that retries before ``Retry-After``
has elapsed finds the bucket still empty and is throttled again.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass

from emulator.clock import Clock
from emulator.errors import GraphError

DEFAULT_FAULTS: dict = {
    "throttling": {
        "enabled": True,
        # How Retry-After is sent: "decimal" (e.g. 2.128, as in the Graph docs), "integer"
        # (rounded up) or "absent" (some identity 429s reportedly come without it).
        "retryAfter": "decimal",
        "writes": {"limit": 3000, "windowSeconds": 150},
        "reports": {"limit": 5, "windowSeconds": 10},
        "provisionOnDemand": {"limit": 5, "windowSeconds": 10},
    },
    # Random (rate, 0..1) or scheduled ("next": N requests) server errors on Graph requests.
    "errors": {"rate": 0.0, "next": 0, "statuses": [503, 504], "retryAfterSeconds": None},
    # Added delay on every Graph and Key Vault request (real milliseconds).
    "latency": {"ms": 0, "jitterMs": 0},
    # Newly created applications, service principals and jobs answer 404 for a while:
    # "seconds" of simulated time and/or the first "reads" reads; "flap" makes an object vanish
    # once more right after its first successful read. Synchronization calls answer "syncStatus"
    # meanwhile (404, or the transient 403/409 seen right after instantiate).
    # "replicas": the directory's read replicas, one lag (simulated seconds) each, e.g. [0, 5, 30];
    # every Graph request lands on one of them at random, which sees a create, PATCH or DELETE of
    # an application or service principal only once that write is its lag old (emulator/replication.py).
    # [] (the default) = one always-current copy.
    "replicationLag": {"seconds": 0, "reads": 0, "flap": False, "syncStatus": 404, "replicas": []},
    # instantiate creates the objects but answers "status" (504 or 404) for the next "count"
    # calls, or at random with "rate".
    "instantiate": {"status": 504, "count": 0, "rate": 0.0},
}

#: most read replicas the replicationLag fault simulates
MAX_REPLICAS = 16

_ERROR_CODES = {
    500: ("InternalServerError", "The service encountered an internal error."),
    502: ("BadGateway", "Bad gateway."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable. Please retry later."),
    504: ("GatewayTimeout", "The gateway did not receive a timely response."),
    507: ("insufficientStorage", "Insufficient storage."),
}


def validate_faults(config: dict, base: dict | None = None, path: str = "") -> dict:
    """Merge ``config`` over ``base`` (default: the defaults), checking names and types."""
    base = copy.deepcopy(DEFAULT_FAULTS if base is None else base)
    if not isinstance(config, dict):
        raise GraphError(400, "BadRequest", f"Fault setting '{path or 'faults'}' must be an object.")
    for key, value in config.items():
        where = f"{path}.{key}" if path else key
        if key not in base:
            raise GraphError(400, "BadRequest", f"Unknown fault setting '{where}'.")
        current = base[key]
        if isinstance(current, dict):
            base[key] = validate_faults(value, current, where)
        elif key == "retryAfter":
            if value not in ("decimal", "integer", "absent"):
                raise GraphError(400, "BadRequest", f"'{where}' must be decimal, integer or absent.")
            base[key] = value
        elif key == "statuses":
            if not isinstance(value, list) or not value or any(v not in _ERROR_CODES for v in value):
                raise GraphError(400, "BadRequest", f"'{where}' must be a non-empty list of {sorted(_ERROR_CODES)}.")
            base[key] = value
        elif key == "syncStatus":
            if value not in (403, 404, 409):
                raise GraphError(400, "BadRequest", f"'{where}' must be 403, 404 or 409.")
            base[key] = value
        elif key == "replicas":
            if not isinstance(value, list) or len(value) > MAX_REPLICAS or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0
                    for v in value):
                raise GraphError(400, "BadRequest", f"'{where}' must be a list of at most {MAX_REPLICAS} "
                                 "lags in seconds (numbers >= 0), one per replica.")
            base[key] = list(value)
        elif key == "status":
            if value not in (404, 500, 503, 504):
                raise GraphError(400, "BadRequest", f"'{where}' must be 404, 500, 503 or 504.")
            base[key] = value
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise GraphError(400, "BadRequest", f"'{where}' must be true or false.")
            base[key] = value
        else:
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise GraphError(400, "BadRequest", f"'{where}' must be a number >= 0.")
            if key == "rate" and value is not None and value > 1:
                raise GraphError(400, "BadRequest", f"'{where}' must be between 0 and 1.")
            if key == "limit" and (value is None or value < 1):
                raise GraphError(400, "BadRequest", f"'{where}' must be >= 1.")
            if key == "windowSeconds" and (value is None or value <= 0):
                raise GraphError(400, "BadRequest", f"'{where}' must be > 0.")
            base[key] = value
    return base


@dataclass
class _Bucket:
    tokens: float
    updated: float


class Faults:
    """Current fault configuration plus the state it needs (buckets, read counts, rng)."""

    def __init__(self, clock: Clock, seed: int, config: dict | None = None) -> None:
        self.clock = clock
        self.seed = seed
        self.reset(config)

    def reset(self, config: dict | None = None) -> None:
        self.config = validate_faults(config or {})
        self.rng = random.Random(f"faults-{self.seed}")
        # Its own generator: turning replicas on does not shift the error draws of a seeded run.
        self.routing = random.Random(f"replicas-{self.seed}")
        self.buckets: dict[tuple[str, str], _Bucket] = {}
        self.reads: dict[str, int] = {}

    def update(self, config: dict, replace: bool) -> dict:
        self.config = validate_faults(config, None if replace else self.config)
        self.buckets.clear()
        return copy.deepcopy(self.config)

    # -- throttling ---------------------------------------------------------------------------
    def throttle(self, buckets: list[str], app_id: str, tenant_id: str) -> float | None:
        """Take one token from each of ``buckets`` for the caller, or raise the 429.

        All or nothing: a request that one bucket throttles takes no token from the others
        (provisionOnDemand counts against its own 5-per-10-s budget *and* the write quota), so
        a throttled request consumes nothing. Returns the highest share of a quota in use after
        this request (for ``x-ms-throttle-limit-percentage``), or None when throttling is off.
        """
        throttling = self.config["throttling"]
        if not throttling["enabled"] or not buckets:
            return None
        now = self.clock.monotonic()
        states = []
        for bucket in buckets:
            limit = throttling[bucket]["limit"]
            rate = limit / throttling[bucket]["windowSeconds"]
            state = self.buckets.get((bucket, app_id))
            if state is None:
                state = self.buckets[(bucket, app_id)] = _Bucket(tokens=float(limit), updated=now)
            state.tokens = min(float(limit), state.tokens + (now - state.updated) * rate)
            state.updated = now
            if state.tokens < 1:
                wait_real = (1 - state.tokens) / rate / self.clock.scale
                headers = self._retry_after(wait_real, throttling["retryAfter"])
                kind = "Write" if bucket == "writes" else "Read"
                headers["x-ms-throttle-scope"] = f"Tenant_Application/{kind}/{app_id}/{tenant_id}"
                headers["x-ms-throttle-information"] = "WriteLimitExceeded" if bucket == "writes" else "ResourceUnitLimitExceeded"
                raise GraphError(429, "TooManyRequests", "Please retry again later.", headers)
            states.append((state, limit))
        usage = 0.0
        for state, limit in states:
            state.tokens -= 1
            usage = max(usage, 1 - state.tokens / limit)
        return usage

    @staticmethod
    def _retry_after(seconds: float, mode: str) -> dict:
        if mode == "absent":
            return {}
        if mode == "integer":
            return {"Retry-After": str(max(1, math.ceil(seconds)))}
        return {"Retry-After": f"{max(0.001, seconds):.3f}"}

    # -- random errors and latency ------------------------------------------------------------
    def maybe_error(self) -> None:
        errors = self.config["errors"]
        status = None
        if errors["next"] and errors["next"] > 0:
            errors["next"] -= 1
            status = errors["statuses"][0]
        elif errors["rate"] and self.rng.random() < errors["rate"]:
            status = self.rng.choice(errors["statuses"])
        if status is None:
            return
        code, message = _ERROR_CODES[status]
        headers = {}
        if errors["retryAfterSeconds"] is not None:
            headers["Retry-After"] = str(errors["retryAfterSeconds"])
        raise GraphError(status, code, message, headers)

    def latency_seconds(self) -> float:
        latency = self.config["latency"]
        jitter = self.rng.uniform(0, latency["jitterMs"]) if latency["jitterMs"] else 0.0
        return (latency["ms"] + jitter) / 1000.0

    # -- replication lag ----------------------------------------------------------------------
    def hidden(self, object_id: str, created: float | None) -> bool:
        """Whether a read of a newly created object should still answer 404."""
        lag = self.config["replicationLag"]
        if created is None or not (lag["seconds"] or lag["reads"] or lag["flap"]):
            return False
        if lag["seconds"] and self.clock.monotonic() - created < lag["seconds"]:
            return True
        reads = self.reads.get(object_id, 0)
        self.reads[object_id] = reads + 1
        if reads < lag["reads"]:
            return True
        return bool(lag["flap"]) and reads - lag["reads"] == 1

    def pick_replica(self) -> tuple[int, float] | None:
        """The read replica one request lands on, as (index, lag seconds); None when replicas are off.

        Uniformly at random (seeded): Graph routes app-only requests through gateways and load
        balancers to any replica, so two successive requests may see different ones.
        """
        lags = self.config["replicationLag"]["replicas"]
        if not lags:
            return None
        index = self.routing.randrange(len(lags))
        return index, float(lags[index])

    # -- instantiate ---------------------------------------------------------------------------
    def instantiate_failure(self) -> GraphError | None:
        fault = self.config["instantiate"]
        failing = False
        if fault["count"] and fault["count"] > 0:
            fault["count"] -= 1
            failing = True
        elif fault["rate"] and self.rng.random() < fault["rate"]:
            failing = True
        if not failing:
            return None
        status = fault["status"]
        if status == 404:
            return GraphError(404, "Request_ResourceNotFound", "Resource does not exist or one of its queried reference-property objects are not present.")
        code, message = _ERROR_CODES.get(status, _ERROR_CODES[504])
        return GraphError(status, code, message)
