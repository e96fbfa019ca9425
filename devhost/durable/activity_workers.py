"""Activity workers: run activity work items and record their results in batches.

Part of ``DurableEngine`` (devhost/durable/engine.py). ``maxConcurrentActivityFunctions`` workers take
items from the in-memory queue and call ``app.call_activity`` (in devhost's server that runs them in
``FUNCTIONS_WORKER_PROCESS_COUNT`` worker processes, devhost/workers.py); a flusher commits finished
items in batches: the work item is deleted and its TaskCompleted/TaskFailed message queued in the same
transaction (at-least-once: an item that was running at a crash runs again).
"""
from __future__ import annotations

import asyncio
import json
import logging

from devhost.config import timespan_text
from devhost.durable import history as h
from devhost.durable.engine_state import EngineState
from devhost.durable.invocations import new_invocation_id, user_traceback
from devhost.durable.store import ActivityItem, Message

log = logging.getLogger("devhost.durable")


class ActivityWorkers(EngineState):
    """Mixin of DurableEngine: activity worker loop, one activity call, result flusher."""

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
        invocation_id = new_invocation_id()
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
            # Reason as the extension builds it; the cut of the RPC text keeps a leading space (note
            # "Activities" in devhost/durable/README.md).
            event = h.event(h.TASK_FAILED, now_text, TaskScheduledId=item.task_id,
                            Reason=f"Activity function '{item.name}' failed:  {exc_text}",
                            Details=user_traceback(exc), FailureDetails=None)
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
