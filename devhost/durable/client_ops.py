"""Client operations: start, raise event, terminate, suspend, resume, restart, rewind, purge, query.

Part of ``DurableEngine`` (devhost/durable/engine.py); the Durable HTTP API (http_api.py) and the
tests call these. Each writes a message for the instance into SQLite and hands it to dispatch, except
purge and rewind, which change the stored instance directly.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import uuid
from typing import Any

from devhost.durable import history as h
from devhost.durable.engine_state import EngineState
from devhost.durable.episodes import version_of
from devhost.durable.errors import InstanceExistsError, InstanceGone, InstanceNotFound, InvalidInstanceIdError
from devhost.durable.states import RUNNING_STATES, TERMINAL_STATES
from devhost.durable.store import ActivityItem, EpisodeWrite, InstanceRow, Message, dumps, loads_stored

log = logging.getLogger("devhost.durable")

_INVALID_ID = re.compile(r"[/\\#?\x00-\x1f\x7f]")


def validate_instance_id(instance_id: str) -> None:
    if not instance_id or len(instance_id) > 256 or instance_id.startswith("@") or _INVALID_ID.search(instance_id):
        raise InvalidInstanceIdError(
            f"Instance ID '{instance_id[:300]}' is invalid: it must be 1-256 characters, must not start with '@' "
            "and must not contain '/', '\\', '#', '?' or control characters.")



class ClientOperations(EngineState):
    """Mixin of DurableEngine: the operations behind the Durable HTTP API and the client."""

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
        re-serialised, i.e. a JSON string literal holding the value's JSON (note "Client binding and
        HTTP API" in devhost/durable/README.md).
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
        version = version_of([json.loads(t) for t in self.store.history(instance_id)[:2]])
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

        Backend-specific and deprecated in Azure (note "Terminate and rewind" in devhost/durable/README.md),
        so this is devhost's own variant. The history is cut just before the first ``TaskFailed`` /
        ``SubOrchestrationInstanceFailed``, so everything
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
