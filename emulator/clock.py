"""Simulated time shared by the whole emulator.

Graph timestamps, token expiry, throttling windows, replication lag and the provisioning
simulation all read this clock, so a test or demo can speed time up (``scale``) or jump it forward
(``advance``) and every part moves together. ``now()`` is simulated time: it starts at the real
wall-clock time (or a given start) and runs ``scale`` simulated seconds per real second.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

SENTINEL = "0001-01-01T00:00:00Z"
"""Graph's "never" value for DateTimeOffset fields such as ``steadyStateFirstAchievedTime``."""


class Clock:
    """Thread-safe simulated UTC clock with a time scale and manual advance."""

    def __init__(self, scale: float = 1.0, start: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError("time scale must be > 0")
        self._lock = threading.Lock()
        self._scale = float(scale)
        self._base_sim = (start or datetime.now(timezone.utc)).astimezone(timezone.utc)
        self._base_real = time.monotonic()

    def now(self) -> datetime:
        """Current simulated time (UTC, timezone-aware)."""
        with self._lock:
            return self._now_locked()

    def _now_locked(self) -> datetime:
        elapsed = (time.monotonic() - self._base_real) * self._scale
        return self._base_sim + timedelta(seconds=elapsed)

    @property
    def scale(self) -> float:
        """Simulated seconds per real second."""
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        if value <= 0:
            raise ValueError("time scale must be > 0")
        with self._lock:
            # Re-base so that changing the scale never makes time jump.
            self._base_sim = self._now_locked()
            self._base_real = time.monotonic()
            self._scale = float(value)

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward (never backward)."""
        if seconds < 0:
            raise ValueError("cannot move the clock backward")
        with self._lock:
            self._base_sim += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        """Simulated seconds since an arbitrary origin; for rate windows and delays."""
        return self.now().timestamp()

    def to_state(self) -> dict:
        """JSON-serialisable state (current simulated time and scale)."""
        return {"now": iso(self.now()), "scale": self._scale}

    def load_state(self, state: dict) -> None:
        """Continue from a saved state; simulated time never goes back across a restart."""
        saved = parse_iso(state["now"])
        with self._lock:
            if saved > self._now_locked():
                self._base_sim = saved
                self._base_real = time.monotonic()
            self._scale = float(state.get("scale", self._scale))


def iso(dt: datetime) -> str:
    """Graph's DateTimeOffset text: ``2026-11-27T10:00:00Z`` or ``...:00.1234567Z`` (7 digits)."""
    dt = dt.astimezone(timezone.utc)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        return f"{base}.{dt.microsecond:06d}0Z"
    return base + "Z"


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` or offset, up to 7 fractional digits, or a bare date)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    if "." in value:
        head, _, rest = value.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        value = f"{head}.{(digits + '000000')[:6]}{rest}"
    if len(value) == 10:
        value += "T00:00:00+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)
