"""Dispatch: the loops that pick work (ready instances, due timers) and the per-instance bookkeeping.

Part of ``DurableEngine`` (devhost/durable/engine.py), which composes this mixin with
``ActivityWorkers``, ``Episodes`` and ``ClientOperations``; the state it uses (``_ready``, ``_busy``,
``_timers``, ``_locks``, ...) is created in ``DurableEngine.__init__``. One episode runs per ready
instance (never two for the same instance, at most ``maxConcurrentOrchestratorFunctions`` at once);
results that would not move a blocked shim on wait in the inbox (note "Batching" in
devhost/durable/README.md).
"""
from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time

from devhost.durable import history as h
from devhost.durable.engine_state import EngineState
from devhost.durable.states import TERMINAL_STATES
from devhost.durable.store import InstanceRow, Message

log = logging.getLogger("devhost.durable")


class Dispatch(EngineState):
    """Mixin of DurableEngine: ready set, timers, dispatch and timer loops, idle detection, waiters."""

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

    # ------------------------------------------------------------------ batching of results
    def _result_changes_nothing(self, instance_id: str, execution_id: str | None, event: dict) -> bool:
        """True if the instance's shim, blocked on a task, would do nothing with this result (yet).

        Then no episode is needed for it now: it waits in the inbox until a result that unblocks the
        shim (or the instance's last outstanding work item) arrives, and all are replayed together.
        A fan-out/fan-in of N therefore costs two replays, whatever N. Python cannot move on either
        while the shim waits (the shim waits at least as long as the generator: note "Where Python and
        the extension disagree" in devhost/durable/README.md), so the only
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

    # ------------------------------------------------------------------ one episode per ready instance
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
