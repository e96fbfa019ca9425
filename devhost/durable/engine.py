"""DurableEngine: dispatch loops, episodes, activity workers, timers, and the client operations.

Flow of one orchestration (protocol reference §0, §4, §8):

1. A client operation (start, raise event, terminate, ...) or a finished activity writes a
   *message* for the instance into SQLite and marks the instance ready.
2. The orchestrator dispatcher runs one *episode* per ready instance (never two for the same
   instance, at most ``maxConcurrentOrchestratorFunctions`` at once): it takes **every** visible
   message for the instance (batching: a fan-in of N results that arrive together costs one
   replay), appends ``OrchestratorStarted`` + the new events to the cached history, calls the SDK
   through ``LoadedApp.call_orchestrator`` in a worker thread, and replays the returned actions with
   the extension's shim (``replayer``).
3. The episode's effects (history events, consumed messages, activity work items, timer messages,
   sub-orchestration starts, completion message to the parent, instance row) are committed in one
   SQLite transaction, then handed to the in-memory queues.
4. Activity workers (``maxConcurrentActivityFunctions`` of them) run work items; a flusher commits
   finished items in batches: the work item is deleted and its TaskCompleted/TaskFailed message
   queued in the same transaction (at-least-once: an item that was running at a crash runs again).

The history of running instances is cached in memory with each event's JSON text, so an episode
builds its payload by joining strings instead of re-serialising the whole history.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import gc
import heapq
import inspect
import itertools
import json
import logging
import os
import re
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

from devhost.config import timespan_text
from devhost.durable import history as h
from devhost.durable import sdk_speedups
from devhost.durable.clock import Clock
from devhost.durable.errors import (
    InstanceExistsError,
    InstanceGone,
    InstanceNotFound,
    InvalidInstanceIdError,
    UnknownFunctionError,
)
from devhost.durable.replayer import DEFAULT_MAX_ORCHESTRATION_ACTIONS, Decision, Replayer, ReplayResult, replay_episode
from devhost.durable.store import ActivityItem, EpisodeWrite, InstanceRow, Message, Store, dumps, loads_stored

log = logging.getLogger("devhost.durable")

TERMINAL_STATES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
RUNNING_STATES = frozenset({"Pending", "Running", "Suspended", "ContinuedAsNew"})
OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:"
_INVALID_ID = re.compile(r"[/\\#?\x00-\x1f\x7f]")


@dataclass
class EngineSettings:
    """The ``extensions.durableTask`` settings the engine honours (host.json; defaults as the extension)."""

    max_concurrent_activities: int = 10 * (os.cpu_count() or 1)
    max_concurrent_orchestrations: int = 10 * (os.cpu_count() or 1)
    # Messages per episode. The extension uses controlQueueBatchSize (32) because Azure Storage
    # fetches that many; locally there is no such limit, and an unbounded batch keeps a fan-in of N
    # at O(N) total replay work. A host.json value is honoured.
    batch_size: int = 100_000
    long_timers: bool = True  # send the Azure Storage long-timer fields (6 d max short timer, 3 d interval)
    any_state_overridable: bool = False  # overridableExistingInstanceStates = AnyState
    activity_timeout: float | None = None  # host.json functionTimeout, seconds
    task_hub: str = "TestHubName"
    # defaultVersion: the version of instances started without one (orchestration versioning);
    # ExecutionStarted.Version, read by the SDK as context.version.
    default_version: str = ""
    max_actions: int = DEFAULT_MAX_ORCHESTRATION_ACTIONS  # maxOrchestrationActions
    # Replays are CPU-bound Python: in a thread they only contend for the GIL with the event loop
    # (every SQLite call and thread hand-off then waits for a GIL switch), so by default they run on
    # the loop itself, one at a time. Set DEVHOST_ORCHESTRATOR_THREADS=N to use N threads instead.
    orchestrator_threads: int = int(os.environ.get("DEVHOST_ORCHESTRATOR_THREADS", "0") or 0)
    # Continue-as-new drops the EventRaised events the old execution received but had not consumed, as
    # the extension does for out-of-process apps: OutOfProcOrchestrationShim calls
    # ContinueAsNew(input), i.e. preserveUnprocessedEvents=false, so RescheduleBufferedExternalEvents
    # never runs. DEVHOST_PRESERVE_UNPROCESSED_EVENTS=true carries them over instead (devhost only).
    preserve_unprocessed_events: bool = False

    @classmethod
    def from_host_config(cls, host_config: dict | None, task_hub: str) -> "EngineSettings":
        cfg = host_config or {}
        full = cfg if ("extensions" in cfg or "functionTimeout" in cfg) else {"extensions": {"durableTask": cfg}}
        durable = (full.get("extensions") or {}).get("durableTask") or {}
        provider = durable.get("storageProvider") or {}
        settings = cls(task_hub=durable.get("hubName") or task_hub)
        settings.preserve_unprocessed_events = os.environ.get(
            "DEVHOST_PRESERVE_UNPROCESSED_EVENTS", "").strip().lower() in ("1", "true", "yes")
        if durable.get("maxConcurrentActivityFunctions"):
            settings.max_concurrent_activities = max(1, int(durable["maxConcurrentActivityFunctions"]))
        if durable.get("maxConcurrentOrchestratorFunctions"):
            settings.max_concurrent_orchestrations = max(1, int(durable["maxConcurrentOrchestratorFunctions"]))
        if provider.get("controlQueueBatchSize"):
            settings.batch_size = max(1, int(provider["controlQueueBatchSize"]))
        provider_type = str(provider.get("type") or "AzureStorage").lower()
        settings.long_timers = provider_type in ("azurestorage", "azure_storage", "")
        settings.default_version = str(durable.get("defaultVersion") or "")
        if durable.get("maxOrchestrationActions"):
            settings.max_actions = max(1, int(durable["maxOrchestrationActions"]))
        settings.any_state_overridable = str(durable.get("overridableExistingInstanceStates", "")).lower() == "anystate"
        timeout = full.get("functionTimeout")
        if timeout and str(timeout) != "-1":
            settings.activity_timeout = _timespan_seconds(str(timeout))
        return settings


_invocation_counter = itertools.count(1)
_process_tag = uuid.uuid4().hex[:12]


def _invocation_id() -> str:
    """Unique per process run without an os.urandom call each time (that call drops the GIL)."""
    n = next(_invocation_counter)
    return f"{_process_tag[:8]}-{_process_tag[8:12]}-4000-8000-{n:012x}"


_HOST_PATHS = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(asyncio.__file__),
               os.path.dirname(concurrent.futures.__file__))


def _user_traceback(exc: BaseException) -> str:
    """The exception's traceback without devhost's and asyncio's frames (the worker shows the user's)."""
    summary = traceback.TracebackException.from_exception(exc)
    frames = [f for f in summary.stack if not f.filename.startswith(_HOST_PATHS)]
    summary.stack = traceback.StackSummary.from_list(frames)
    return "".join(summary.format()).strip()


def _timespan_seconds(text: str) -> float:
    """Parse a .NET TimeSpan ``[d.]hh:mm:ss[.fff]`` (functionTimeout)."""
    days = 0
    if "." in text.split(":")[0]:
        day_part, text = text.split(".", 1)
        days = int(day_part)
    hours, minutes, seconds = text.split(":")
    return days * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _version_of(events: list[dict]) -> str | None:
    """The execution's version (its ExecutionStarted ``Version``); None if not in ``events``."""
    return next((ev.get("Version") for ev in events if ev["EventType"] == h.EXECUTION_STARTED), None)


@dataclass
class _Cached:
    """The current execution of one instance, as the episodes see it."""

    row: InstanceRow
    events: list[dict] = field(default_factory=list)  # IsPlayed already true for all of these
    played: list[str] = field(default_factory=list)  # JSON text of ``events`` (IsPlayed true)
    blocked: Replayer | None = None  # the shim's state while it waits on an unfinished task


def _played_text(text: str) -> str:
    # Events are dumped with IsPlayed as their third key, before any string value, so the first
    # occurrence is the key itself.
    return text.replace('"IsPlayed": false', '"IsPlayed": true', 1)


def validate_instance_id(instance_id: str) -> None:
    if not instance_id or len(instance_id) > 256 or instance_id.startswith("@") or _INVALID_ID.search(instance_id):
        raise InvalidInstanceIdError(
            f"Instance ID '{instance_id[:300]}' is invalid: it must be 1-256 characters, must not start with '@' "
            "and must not contain '/', '\\', '#', '?' or control characters.")


class DurableEngine:
    """The local Durable extension. See the module docstring for the flow."""

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
        #: episodes run and history events replayed in them (IsPlayed events handed to the SDK), since start:
        #: what replay costs (GET /admin/host/status shows them; benchmarks/sweep_scale.py reads them)
        self.counters = {"episodes": 0, "replayedEvents": 0}
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

    # ------------------------------------------------------------------ scheduling helpers
    def _lock(self, instance_id: str) -> asyncio.Lock:
        lock = self._locks.get(instance_id)
        if lock is None:
            lock = self._locks[instance_id] = asyncio.Lock()
        return lock

    def _schedule_instance(self, instance_id: str, visible_at: float, now: float | None = None) -> None:
        now = self.clock.now() if now is None else now
        if visible_at <= now:
            self._ready.add(instance_id)
            self._wake.set()
        else:
            heapq.heappush(self._timers, (visible_at, instance_id))
            self._timer_wake.set()

    def _deliver(self, messages: list[Message]) -> None:
        now = self.clock.now()
        for message in messages:
            if message.child_result:
                self._work_done(message.instance_id)
                if not self._result_changes_nothing(message.instance_id, message.execution_id,
                                                    json.loads(message.event)):
                    self._wake_after_results(message.instance_id)
            else:
                self._schedule_instance(message.instance_id, message.visible_at, now)

    def _work_started(self, instance_id: str) -> None:
        self._outstanding[instance_id] = self._outstanding.get(instance_id, 0) + 1

    def _work_done(self, instance_id: str) -> None:
        left = self._outstanding.get(instance_id, 1) - 1
        if left > 0:
            self._outstanding[instance_id] = left
        else:
            self._outstanding.pop(instance_id, None)

    def is_idle(self) -> bool:
        """Nothing runnable: no ready instance, no episode, no activity queued, running or unflushed."""
        return (not (self._ready - self._busy) and not self._busy and not self._deferred
                and self._activities_in_flight == 0
                and (self._activity_queue is None or self._activity_queue.empty()) and not self._completions)

    def advance_clock(self, seconds: float) -> None:
        """Virtual-clock mode: move engine time forward; timers that became due fire."""
        self.clock.advance(seconds)
        self.store.set_meta("virtual_clock_offset", repr(self.clock.offset))
        self._timer_wake.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until the engine is idle (and, in virtual-clock mode, no timer is left to fire)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_idle() and (not self.clock.virtual or not self._timers):
                await asyncio.sleep(0.02)
                if self.is_idle() and (not self.clock.virtual or not self._timers):
                    return True
            await asyncio.sleep(0.01)
        return False

    async def wait_for_instance(self, instance_id: str, timeout: float) -> InstanceRow:
        """Wait until the instance reaches a terminal state; returns its row (raises TimeoutError)."""
        row = self.store.get_instance(instance_id)
        if row is not None and row.status in TERMINAL_STATES:
            return row
        future = asyncio.get_running_loop().create_future()
        self._finished_waiters.setdefault(instance_id, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            waiters = self._finished_waiters.get(instance_id, [])
            if future in waiters:
                waiters.remove(future)

    def _notify_finished(self, row: InstanceRow) -> None:
        self._outstanding.pop(row.instance_id, None)
        self._episode_cost.pop(row.instance_id, None)
        for future in self._finished_waiters.pop(row.instance_id, []):
            if not future.done():
                future.set_result(row)

    # ------------------------------------------------------------------ loops
    async def _dispatch_loop(self) -> None:
        limit = self.settings.max_concurrent_orchestrations
        while self._running:
            await self._wake.wait()
            self._wake.clear()
            for instance_id in list(self._ready - self._busy):
                if len(self._busy) >= limit:
                    break
                self._ready.discard(instance_id)
                self._busy.add(instance_id)
                task = asyncio.create_task(self._run_episode(instance_id))
                self._episodes.add(task)
                task.add_done_callback(self._episodes.discard)
            self._timer_wake.set()  # idle detection for the virtual clock

    async def _timer_loop(self) -> None:
        while self._running:
            now = self.clock.now()
            while self._timers and self._timers[0][0] <= now:
                _, instance_id = heapq.heappop(self._timers)
                self._ready.add(instance_id)
                self._wake.set()
            timeout = None
            if self._timers:
                if self.clock.virtual and self.is_idle():
                    if not self.store.has_message_at(self._timers[0][1], self._timers[0][0]):
                        heapq.heappop(self._timers)  # its message went with a finished execution
                        continue
                    self.clock.advance_to(self._timers[0][0])
                    self.store.set_meta("virtual_clock_offset", repr(self.clock.offset))
                    log.debug("virtual clock advanced to %s", h.iso(self.clock.now_datetime()))
                    continue
                timeout = max(0.0, self._timers[0][0] - now)
            self._timer_wake.clear()
            try:
                await asyncio.wait_for(self._timer_wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _activity_worker(self) -> None:
        assert self._activity_queue is not None
        while self._running:
            item = await self._activity_queue.get()
            self._activities_in_flight += 1
            try:
                message, event = await self._run_activity(item)
                self._completions.append((item, message, event))
                self._flush_wake.set()
            finally:
                self._activities_in_flight -= 1

    async def _run_activity(self, item: ActivityItem) -> tuple[Message, dict]:
        invocation_id = _invocation_id()
        log.info("Executing activity '%s' (instance=%s, task=%d, invocation=%s)",
                 item.name, item.instance_id, item.task_id, invocation_id)
        try:
            if self._activity_takes_invocation_id:
                call = self.app.call_activity(item.name, item.input, invocation_id=invocation_id)
            else:
                call = self.app.call_activity(item.name, item.input)
            if self.settings.activity_timeout:
                result = await asyncio.wait_for(call, self.settings.activity_timeout)
            else:
                result = await call
            now_text = h.iso(self.clock.now_datetime())
            event = h.event(h.TASK_COMPLETED, now_text, TaskScheduledId=item.task_id, Result=result)
        except (Exception, asyncio.CancelledError) as exc:  # the activity's failure becomes TaskFailed, like the shim
            current = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and (not self._running or current is None or current.cancelling()):
                raise  # the engine is stopping: this worker is being cancelled, not the activity failing
            if isinstance(exc, asyncio.TimeoutError):
                # the WebJobs host's FunctionTimeoutException text, with the TimeSpan in .NET "c" format
                message = f"Timeout value of {timespan_text(self.settings.activity_timeout)} was exceeded by " \
                          f"function: Functions.{item.name}"
                exc_text = f"FunctionTimeoutException: {message}"
            else:
                exc_text = f"{type(exc).__name__}: {exc}"
            log.warning("Activity '%s' failed (instance=%s, task=%d, invocation=%s): %s",
                        item.name, item.instance_id, item.task_id, invocation_id, exc_text)
            now_text = h.iso(self.clock.now_datetime())
            # Reason as the extension builds it; the cut of the RPC text keeps a leading space (§3.3).
            event = h.event(h.TASK_FAILED, now_text, TaskScheduledId=item.task_id,
                            Reason=f"Activity function '{item.name}' failed:  {exc_text}",
                            Details=_user_traceback(exc), FailureDetails=None)
        return Message(item.instance_id, item.execution_id, 0.0, json.dumps(event)), event

    async def _flush_loop(self) -> None:
        while self._running:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            await asyncio.sleep(0)  # let workers that are finishing right now join this batch
            try:
                self._flush_completions()
            except Exception:  # keep flushing later results; the batch's work items stay in SQLite
                log.exception("Recording activity results failed; their work items run again after a restart")

    def _enqueue_activity(self, item: ActivityItem) -> None:
        self._work_started(item.instance_id)
        self._activity_queue.put_nowait(item)

    def _flush_completions(self) -> None:
        if not self._completions or self.store is None:
            return
        batch, self._completions = self._completions, []
        self.store.complete_activities([(item, message) for item, message, _ in batch])
        touched = set()
        for item, _, event in batch:
            self._work_done(item.instance_id)
            if not self._result_changes_nothing(item.instance_id, item.execution_id, event):
                touched.add(item.instance_id)
        for instance_id in touched:
            self._wake_after_results(instance_id)

    def _result_changes_nothing(self, instance_id: str, execution_id: str | None, event: dict) -> bool:
        """True if the instance's shim, blocked on a task, would do nothing with this result (yet).

        Then no episode is needed for it now: it waits in the inbox until a result that unblocks the
        shim (or the instance's last outstanding work item) arrives, and all are replayed together.
        A fan-out/fan-in of N therefore costs two replays, whatever N. Python cannot move on either
        while the shim waits (the shim waits at least as long as the generator, §3.8), so the only
        thing skipped is a replay that would reproduce the same state.
        """
        cached = self._cache.get(instance_id)
        if (cached is None or cached.blocked is None or instance_id in self._busy
                or execution_id != cached.row.execution_id or instance_id not in self._outstanding):
            return False
        try:
            moves_on = cached.blocked.feed(event)
        except Exception:  # e.g. the shim now invokes an unknown activity: the episode reports it
            moves_on = True
        if moves_on:
            cached.blocked = None  # it moves on: replay now (the next episode builds a fresh state)
            return False
        return True

    def _wake_after_results(self, instance_id: str) -> None:
        """Run the instance's next episode now, or a little later to collect more results in it.

        A replay costs time proportional to the history, so an instance that still has activities
        or sub-orchestrations in flight waits twice as long as its last episode took (at most 1 s)
        before replaying again: replay then takes at most about a third of the wall time, and a
        fan-in of N results costs a bounded number of replays instead of one per result (no
        quadratic replay). Once its last outstanding work item has reported, it runs at once.
        """
        cost = self._episode_cost.get(instance_id, 0.0)
        if instance_id not in self._outstanding or cost < 0.005:
            self._deferred.discard(instance_id)
            self._ready.add(instance_id)
            self._wake.set()
        elif instance_id not in self._deferred:
            self._deferred.add(instance_id)
            asyncio.get_running_loop().call_later(min(2 * cost, 1.0), self._undefer, instance_id)

    def _undefer(self, instance_id: str) -> None:
        if instance_id in self._deferred:
            self._deferred.discard(instance_id)
            self._ready.add(instance_id)
            self._wake.set()

    # ------------------------------------------------------------------ episodes
    def _load(self, instance_id: str) -> _Cached | None:
        cached = self._cache.get(instance_id)
        if cached is not None:
            return cached
        row = self.store.get_instance(instance_id)
        if row is None:
            return None
        cached = _Cached(row)
        for text in self.store.history(instance_id):
            event = json.loads(text)
            event["IsPlayed"] = True
            cached.events.append(event)
            cached.played.append(_played_text(text))
        self._cache[instance_id] = cached
        return cached

    async def _run_episode(self, instance_id: str) -> None:
        try:
            async with self._lock(instance_id):
                await self._episode(instance_id)
        except Exception:
            log.exception("Episode of instance %s failed inside devhost", instance_id)
        finally:
            self._busy.discard(instance_id)
            lock = self._locks.get(instance_id)
            if (instance_id not in self._cache and lock is not None and not lock.locked()
                    and not getattr(lock, "_waiters", None)):
                del self._locks[instance_id]  # finished instance: do not keep a lock per id forever
            self._wake.set()
            self._timer_wake.set()

    async def _episode(self, instance_id: str) -> None:
        store = self.store
        now = self.clock.now()
        rows = store.visible_messages(instance_id, now, self.settings.batch_size)
        if not rows:
            return
        if len(rows) >= self.settings.batch_size:
            self._ready.add(instance_id)  # more are waiting: another episode after this one
        cached = self._load(instance_id)
        if cached is None:  # purged or unknown instance: drop its messages
            store.delete_messages([r[0] for r in rows])
            return
        row = cached.row
        consumed: list[int] = []
        events: list[dict] = []
        terminate: dict | None = None
        suspended = row.status == "Suspended"
        # Arrival order, as the extension delivers a batch: a message's Timestamp is when it arrived
        # (a timer's is its fire time), while ids follow insertion, and a timer message is inserted
        # when the timer is created. The sort is stable, so equal times keep their insertion order.
        parsed = sorted(((mid, eid, json.loads(text)) for mid, eid, text in rows),
                        key=lambda r: r[2].get("Timestamp") or "")
        for message_id, execution_id, event in parsed:
            kind = event["EventType"]
            if row.status in TERMINAL_STATES or (execution_id and execution_id != row.execution_id):
                consumed.append(message_id)  # stale: for a finished instance or an older execution
                continue
            if kind == h.EXECUTION_TERMINATED:
                terminate = event
                consumed.append(message_id)
                break
            if kind == h.EXECUTION_SUSPENDED:
                suspended = True
            elif kind == h.EXECUTION_RESUMED:
                suspended = False
            events.append((message_id, event))
        if terminate is not None:
            consumed += [mid for mid, _ in events]
            # everything else of this instance is moot once it is terminated
            self._commit_terminal_without_replay(cached, consumed, terminate)
            return
        if suspended:
            # While suspended only suspend/resume are recorded; other messages wait for the resume.
            control = [(mid, ev) for mid, ev in events if ev["EventType"] in (h.EXECUTION_SUSPENDED, h.EXECUTION_RESUMED)]
            if not control:
                if consumed:  # only stale messages to drop
                    store.delete_messages(consumed)
                return
            if not cached.events:
                # Suspended before its first episode: record ExecutionStarted ahead of the suspend, as
                # the extension's history has it, so the execution still starts after the resume
                # (later episodes never take an ExecutionStarted into a non-empty history).
                start = next(((mid, ev) for mid, ev in events if ev["EventType"] == h.EXECUTION_STARTED), None)
                if start is None:
                    return  # ExecutionStarted not visible yet; leave the messages alone
                control.insert(0, start)
            self._commit_control_only(cached, consumed + [mid for mid, _ in control], [ev for _, ev in control],
                                      "Suspended")
            return
        if not events:
            if consumed:
                store.delete_messages(consumed)
            if row.status in TERMINAL_STATES:
                self._cache.pop(instance_id, None)
            return
        consumed += [mid for mid, _ in events]
        new_events = [ev for _, ev in events]
        if row.status == "Suspended":  # events held back while suspended are delivered after the resume
            control = (h.EXECUTION_SUSPENDED, h.EXECUTION_RESUMED)
            new_events = [ev for ev in new_events if ev["EventType"] in control] + \
                [ev for ev in new_events if ev["EventType"] not in control]
        if not cached.events:
            starts = [ev for ev in new_events if ev["EventType"] == h.EXECUTION_STARTED]
            if not starts:
                return  # ExecutionStarted not visible yet; leave the messages alone
            new_events = starts[:1] + [ev for ev in new_events if ev["EventType"] != h.EXECUTION_STARTED]
        else:
            new_events = [ev for ev in new_events if ev["EventType"] != h.EXECUTION_STARTED]
        now_text = h.iso(self.clock.now_datetime())
        for ev in new_events:
            ev["IsPlayed"] = False
        invocation_id = _invocation_id()
        started = time.perf_counter()
        if self._orch_pool is not None:
            loop = asyncio.get_running_loop()
            result, state, episode_texts = await loop.run_in_executor(
                self._orch_pool, self._execute, cached, new_events, now_text, invocation_id)
        else:
            # The replay allocates a few objects per history event and frees them at once; pausing
            # the cyclic GC for it avoids full collections that would walk every cached history.
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                result, state, episode_texts = self._execute(cached, new_events, now_text, invocation_id)
            finally:
                if gc_was_enabled:
                    gc.enable()
        self.episode_count += 1
        self._commit_episode(cached, consumed, new_events, episode_texts, now_text, result, state, invocation_id)
        elapsed = time.perf_counter() - started
        self.episode_seconds += elapsed
        if self._cache.get(instance_id) is cached:
            self._episode_cost[instance_id] = elapsed
        else:
            self._episode_cost.pop(instance_id, None)

    def _payload(self, cached: _Cached, episode_texts: list[str]) -> str:
        row = cached.row
        history_json = ",".join(cached.played + episode_texts)
        self.counters["episodes"] += 1
        self.counters["replayedEvents"] += len(cached.played)
        head = {"instanceId": row.instance_id, "isReplaying": len(cached.events) >= 2,
                "parentInstanceId": row.parent_instance_id, "upperSchemaVersion": 1, "upperSchemaVersionNew": 2,
                "defaultHttpAsyncRequestSleepTimeMillseconds": 30000}
        if self.settings.long_timers:
            head["longRunningTimerIntervalDuration"] = "3.00:00:00"
            head["maximumShortTimerDuration"] = "6.00:00:00"
        input_json = row.input if row.input is not None else "null"
        return '{"history":[' + history_json + '],"input":' + input_json + "," + json.dumps(head)[1:]

    def _execute(self, cached: _Cached, new_events: list[dict], now_text: str,
                 invocation_id: str) -> tuple[ReplayResult, dict | None, list[str]]:
        """Worker thread: call the SDK for one episode and replay its actions (no SQLite here)."""
        row = cached.row
        episode_events = [h.event(h.ORCHESTRATOR_STARTED, now_text)] + new_events
        episode_texts = [json.dumps(ev) for ev in episode_events]
        log.info("Executing orchestrator '%s' (instance=%s, invocation=%s, %d new events)",
                  row.name, row.instance_id, invocation_id, len(new_events))
        error_text = None
        try:
            raw = self.app.call_orchestrator(row.name, self._payload(cached, episode_texts))
            state = json.loads(raw)
        except Exception as exc:  # the SDK's failure format: message + "$OutOfProcData$:" + state
            text = str(exc) or str(type(exc))
            if OUT_OF_PROC_LABEL in text:
                error_text, data = text.split(OUT_OF_PROC_LABEL, 1)
                try:
                    state = json.loads(data)
                except ValueError:
                    state = None
            else:
                error_text, state = text, None
        try:
            result = replay_episode(orchestrator_name=row.name, execution_id=row.execution_id,
                                    events=cached.events + episode_events, state=state, error_text=error_text,
                                    resolve_activity=self.resolve_activity,
                                    resolve_orchestrator=self.resolve_orchestrator,
                                    max_actions=self.settings.max_actions, instance_id=row.instance_id,
                                    parent_instance_id=row.parent_instance_id)
        except Exception as exc:  # malformed action list: fail the instance rather than wedge it
            log.exception("Could not replay the actions of instance %s", row.instance_id)
            result = ReplayResult([], "failed", 0, failure=f"Orchestrator function '{row.name}' failed: devhost could "
                                  f"not process the orchestrator's actions: {type(exc).__name__}: {exc}")
        return result, state, episode_texts

    def _commit_episode(self, cached: _Cached, consumed: list[int], new_events: list[dict],
                        episode_texts: list[str], now_text: str, result: ReplayResult, state: dict | None,
                        invocation_id: str) -> None:
        row = dataclasses.replace(cached.row)
        now = self.clock.now()
        iid, execution_id = row.instance_id, row.execution_id
        out_events: list[dict] = []
        activities: list[ActivityItem] = []
        messages: list[Message] = []
        others: list[InstanceRow] = []
        resets: list[str] = []
        for decision in result.decisions:
            self._apply_decision(row, decision, now_text, now, out_events, activities, messages, others, resets)
        if state is not None and not result.custom_status_rejected:
            custom = state.get("customStatus")
            row.custom_status = dumps(custom) if custom is not None else None
        write = EpisodeWrite(row, consumed_message_ids=consumed)
        if result.outcome == "running":
            row.status = "Running"
        elif result.outcome == "continued_as_new":
            out_events.append(h.event(h.CONTINUE_AS_NEW, now_text, result.next_id, Result=result.continue_input))
            new_execution = uuid.uuid4().hex
            row.execution_id = new_execution
            row.input = json.dumps(result.continue_input) if result.continue_input is not None else None
            row.status = "Running"
            row.output = None
            started = h.execution_started(now_text, row.name, iid, new_execution, row.input,
                                          parent=self._parent_ref(row), version=_version_of(cached.events + new_events))
            messages.append(Message(iid, new_execution, 0.0, json.dumps(started)))
            # Events still queued reach the new execution; received but unconsumed ones are dropped,
            # unless DEVHOST_PRESERVE_UNPROCESSED_EVENTS asks to carry them over (see EngineSettings).
            if self.settings.preserve_unprocessed_events:
                for ev in result.unconsumed_events:
                    carried = dict(ev, IsPlayed=False)
                    messages.append(Message(iid, None, 0.0, json.dumps(carried)))
            elif result.unconsumed_events:
                log.info("Orchestrator '%s' continued as new with %d unconsumed external event(s), dropped as in "
                         "Azure (instance=%s)", row.name, len(result.unconsumed_events), iid)
            write.reset_history = True
            write.drop_execution_messages = execution_id
            log.info("Orchestrator '%s' continued as new (instance=%s, invocation=%s)", row.name, iid, invocation_id)
        else:
            if result.outcome == "completed":
                output_text = dumps(result.output)
                row.status, row.output = "Completed", output_text
                out_events.append(h.event(h.EXECUTION_COMPLETED, now_text, result.next_id,
                                          OrchestrationStatus=h.STATUS_CODE["Completed"], Result=output_text,
                                          FailureDetails=None))
                if row.parent_instance_id:
                    messages.append(Message(row.parent_instance_id, row.parent_execution_id, 0.0, json.dumps(
                        h.event(h.SUB_ORCHESTRATION_COMPLETED, now_text, TaskScheduledId=row.parent_task_id,
                                Result=output_text)), child_result=True))
                log.info("Orchestrator '%s' completed (instance=%s, invocation=%s)", row.name, iid, invocation_id)
            else:
                row.status, row.output = "Failed", json.dumps(result.failure)
                out_events.append(h.event(h.EXECUTION_COMPLETED, now_text, result.next_id,
                                          OrchestrationStatus=h.STATUS_CODE["Failed"], Result=result.failure,
                                          FailureDetails={"ErrorType": "OrchestrationFailureException",
                                                          "ErrorMessage": result.failure}))
                if row.parent_instance_id:
                    messages.append(self._child_failed_message(row, now_text, result.failure, result.failure_details))
                log.warning("Orchestrator '%s' failed (instance=%s, invocation=%s): %s",
                            row.name, iid, invocation_id, result.failure)
            write.drop_all_messages = True
        history_texts: list[str] = []
        if result.outcome != "continued_as_new":
            out_events.append(h.event(h.ORCHESTRATOR_COMPLETED, now_text))
            history_texts = episode_texts + [json.dumps(ev) for ev in out_events]
            base = len(cached.events)
            write.new_history = [(base + i, text) for i, text in enumerate(history_texts)]
            row.history_length = base + len(history_texts)
        else:
            row.history_length = 0
        row.last_updated_time = now
        write.instance = row
        write.activities = activities
        write.messages = messages
        write.other_instances = others
        write.other_resets = resets
        self.store.commit_episode(write)
        # -- after the commit: memory state and work hand-off
        if result.outcome == "continued_as_new":
            cached.events, cached.played = [], []
        else:
            played = [_played_text(t) for t in history_texts]
            episode_events = [h.event(h.ORCHESTRATOR_STARTED, now_text)] + new_events + out_events
            for ev in episode_events:
                ev["IsPlayed"] = True
            cached.events.extend(episode_events)
            cached.played.extend(played)
        cached.row = row
        cached.blocked = result.blocked_replayer if result.outcome == "running" else None
        for other in resets:
            self._cache.pop(other, None)
        for _ in others:  # children in flight count like activities for the parent's batching
            self._work_started(iid)
        for item in activities:
            self._enqueue_activity(item)
        self._deliver(messages)
        if row.status in TERMINAL_STATES:
            self._cache.pop(iid, None)
            self._notify_finished(row)

    def _apply_decision(self, row: InstanceRow, d: Decision, now_text: str, now: float, out_events: list,
                        activities: list, messages: list, others: list, resets: list) -> None:
        iid, execution_id = row.instance_id, row.execution_id
        if d.kind == h.TASK_SCHEDULED:
            out_events.append(h.event(h.TASK_SCHEDULED, now_text, d.id, Name=d.name, Version="", Input=d.input))
            activities.append(ActivityItem(iid, execution_id, d.id, d.name, d.input))
        elif d.kind == h.TIMER_CREATED:
            fire_text = h.iso(d.fire_at)
            out_events.append(h.event(h.TIMER_CREATED, now_text, d.id, FireAt=fire_text))
            if not d.canceled:
                fired = h.event(h.TIMER_FIRED, fire_text, TimerId=d.id, FireAt=fire_text)
                messages.append(Message(iid, execution_id, d.fire_at.timestamp(), json.dumps(fired)))
        elif d.kind == h.SUB_ORCHESTRATION_CREATED:
            child_id = d.instance_id
            child_version = d.version if d.version is not None else self.settings.default_version
            out_events.append(h.event(h.SUB_ORCHESTRATION_CREATED, now_text, d.id, Name=d.name, Version=child_version,
                                      InstanceId=child_id, Input=d.input))
            existing = self.store.get_instance(child_id)
            taken = any(o.instance_id == child_id for o in others)
            if child_id == iid or taken or (existing is not None and existing.status in RUNNING_STATES
                                            and not self.settings.any_state_overridable):
                reason = f"An orchestration with instance ID '{child_id}' already exists or is running."
                messages.append(Message(iid, execution_id, 0.0, json.dumps(h.event(
                    h.SUB_ORCHESTRATION_FAILED, now_text, TaskScheduledId=d.id, Reason=reason, Details=None))))
                return
            child_execution = uuid.uuid4().hex
            child_input = json.dumps(d.input) if d.input is not None else None
            child = InstanceRow(child_id, d.name, child_execution, "Pending", child_input, None, None, now, now,
                                iid, execution_id, d.id)
            others.append(child)
            if existing is not None:
                resets.append(child_id)
            started = h.execution_started(now_text, d.name, child_id, child_execution, child_input,
                                          parent=self._parent_ref(child, parent_name=row.name), version=child_version)
            messages.append(Message(child_id, child_execution, 0.0, json.dumps(started)))

    @staticmethod
    def _parent_ref(row: InstanceRow, parent_name: str | None = None) -> dict | None:
        if not row.parent_instance_id:
            return None
        return {"Name": parent_name, "Version": "", "TaskScheduleId": row.parent_task_id,
                "OrchestrationInstance": {"InstanceId": row.parent_instance_id,
                                          "ExecutionId": row.parent_execution_id}}

    @staticmethod
    def _child_failed_message(row: InstanceRow, now_text: str, reason: str, details: str | None) -> Message:
        return Message(row.parent_instance_id, row.parent_execution_id, 0.0, json.dumps(h.event(
            h.SUB_ORCHESTRATION_FAILED, now_text, TaskScheduledId=row.parent_task_id, Reason=reason,
            Details=details, FailureDetails=None)), child_result=True)

    def _commit_terminal_without_replay(self, cached: _Cached, consumed: list[int], terminate: dict) -> None:
        """Terminate: DTFx completes the instance with status Terminated; the SDK is not called (§3.9)."""
        row = dataclasses.replace(cached.row)
        now_text = h.iso(self.clock.now_datetime())
        reason = terminate.get("Input")
        terminate = dict(terminate, IsPlayed=False)
        events = [h.event(h.ORCHESTRATOR_STARTED, now_text), terminate,
                  h.event(h.EXECUTION_COMPLETED, now_text, OrchestrationStatus=h.STATUS_CODE["Terminated"],
                          Result=reason, FailureDetails=None),
                  h.event(h.ORCHESTRATOR_COMPLETED, now_text)]
        texts = [json.dumps(ev) for ev in events]
        base = len(cached.events)
        row.status, row.output = "Terminated", json.dumps(reason)
        row.last_updated_time = self.clock.now()
        row.history_length = base + len(texts)
        messages = []
        if row.parent_instance_id:
            failure = f"Orchestrator function '{row.name}' failed: {reason}"
            messages.append(self._child_failed_message(row, now_text, failure, f"Message: {reason}"))
        self.store.commit_episode(EpisodeWrite(row, consumed_message_ids=consumed, drop_all_messages=True,
                                               new_history=[(base + i, t) for i, t in enumerate(texts)],
                                               messages=messages))
        log.info("Orchestrator '%s' terminated (instance=%s): %s", row.name, row.instance_id, reason)
        self._cache.pop(row.instance_id, None)
        self._deliver(messages)
        self._notify_finished(row)

    def _commit_control_only(self, cached: _Cached, consumed: list[int], events: list[dict], status: str) -> None:
        """Record suspend/resume events without running the orchestrator (the SDK ignores them)."""
        row = dataclasses.replace(cached.row)
        now_text = h.iso(self.clock.now_datetime())
        all_events = [h.event(h.ORCHESTRATOR_STARTED, now_text)] + [dict(ev, IsPlayed=False) for ev in events] + \
            [h.event(h.ORCHESTRATOR_COMPLETED, now_text)]
        texts = [json.dumps(ev) for ev in all_events]
        base = len(cached.events)
        row.status = status
        row.last_updated_time = self.clock.now()
        row.history_length = base + len(texts)
        self.store.commit_episode(EpisodeWrite(row, consumed_message_ids=consumed,
                                               new_history=[(base + i, t) for i, t in enumerate(texts)]))
        for ev in all_events:
            ev["IsPlayed"] = True
        cached.events.extend(all_events)
        cached.played.extend(_played_text(t) for t in texts)
        cached.row = row
        cached.blocked = None

    # ------------------------------------------------------------------ client operations
    def _now_text(self) -> str:
        return h.iso(self.clock.now_datetime())

    def get_instance(self, instance_id: str) -> InstanceRow | None:
        return self.store.get_instance(instance_id)

    def get_history(self, instance_id: str) -> list[dict]:
        return [json.loads(t) for t in self.store.history(instance_id)]

    async def start_new(self, name: str, instance_id: str | None = None, input_text: str | None = None,
                        version: str | None = None) -> str:
        """Create an instance (Pending) and queue its ExecutionStarted. ``input_text`` is stored JSON text.

        ``version`` (the client's ``?version=``) defaults to host.json ``defaultVersion``.
        """
        registered = self.resolve_orchestrator(name)
        instance_id = instance_id or uuid.uuid4().hex
        validate_instance_id(instance_id)
        async with self._lock(instance_id):
            existing = self.store.get_instance(instance_id)
            if existing is not None and existing.status in RUNNING_STATES and not self.settings.any_state_overridable:
                raise InstanceExistsError(f"An Orchestration instance with the status {existing.status} already exists.")
            execution_id = uuid.uuid4().hex
            now = self.clock.now()
            row = InstanceRow(instance_id, registered, execution_id, "Pending", input_text, None, None, now, now)
            started = h.execution_started(self._now_text(), registered, instance_id, execution_id, input_text,
                                          version=self.settings.default_version if version is None else version)
            self.store.create_instance(row, Message(instance_id, execution_id, 0.0, json.dumps(started)),
                                       replace=existing is not None)
            self._cache.pop(instance_id, None)
        log.info("Started orchestrator '%s' (instance=%s)", registered, instance_id)
        self._schedule_instance(instance_id, 0.0)
        return instance_id

    async def start_orchestration(self, name: str, value: Any = None, instance_id: str | None = None,
                                  version: str | None = None) -> str:
        """Start as ``DurableOrchestrationClient.start_new(name, instance_id, value)`` would over HTTP.

        The client sends ``json.dumps(df_dumps(value))`` and the extension stores the parsed body
        re-serialised, i.e. a JSON string literal holding the value's JSON (§5.4).
        """
        from azure.durable_functions.models.utils.df_serialization import df_dumps

        text = None if value is None else dumps(df_dumps(value))
        return await self.start_new(name, instance_id, text, version)

    def _require(self, instance_id: str, *, gone_if_finished: bool = True) -> InstanceRow:
        row = self.store.get_instance(instance_id)
        if row is None:
            raise InstanceNotFound(f"No instance with ID '{instance_id}' was found.")
        if gone_if_finished and row.status in TERMINAL_STATES:
            raise InstanceGone(f"Instance with ID {instance_id} is gone: either completed or failed")
        return row

    def _send(self, instance_id: str, event: dict, execution_id: str | None = None) -> None:
        message = Message(instance_id, execution_id, 0.0, json.dumps(event))
        self.store.send([message])
        self._deliver([message])

    async def raise_event(self, instance_id: str, event_name: str, input_text: str | None) -> None:
        self._require(instance_id)
        self._send(instance_id, h.event(h.EVENT_RAISED, self._now_text(), Name=event_name, Input=input_text,
                                        ParentTraceContext=None))

    async def terminate(self, instance_id: str, reason: str | None) -> None:
        self._require(instance_id)
        self._send(instance_id, h.event(h.EXECUTION_TERMINATED, self._now_text(), Input=reason))

    async def suspend(self, instance_id: str, reason: str | None) -> None:
        self._require(instance_id)
        self._send(instance_id, h.event(h.EXECUTION_SUSPENDED, self._now_text(), Reason=reason))

    async def resume(self, instance_id: str, reason: str | None) -> None:
        self._require(instance_id)
        self._send(instance_id, h.event(h.EXECUTION_RESUMED, self._now_text(), Reason=reason))

    async def restart(self, instance_id: str, new_instance_id: bool = True) -> str:
        row = self._require(instance_id, gone_if_finished=False)
        # The restarted instance keeps the original's version (UNCONFIRMED whether the extension keeps it
        # or takes defaultVersion; keeping it restarts the same code path, which is what a restart is for).
        version = _version_of([json.loads(t) for t in self.store.history(instance_id)[:2]])
        return await self.start_new(row.name, uuid.uuid4().hex if new_instance_id else instance_id, row.input, version)

    async def purge(self, instance_ids: list[str]) -> int:
        deleted = 0
        for instance_id in instance_ids:
            async with self._lock(instance_id):
                deleted += self.store.purge([instance_id])
                self._cache.pop(instance_id, None)
        return deleted

    async def rewind(self, instance_id: str, reason: str | None) -> None:
        """Rewind a Failed instance: cut its history at the first failure and run the failed work again.

        Backend-specific and deprecated in Azure (§3.9), so this is devhost's own variant. The history
        is cut just before the first ``TaskFailed`` / ``SubOrchestrationInstanceFailed``, so everything
        the orchestrator did in reaction to it (retry timers and attempts, later tasks, the failure) is
        re-derived by the replay. Work scheduled before the cut is settled again: failed activities
        run again under their original task ids, failed sub-orchestrations are rewound recursively,
        and results, fired timers and raised events that arrived after the cut are queued again; a
        timer that had not fired yet is scheduled again. Without a failed task (the orchestrator's own
        code failed) the whole history is kept and the orchestrator is replayed.
        """
        row = self._require(instance_id, gone_if_finished=False)
        if row.status != "Failed":
            raise InstanceGone(f"Instance with ID {instance_id} is not in the Failed state and cannot be rewound")
        async with self._lock(instance_id):
            events = self.get_history(instance_id)
            end = max((i for i, ev in enumerate(events) if ev["EventType"] == h.EXECUTION_COMPLETED), default=len(events))
            cut = next((i for i, ev in enumerate(events[:end])
                        if ev["EventType"] in (h.TASK_FAILED, h.SUB_ORCHESTRATION_FAILED)), end)
            kept, tail = events[:cut], events[cut:end]
            if kept and kept[-1]["EventType"] != h.ORCHESTRATOR_COMPLETED:
                kept.append(h.event(h.ORCHESTRATOR_COMPLETED, self._now_text()))
            activities, children, messages = self._settle_for_rewind(row, kept, tail)
            new_row = dataclasses.replace(row, status="Running", output=None, last_updated_time=self.clock.now(),
                                          history_length=len(kept))
            if not (activities or children or messages):
                rewound = h.event(21, self._now_text(), Reason=reason)  # ExecutionRewound: unknown to the SDK, ignored
                messages = [Message(instance_id, row.execution_id, 0.0, json.dumps(rewound))]
            self.store.commit_episode(EpisodeWrite(new_row, reset_history=True, activities=activities,
                                                   new_history=[(i, json.dumps(ev)) for i, ev in enumerate(kept)],
                                                   messages=messages))
            self._cache.pop(instance_id, None)
        log.info("Rewound instance %s: history cut at event %d of %d, %d activities run again, %d messages queued "
                 "again, %d sub-orchestrations rewound", instance_id, cut, end, len(activities), len(messages),
                 len(children))
        for item in activities:
            self._enqueue_activity(item)
        self._deliver(messages)
        for child in children:
            child_row = self.store.get_instance(child)
            if child_row is not None and child_row.status == "Failed":
                await self.rewind(child, reason)

    def _settle_for_rewind(self, row: InstanceRow, kept: list[dict],
                           tail: list[dict]) -> tuple[list[ActivityItem], list[str], list[Message]]:
        """What a rewound instance needs for the work it had scheduled before the cut (see ``rewind``)."""
        iid, execution_id = row.instance_id, row.execution_id
        scheduled = {ev["EventId"]: ev for ev in kept if ev["EventType"] in (h.TASK_SCHEDULED, h.SUB_ORCHESTRATION_CREATED)}
        timers = {ev["EventId"]: ev for ev in kept if ev["EventType"] == h.TIMER_CREATED}
        settled = {ev.get("TaskScheduledId") for ev in kept
                   if ev["EventType"] in (h.TASK_COMPLETED, h.TASK_FAILED, h.SUB_ORCHESTRATION_COMPLETED,
                                          h.SUB_ORCHESTRATION_FAILED)}
        fired = {ev.get("TimerId") for ev in kept if ev["EventType"] == h.TIMER_FIRED}
        for text in self.store.pending_events(iid):  # results still queued are delivered after the rewind
            ev = json.loads(text)
            settled.add(ev.get("TaskScheduledId"))
            fired.add(ev.get("TimerId"))
        settled.discard(None)
        fired.discard(None)
        activities: list[ActivityItem] = []
        children: list[str] = []
        messages: list[Message] = []

        def requeue(ev: dict) -> None:
            messages.append(Message(iid, execution_id, 0.0, json.dumps(dict(ev, IsPlayed=False))))

        def rerun(task_id: int) -> None:
            source = scheduled[task_id]
            if source["EventType"] == h.TASK_SCHEDULED:
                activities.append(ActivityItem(iid, execution_id, task_id, source["Name"], source.get("Input")))
            else:
                children.append(source["InstanceId"])

        for ev in tail:
            kind = ev["EventType"]
            task_id = ev.get("TaskScheduledId")
            if kind in (h.TASK_COMPLETED, h.SUB_ORCHESTRATION_COMPLETED) and task_id in scheduled and task_id not in settled:
                requeue(ev)
                settled.add(task_id)
            elif kind in (h.TASK_FAILED, h.SUB_ORCHESTRATION_FAILED) and task_id in scheduled and task_id not in settled:
                rerun(task_id)
                settled.add(task_id)
            elif kind == h.TIMER_FIRED and ev.get("TimerId") in timers and ev.get("TimerId") not in fired:
                requeue(ev)
                fired.add(ev.get("TimerId"))
            elif kind == h.EVENT_RAISED:
                requeue(ev)
            # anything else (scheduled after the cut, suspend/resume) is re-derived by the replay or moot
        # Work in flight when the instance failed: its result was dropped as stale, or is still to come.
        running = self.store.activity_task_ids(iid, execution_id)
        now_text = self._now_text()
        for task_id, source in scheduled.items():
            if task_id in settled:
                continue
            if source["EventType"] == h.TASK_SCHEDULED:
                if task_id not in running:
                    rerun(task_id)
                continue
            child = self.store.get_instance(source["InstanceId"])
            if child is None or child.parent_instance_id != iid or child.status in RUNNING_STATES:
                continue
            if child.status == "Completed":
                messages.append(Message(iid, execution_id, 0.0, json.dumps(h.event(
                    h.SUB_ORCHESTRATION_COMPLETED, now_text, TaskScheduledId=task_id, Result=child.output))))
            elif child.status == "Failed":
                children.append(child.instance_id)
            else:  # Terminated: the parent sees a failed sub-orchestration, as at the time
                reason = loads_stored(child.output)
                failure = f"Orchestrator function '{child.name}' failed: {reason}"
                messages.append(Message(iid, execution_id, 0.0, json.dumps(h.event(
                    h.SUB_ORCHESTRATION_FAILED, now_text, TaskScheduledId=task_id, Reason=failure,
                    Details=f"Message: {reason}", FailureDetails=None))))
        for timer_id, source in timers.items():
            if timer_id not in fired:
                fire_at = h.parse_iso(source["FireAt"])
                event = h.event(h.TIMER_FIRED, source["FireAt"], TimerId=timer_id, FireAt=source["FireAt"])
                messages.append(Message(iid, execution_id, fire_at.timestamp(), json.dumps(event)))
        return activities, children, messages

    # ------------------------------------------------------------------ HTTP
    def routes(self) -> list:
        from devhost.durable.http_api import make_routes

        return make_routes(self)

    def client_binding_json(self, base_url: str) -> str:
        from devhost.durable.http_api import client_binding

        return json.dumps(client_binding(self, base_url))
