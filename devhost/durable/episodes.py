"""Episodes: replay one orchestration episode through the SDK and commit its effects.

Part of ``DurableEngine`` (devhost/durable/engine.py). An episode takes every visible message of one
instance, appends ``OrchestratorStarted`` + the new events to the cached history, calls the SDK through
``LoadedApp.call_orchestrator``, replays the returned actions with the extension's shim (``replayer``)
and commits history, consumed messages, work items, timers, child instances and the instance row in one
SQLite transaction (notes "Episodes" and "Action replay" in devhost/durable/README.md). Terminate and
suspend/resume are recorded here without calling Python. ``episode_count`` / ``episode_seconds``,
``counters`` (episodes and replayed events; GET /admin/host/status shows them) and any further
per-episode counters belong to this part.
"""
from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import time
import uuid

from devhost.durable import history as h
from devhost.durable.engine_state import EngineState, _Cached
from devhost.durable.invocations import new_invocation_id
from devhost.durable.replayer import Decision, ReplayResult, replay_episode
from devhost.durable.states import RUNNING_STATES, TERMINAL_STATES
from devhost.durable.store import ActivityItem, EpisodeWrite, InstanceRow, Message, dumps

log = logging.getLogger("devhost.durable")

OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:"


def version_of(events: list[dict]) -> str | None:
    """The execution's version (its ExecutionStarted ``Version``); None if not in ``events``."""
    return next((ev.get("Version") for ev in events if ev["EventType"] == h.EXECUTION_STARTED), None)


def _played_text(text: str) -> str:
    # Events are dumped with IsPlayed as their third key, before any string value, so the first
    # occurrence is the key itself.
    return text.replace('"IsPlayed": false', '"IsPlayed": true', 1)


class Episodes(EngineState):
    """Mixin of DurableEngine: load the cached history, run and commit one episode."""

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
        invocation_id = new_invocation_id()
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
                                          parent=self._parent_ref(row), version=version_of(cached.events + new_events))
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
        """Terminate: DTFx completes the instance with status Terminated; the SDK is not called.

        Note "Terminate and rewind" in devhost/durable/README.md.
        """
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
