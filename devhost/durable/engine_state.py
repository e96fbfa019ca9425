"""EngineState: the state the parts of ``DurableEngine`` share, declared once for readers and type checkers.

``DurableEngine.__init__`` (devhost/durable/engine.py) creates every attribute listed here; the four
parts (``Dispatch``, ``ActivityWorkers``, ``Episodes``, ``ClientOperations``) derive from this class
and read or change them. The methods declared under ``TYPE_CHECKING`` are the calls one part makes
into another; they have no runtime body here (the part that owns each is named beside it).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devhost.durable.clock import Clock
from devhost.durable.engine_settings import EngineSettings
from devhost.durable.replayer import Replayer
from devhost.durable.store import ActivityItem, InstanceRow, Message, Store


@dataclass
class _Cached:
    """The current execution of one instance, as the episodes see it."""

    row: InstanceRow
    events: list[dict] = field(default_factory=list)  # IsPlayed already true for all of these
    played: list[str] = field(default_factory=list)  # JSON text of ``events`` (IsPlayed true)
    blocked: Replayer | None = None  # the shim's state while it waits on an unfinished task


class EngineState:
    """Attributes shared by the parts of DurableEngine (no behaviour; see the module docstring)."""

    app: Any
    settings: EngineSettings
    clock: Clock
    store: Store | None
    _activity_takes_invocation_id: bool
    # dispatch
    _cache: dict[str, _Cached]  # the current execution of running instances (episodes fill it)
    _ready: set[str]
    _busy: set[str]
    _locks: dict[str, asyncio.Lock]
    _timers: list[tuple[float, str]]
    _outstanding: dict[str, int]  # activity work items and children queued or running, per instance
    _episode_cost: dict[str, float]  # seconds the instance's last episode took
    _deferred: set[str]
    _finished_waiters: dict[str, list[asyncio.Future]]
    _episodes: set[asyncio.Task]
    _wake: asyncio.Event
    _timer_wake: asyncio.Event
    _running: bool
    # activity workers
    _activity_queue: asyncio.Queue[ActivityItem] | None
    _activities_in_flight: int
    _completions: list[tuple[ActivityItem, Message, dict]]
    _flush_wake: asyncio.Event
    # episodes
    _orch_pool: concurrent.futures.ThreadPoolExecutor | None
    episode_count: int
    episode_seconds: float
    counters: dict[str, int]  # {"episodes", "replayedEvents"}: replay's cost (GET /admin/host/status)

    if TYPE_CHECKING:
        # engine.py
        def resolve_activity(self, name: str) -> str: ...
        def resolve_orchestrator(self, name: str) -> str: ...
        # dispatch.py
        def _lock(self, instance_id: str) -> asyncio.Lock: ...
        def _schedule_instance(self, instance_id: str, visible_at: float, now: float | None = None) -> None: ...
        def _deliver(self, messages: list[Message]) -> None: ...
        def _work_started(self, instance_id: str) -> None: ...
        def _work_done(self, instance_id: str) -> None: ...
        def _notify_finished(self, row: InstanceRow) -> None: ...
        def _result_changes_nothing(self, instance_id: str, execution_id: str | None, event: dict) -> bool: ...
        def _wake_after_results(self, instance_id: str) -> None: ...
        # activity_workers.py
        def _enqueue_activity(self, item: ActivityItem) -> None: ...
        # episodes.py
        async def _episode(self, instance_id: str) -> None: ...
