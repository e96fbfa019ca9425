"""DurableEngine: the local Durable extension, composed of its four parts.

Flow of one orchestration (the extension's side of it: notes "Episodes" and "Action replay" in
devhost/durable/README.md), and the module that holds each step:

1. A client operation (start, raise event, terminate, ...; ``client_ops.ClientOperations``) or a
   finished activity writes a *message* for the instance into SQLite and marks the instance ready.
2. The dispatcher (``dispatch.Dispatch``) runs one *episode* per ready instance (never two for the
   same instance, at most ``maxConcurrentOrchestratorFunctions`` at once) and fires due timers.
3. An episode (``episodes.Episodes``) takes **every** visible message for the instance (batching: a
   fan-in of N results that arrive together costs one replay), appends ``OrchestratorStarted`` + the
   new events to the cached history, calls the SDK through ``LoadedApp.call_orchestrator``, and
   replays the returned actions with the extension's shim (``replayer``). Its effects (history
   events, consumed messages, activity work items, timer messages, sub-orchestration starts,
   completion message to the parent, instance row) are committed in one SQLite transaction, then
   handed to the in-memory queues.
4. Activity workers (``activity_workers.ActivityWorkers``, ``maxConcurrentActivityFunctions`` of
   them) run work items; a flusher commits finished items in batches: the work item is deleted and
   its TaskCompleted/TaskFailed message queued in the same transaction (at-least-once: an item that
   was running at a crash runs again).

The history of running instances is cached in memory with each event's JSON text, so an episode
builds its payload by joining strings instead of re-serialising the whole history.

This module holds the shared state (``__init__``), function indexing and start/stop. The Durable HTTP
API (``http_api``) is wired by devhost/server.py, which passes the engine in; the engine never imports
it (tests/devhost/test_durable_import_graph.py).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from typing import Any

from devhost.durable import sdk_speedups
from devhost.durable.activity_workers import ActivityWorkers
from devhost.durable.client_ops import ClientOperations, validate_instance_id
from devhost.durable.clock import Clock
from devhost.durable.dispatch import Dispatch
from devhost.durable.engine_settings import EngineSettings
from devhost.durable.engine_state import _Cached
from devhost.durable.episodes import OUT_OF_PROC_LABEL, Episodes
from devhost.durable.errors import InstanceGone, InstanceNotFound, UnknownFunctionError
from devhost.durable.states import RUNNING_STATES, TERMINAL_STATES
from devhost.durable.store import ActivityItem, Message, Store

# Names other code imported from this module before the split; they live in the modules above.
__all__ = ["DurableEngine", "EngineSettings", "InstanceGone", "InstanceNotFound", "OUT_OF_PROC_LABEL",
           "RUNNING_STATES", "TERMINAL_STATES", "validate_instance_id"]

log = logging.getLogger("devhost.durable")


class DurableEngine(ClientOperations, Episodes, ActivityWorkers, Dispatch):
    """The local Durable extension. See the module docstring for the flow and the parts."""

    def __init__(self, app: Any, state_dir: str, host_config: dict | None = None, *, virtual_clock: bool = False,
                 task_hub: str = "TestHubName", system_key: str | None = None,
                 master_key: str | None = None) -> None:
        self.app = app
        self.state_dir = state_dir
        self.settings = EngineSettings.from_host_config(host_config, task_hub)
        self.task_hub = self.settings.task_hub
        # Keys that open the public /runtime/webhooks/durabletask routes (the durabletask_extension
        # system key, or the master key); with neither set (in-process tests) those routes are open.
        self.system_key = system_key
        self.master_key = master_key
        self.clock = Clock(virtual_clock)
        self.store: Store | None = None
        self._activities, self._orchestrators = self._index_functions(app)
        try:  # pass our invocation id through when the loader accepts it (same id in both logs)
            self._activity_takes_invocation_id = "invocation_id" in inspect.signature(app.call_activity).parameters
        except (TypeError, ValueError):
            self._activity_takes_invocation_id = False
        self._cache: dict[str, _Cached] = {}
        self._ready: set[str] = set()
        self._busy: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._timers: list[tuple[float, str]] = []
        self._activity_queue: asyncio.Queue[ActivityItem] | None = None
        self._activities_in_flight = 0
        self._completions: list[tuple[ActivityItem, Message, dict]] = []
        self._outstanding: dict[str, int] = {}  # activity work items queued or running, per instance
        self._episode_cost: dict[str, float] = {}  # seconds the instance's last episode took
        self._deferred: set[str] = set()
        self._finished_waiters: dict[str, list[asyncio.Future]] = {}
        self._tasks: list[asyncio.Task] = []
        self._episodes: set[asyncio.Task] = set()
        self._orch_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._wake = asyncio.Event()
        self._timer_wake = asyncio.Event()
        self._flush_wake = asyncio.Event()
        self._running = False
        self.episode_count = 0
        self.episode_seconds = 0.0  # time spent in episodes (replay + commit), for benchmarks
        #: episodes run and history events replayed in them (IsPlayed events handed to the SDK), since start:
        #: what replay costs (GET /admin/host/status shows them; benchmarks/sweep_scale.py reads them)
        self.counters = {"episodes": 0, "replayedEvents": 0}

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _index_functions(app: Any) -> tuple[dict[str, str], dict[str, str]]:
        activities: dict[str, str] = {}
        orchestrators: dict[str, str] = {}
        for spec in app.functions.values():
            alias = getattr(spec, "alias", None)
            if alias is None:
                trigger = next((b for b in spec.bindings if b.get("type") == spec.trigger_type), {})
                alias = trigger.get("activity") or trigger.get("orchestration")
            registered = alias or spec.name
            if spec.trigger_type == "activityTrigger":
                activities[registered.lower()] = registered
                activities.setdefault(spec.name.lower(), spec.name)
            elif spec.trigger_type == "orchestrationTrigger":
                orchestrators[registered.lower()] = registered
                orchestrators.setdefault(spec.name.lower(), spec.name)
        return activities, orchestrators

    def resolve_activity(self, name: str) -> str:
        try:
            return self._activities[name.lower()]
        except KeyError:
            known = ", ".join(f"'{n}'" for n in sorted(set(self._activities.values())))
            raise UnknownFunctionError(
                f"The function '{name}' doesn't exist, is disabled, or is not an activity function. "
                f"Additional info: The following are the known activity functions: {known}.") from None

    def resolve_orchestrator(self, name: str) -> str:
        try:
            return self._orchestrators[name.lower()]
        except KeyError:
            known = ", ".join(f"'{n}'" for n in sorted(set(self._orchestrators.values())))
            raise UnknownFunctionError(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. "
                f"Additional info: The following are the known orchestrator functions: {known}.") from None

    async def start(self) -> None:
        """Open SQLite (WAL), recover queued work and start the dispatch loops."""
        sdk_speedups.install()
        self.store = Store(self.state_dir)
        if self.clock.virtual:
            self.clock.offset = float(self.store.get_meta("virtual_clock_offset") or 0.0)
        self._activity_queue = asyncio.Queue()
        for item in self.store.activities():
            self._enqueue_activity(item)
        for parent_id in self.store.running_children():
            self._work_started(parent_id)
        now = self.clock.now()
        for instance_id, visible_at in self.store.message_schedule():
            self._schedule_instance(instance_id, visible_at, now)
        if self.settings.orchestrator_threads:
            self._orch_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=min(self.settings.max_concurrent_orchestrations, self.settings.orchestrator_threads),
                thread_name_prefix="devhost-orch")
        self._running = True
        loop_tasks = [self._dispatch_loop(), self._timer_loop(), self._flush_loop()]
        loop_tasks += [self._activity_worker() for _ in range(self.settings.max_concurrent_activities)]
        self._tasks = [asyncio.create_task(coro) for coro in loop_tasks]
        self._wake.set()
        log.info("Durable engine started: task hub %s, state %s, %d activities recovered, virtual clock %s",
                 self.task_hub, self.store.path, self._activity_queue.qsize(), self.clock.virtual)

    async def stop(self) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
        for task in list(self._episodes):
            try:
                await task
            except Exception:  # already logged by the episode
                pass
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._flush_completions()
        self._tasks = []
        if self._orch_pool is not None:
            self._orch_pool.shutdown(wait=True)
        if self.store is not None:
            if self.clock.virtual:
                self.store.set_meta("virtual_clock_offset", repr(self.clock.offset))
            self.store.close()
            self.store = None

