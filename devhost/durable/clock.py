"""Engine time: real time, or a virtual clock that tests can jump forward.

In virtual mode ``now = real now + offset``; the engine raises the offset to the next durable timer
whenever it is otherwise idle, so a 1-hour timer in a test fires at once but orchestrator time
(``current_utc_datetime``) still moves by an hour. The offset is persisted by the store so that a
restarted host never moves time backwards.
"""
from __future__ import annotations

import datetime as dt
import time


class Clock:
    def __init__(self, virtual: bool = False, offset: float = 0.0) -> None:
        self.virtual = virtual
        self.offset = offset if virtual else 0.0

    def now(self) -> float:
        """Seconds since the epoch, engine time."""
        return time.time() + self.offset

    def now_datetime(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.now(), dt.timezone.utc)

    def advance(self, seconds: float) -> None:
        if not self.virtual:
            raise RuntimeError("the clock can only be advanced in virtual-clock mode")
        if seconds > 0:
            self.offset += seconds

    def advance_to(self, epoch: float) -> None:
        """Move virtual time to at least ``epoch`` (never backwards)."""
        self.advance(epoch - self.now() + 1e-6)
