"""The extension's action shim, reimplemented: turn the SDK's cumulative action list into decisions.

This follows ``OutOfProcOrchestrationShim.ProcessAsyncActionsV2`` on top of DTFx's
``TaskOrchestrationExecutor`` (note "Action replay" in devhost/durable/README.md, with links to
both): walk the history; at ExecutionStarted start a sequential loop over the top-level actions
(invoke action i, wait while its task is open); allocate one sequence number per scheduled task, timer and sub-orchestration; match every
TaskScheduled / TimerCreated / SubOrchestrationInstanceCreated in history against those allocations
(a mismatch is non-determinism, as in Azure); resolve completion events against open tasks. What is
left unmatched after the last event is this episode's new work.

We are faithful rather than white-box (we do not read the SDK's ``open_tasks``), so the two
divergences of note "Where Python and the extension disagree" (same README) are reproduced the way
the extension would show them: a WhenAll waits for all children even when one failed early, and re-awaiting already-yielded tasks can be reported as
non-deterministic.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from devhost.durable import history as h
from devhost.durable.errors import (
    InvalidInstanceIdError,
    NonDeterminismError,
    TooManyActionsError,
    UnknownFunctionError,
)

# RetryOptions defaults of the extension's RetryOptionsConverter; Python never sends these two.
DEFAULT_MAX_RETRY_INTERVAL_MS = 6 * 24 * 3600 * 1000
DEFAULT_MAX_ORCHESTRATION_ACTIONS = 100_000  # host.json durableTask.maxOrchestrationActions
MAX_CUSTOM_STATUS_KB = 16  # DurableOrchestrationContext.SetCustomStatus: MaxCustomStatusPayloadSizeInKB
KIND_NAMES = {h.TASK_SCHEDULED: "activity task", h.TIMER_CREATED: "timer",
              h.SUB_ORCHESTRATION_CREATED: "sub-orchestration", h.EVENT_SENT: "event"}


@dataclass
class Decision:
    """One allocated sequence number: the scheduling event it must appear as in history."""

    id: int
    kind: int  # h.TASK_SCHEDULED | h.TIMER_CREATED | h.SUB_ORCHESTRATION_CREATED
    name: str | None = None
    input: str | None = None
    fire_at: dt.datetime | None = None
    instance_id: str | None = None
    canceled: bool = False
    version: str | None = None  # sub-orchestrations: the action's version (None = host.json defaultVersion)


@dataclass
class ReplayResult:
    """What the episode must write: new decisions (id order) and the orchestration's outcome."""

    decisions: list[Decision]
    outcome: str  # "running" | "completed" | "failed" | "continued_as_new"
    next_id: int
    output: Any = None
    failure: str | None = None
    failure_details: str | None = None
    continue_input: str | None = None
    unconsumed_events: list[dict] = field(default_factory=list)
    # SetCustomStatus threw (payload over 16 KB): the instance keeps its previous custom status.
    custom_status_rejected: bool = False
    # The shim's state after this episode when it is still blocked on a task: lets the engine tell
    # whether a further result would change anything (see Replayer.feed).
    blocked_replayer: "Replayer | None" = None


class _Task:
    """A .NET Task stand-in: completes once (maybe faulted) and then runs its continuations."""

    __slots__ = ("done", "failed", "_continuations")

    def __init__(self) -> None:
        self.done = False
        self.failed = False
        self._continuations: list[Callable[[_Task], None]] = []

    def then(self, callback: Callable[["_Task"], None]) -> None:
        if self.done:
            callback(self)
        else:
            self._continuations.append(callback)

    def finish(self, failed: bool = False) -> None:
        if self.done:
            return
        self.done, self.failed = True, failed
        continuations, self._continuations = self._continuations, []
        for callback in continuations:
            callback(self)


def _completed_task(failed: bool = False) -> _Task:
    task = _Task()
    task.finish(failed)
    return task


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


class UnsupportedActionError(Exception):
    """An action type devhost does not implement (entities, call_http)."""


class Replayer:
    """Replays one execution's history against the SDK's action list (one instance per episode)."""

    def __init__(self, *, orchestrator_name: str, execution_id: str, actions: list[dict],
                 resolve_activity: Callable[[str], str], resolve_orchestrator: Callable[[str], str],
                 max_actions: int = DEFAULT_MAX_ORCHESTRATION_ACTIONS, instance_id: str | None = None,
                 parent_instance_id: str | None = None) -> None:
        self._name = orchestrator_name
        self._family = {i.lower() for i in (instance_id, parent_instance_id) if i}
        self._max_actions = max_actions
        self._execution_id = execution_id
        self._actions = actions
        self._resolve_activity = resolve_activity
        self._resolve_orchestrator = resolve_orchestrator
        self._next_id = 0
        self._pending: dict[int, Decision] = {}
        self._open: dict[int, Callable[[dict], None]] = {}
        self._waiters: dict[str, list[_Task]] = defaultdict(list)
        self._buffer: dict[str, deque] = defaultdict(deque)
        self._now_text: str | None = None
        self._now_cache: tuple[str, dt.datetime] | None = None
        self._index = 0
        self.loop_done = False
        self.continue_input: str | None = None
        self.saw_continue = False

    # -- time -------------------------------------------------------------------------------
    def _now(self) -> dt.datetime:
        if self._now_cache is None or self._now_cache[0] != self._now_text:
            self._now_cache = (self._now_text, h.parse_iso(self._now_text))
        return self._now_cache[1]

    # -- allocation -------------------------------------------------------------------------
    def _allocate(self, kind: int, **fields: Any) -> Decision:
        if self._next_id >= self._max_actions:  # the extension's IncrementActionsOrThrowException
            raise TooManyActionsError(
                f"Maximum amount of orchestration actions ({self._max_actions}) has been reached. This value can be "
                "configured in host.json file as MaxOrchestrationActions.")
        decision = Decision(id=self._next_id, kind=kind, **fields)
        self._next_id += 1
        self._pending[decision.id] = decision
        return decision

    def _schedule_activity(self, name: str, input_text: str | None) -> tuple[int, _Task]:
        decision = self._allocate(h.TASK_SCHEDULED, name=self._resolve_activity(name), input=input_text)
        return decision.id, _Task()

    def _schedule_sub(self, action: dict) -> tuple[int, _Task]:
        name = self._resolve_orchestrator(action["functionName"])
        wanted = action.get("instanceId")
        if wanted and wanted.lower() in self._family:  # the extension's checks (CallDurableTaskFunctionAsync)
            raise InvalidInstanceIdError("The instance ID of a sub-orchestration must be different than the instance "
                                         "ID of a parent orchestration.")
        if wanted and wanted.startswith("@"):  # .NET ArgumentException(message, paramName), arguments swapped there
            raise InvalidInstanceIdError("instanceId (Parameter 'Orchestration instance ids must not start with @')")
        decision = self._allocate(h.SUB_ORCHESTRATION_CREATED, name=name, input=action.get("input"))
        decision.instance_id = action.get("instanceId") or f"{self._execution_id}:{decision.id}"
        decision.version = action.get("version")
        return decision.id, _Task()

    def _timer(self, fire_at: dt.datetime, on_fired: Callable[[dict], None], canceled: bool = False) -> int:
        decision = self._allocate(h.TIMER_CREATED, fire_at=fire_at, canceled=canceled)
        if not canceled:
            self._open[decision.id] = on_fired
        return decision.id

    # -- invoking actions ---------------------------------------------------------------------
    def _invoke(self, action: dict) -> _Task:
        kind = action.get("actionType")
        if kind == 0:
            task_id, task = self._schedule_activity(action["functionName"], action.get("input"))
            self._open[task_id] = lambda ev: task.finish(ev["EventType"] != h.TASK_COMPLETED)
            return task
        if kind == 2:
            task_id, task = self._schedule_sub(action)
            self._open[task_id] = lambda ev: task.finish(ev["EventType"] != h.SUB_ORCHESTRATION_COMPLETED)
            return task
        if kind in (1, 3):
            return self._invoke_with_retry(action)
        if kind == 4:
            self.saw_continue = True
            self.continue_input = action.get("input")
            return _completed_task()
        if kind == 5:
            fire_at = h.parse_iso(action["fireAt"])
            task = _Task()
            canceled = bool(action.get("isCanceled"))
            self._timer(fire_at, lambda ev: task.finish(), canceled=canceled)
            if canceled:  # DTFx: a timer created with a cancelled token completes (cancelled) at once
                task.finish(failed=True)
            return task
        if kind == 6:
            task = _Task()
            key = (action.get("externalEventName") or "").lower()
            if self._buffer[key]:
                self._buffer[key].popleft()
                task.finish()
            else:
                self._waiters[key].append(task)
            return task
        if kind == 11:
            return self._when_any([self._invoke(child) for child in action.get("compoundActions") or []])
        if kind == 12:
            return self._when_all([self._invoke(child) for child in action.get("compoundActions") or []])
        labels = {7: "call_entity", 8: "call_http", 9: "signal_entity", 10: "scheduled signal_entity"}
        raise UnsupportedActionError(f"devhost does not support the '{labels.get(kind, kind)}' action "
                                     f"(actionType {kind}) of orchestrator '{self._name}'")

    @staticmethod
    def _when_all(children: list[_Task]) -> _Task:
        task = _Task()
        remaining = [len(children)]
        if not children:
            task.finish()
            return task

        def child_done(_: _Task) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                task.finish(any(child.failed for child in children))

        for child in children:
            child.then(child_done)
        return task

    @staticmethod
    def _when_any(children: list[_Task]) -> _Task:
        task = _Task()
        if not children:
            task.finish()
        for child in children:
            child.then(lambda _: task.finish())
        return task

    def _invoke_with_retry(self, action: dict) -> _Task:
        """DTFx RetryInterceptor: after every failed attempt a timer (immediate after the last one)."""
        is_activity = action["actionType"] == 1
        options = action.get("retryOptions") or {}
        first_ms = float(options.get("firstRetryIntervalInMilliseconds", 0))
        max_attempts = int(options.get("maxNumberOfAttempts", 1))
        backoff = float(options.get("backoffCoefficient", 1.0))
        max_interval_ms = float(options.get("maxRetryIntervalInMilliseconds", DEFAULT_MAX_RETRY_INTERVAL_MS))
        success_type = h.TASK_COMPLETED if is_activity else h.SUB_ORCHESTRATION_COMPLETED
        task = _Task()
        attempt = [0]

        def start_attempt() -> None:
            if is_activity:
                task_id, _ = self._schedule_activity(action["functionName"], action.get("input"))
            else:
                task_id, _ = self._schedule_sub(action)
            self._open[task_id] = on_result

        def on_result(ev: dict) -> None:
            if ev["EventType"] == success_type:
                task.finish()
                return
            n = attempt[0]
            if n + 1 >= max_attempts:
                self._timer(self._now(), lambda _ev: task.finish(failed=True))  # "dummy timer for back-compat"
                return
            delay_ms = min(first_ms * (backoff ** n), max_interval_ms)
            self._timer(self._now() + dt.timedelta(milliseconds=delay_ms), on_retry_timer)

        def on_retry_timer(_ev: dict) -> None:
            attempt[0] += 1
            start_attempt()

        start_attempt()
        return task

    # -- the sequential loop -------------------------------------------------------------------
    def _advance(self, _: _Task | None = None) -> None:
        while self._index < len(self._actions):
            task = self._invoke(self._actions[self._index])
            self._index += 1
            if not task.done:
                task.then(self._advance)
                return
        self.loop_done = True

    # -- history --------------------------------------------------------------------------------
    def _match(self, ev: dict) -> None:
        kind = ev["EventType"]
        event_id = ev.get("EventId")
        decision = self._pending.pop(event_id, None)
        label = KIND_NAMES.get(kind, "task")
        name = ev.get("Name")
        if decision is None:
            raise NonDeterminismError(
                f"Non-Deterministic workflow detected: A previous execution of this orchestration scheduled "
                f"{_article(label)} {label} with sequence ID {event_id}" + (f" and name '{name}' (version '')" if name else "")
                + ", but the current replay execution hasn't (yet?) scheduled this task. Was a change made "
                "to the orchestrator code after this instance had already started running?")
        if decision.kind != kind or (name or "").lower() != (decision.name or "").lower():
            replayed = KIND_NAMES.get(decision.kind, "task") + (f" named '{decision.name}'" if decision.name else "")
            raise NonDeterminismError(
                f"Non-Deterministic workflow detected: A previous execution of this orchestration scheduled "
                f"{_article(label)} {label} with sequence number {event_id}" + (f" named '{name}'" if name else "")
                + f", but the current orchestration replay instead scheduled {_article(replayed)} {replayed}. Was a change made "
                "to the orchestrator code after this instance had already started running?")

    def replay(self, events: list[dict]) -> None:
        """Process every event of the execution (old and new) in order."""
        for ev in events:
            kind = ev["EventType"]
            if kind == h.ORCHESTRATOR_STARTED:
                self._now_text = ev["Timestamp"]
            elif kind == h.EXECUTION_STARTED:
                self._advance()
            elif kind in (h.TASK_SCHEDULED, h.TIMER_CREATED, h.SUB_ORCHESTRATION_CREATED, h.EVENT_SENT):
                self._match(ev)
            elif kind in (h.TASK_COMPLETED, h.TASK_FAILED, h.SUB_ORCHESTRATION_COMPLETED, h.SUB_ORCHESTRATION_FAILED):
                handler = self._open.pop(ev.get("TaskScheduledId"), None)
                if handler is not None:
                    handler(ev)
            elif kind == h.TIMER_FIRED:
                handler = self._open.pop(ev.get("TimerId"), None)
                if handler is not None:
                    handler(ev)
            elif kind == h.EVENT_RAISED:
                key = (ev.get("Name") or "").lower()
                if self._waiters[key]:
                    self._waiters[key].pop().finish()  # newest waiter first, as .NET and Python do
                else:
                    self._buffer[key].append(ev)

    def feed(self, event: dict) -> bool:
        """Apply one more completion event after the episode; True if the extension would act on it.

        The shim only schedules something new when its sequential loop moves on (the task it waits
        for completed) or when a retry handler allocates a timer or a new attempt. A result that
        does neither (e.g. one more of N results of a ``task_all``) changes nothing the extension
        does, so the engine can let it wait for the next episode instead of replaying for it.
        """
        before = (self._index, self.loop_done, self._next_id)
        self.replay([event])
        return (self._index, self.loop_done, self._next_id) != before

    def new_decisions(self) -> list[Decision]:
        return [self._pending[k] for k in sorted(self._pending)]

    def unconsumed_events(self) -> list[dict]:
        return [ev for queue in self._buffer.values() for ev in queue]

    @property
    def next_id(self) -> int:
        return self._next_id


def custom_status_size_error(custom_status: Any) -> str | None:
    """The extension's ArgumentException text if the custom status is over 16 KB, else None.

    ``MessagePayloadDataConverter.Serialize(value, maxSizeInKB)``: compact JSON, its UTF-16 size in
    whole KB (truncated) must not exceed the limit (Azure Storage keeps strings as UTF-16).
    """
    if custom_status is None:
        return None
    text = json.dumps(custom_status, separators=(",", ":"), ensure_ascii=False)
    if len(text) * 4 < (MAX_CUSTOM_STATUS_KB + 1) * 1024:  # at most 4 UTF-16 bytes a character: small enough
        return None
    size_kb = len(text.encode("utf-16-le", "surrogatepass")) // 1024
    if size_kb <= MAX_CUSTOM_STATUS_KB:
        return None
    return (f"The UTF-16 size of the JSON-serialized payload must not exceed {MAX_CUSTOM_STATUS_KB:,} KB. "
            f"The current payload size is {size_kb:,} KB.")


def replay_episode(*, orchestrator_name: str, execution_id: str, events: list[dict], state: dict | None,
                   error_text: str | None, resolve_activity: Callable[[str], str],
                   resolve_orchestrator: Callable[[str], str],
                   max_actions: int = DEFAULT_MAX_ORCHESTRATION_ACTIONS, instance_id: str | None = None,
                   parent_instance_id: str | None = None) -> ReplayResult:
    """Run the shim over one episode. ``state`` is the SDK's OrchestratorState (None if it gave none)."""
    failure_prefix = f"Orchestrator function '{orchestrator_name}' failed: "
    if state is None:
        return ReplayResult([], "failed", 0, failure=failure_prefix + (error_text or "no orchestrator state"),
                            failure_details=f"Message: {error_text}")
    size_error = custom_status_size_error(state.get("customStatus"))
    if size_error is not None:  # the shim sets the custom status before it replays any action
        return ReplayResult([], "failed", 0, failure=failure_prefix + size_error,
                            failure_details=f"Message: {size_error}", custom_status_rejected=True)
    actions_outer = state.get("actions") or [[]]
    actions = actions_outer[0] if actions_outer else []
    if len(actions_outer) > 1:
        return ReplayResult([], "failed", 0, failure=failure_prefix + "schema V1 action lists are not supported")
    replayer = Replayer(orchestrator_name=orchestrator_name, execution_id=execution_id, actions=actions,
                        resolve_activity=resolve_activity, resolve_orchestrator=resolve_orchestrator,
                        max_actions=max_actions, instance_id=instance_id, parent_instance_id=parent_instance_id)
    try:
        replayer.replay(events)
    except NonDeterminismError as exc:
        return ReplayResult([], "failed", replayer.next_id, failure=str(exc), failure_details=str(exc))
    except (UnknownFunctionError, UnsupportedActionError, InvalidInstanceIdError) as exc:
        return ReplayResult([], "failed", replayer.next_id, failure=str(exc), failure_details=str(exc))
    except TooManyActionsError as exc:  # raised inside the orchestration in the extension: a function failure
        return ReplayResult([], "failed", replayer.next_id, failure=failure_prefix + str(exc),
                            failure_details=f"Message: {exc}")
    decisions = replayer.new_decisions()
    if not replayer.loop_done:
        return ReplayResult(decisions, "running", replayer.next_id, blocked_replayer=replayer)
    if state.get("error") is not None or error_text is not None:
        error = state.get("error") if state.get("error") is not None else error_text
        return ReplayResult(decisions, "failed", replayer.next_id, failure=failure_prefix + str(error),
                            failure_details=f"Message: {error}, StackTrace: {error_text or ''}")
    if state.get("isDone"):
        if replayer.saw_continue:
            return ReplayResult(decisions, "continued_as_new", replayer.next_id,
                                continue_input=replayer.continue_input,
                                unconsumed_events=replayer.unconsumed_events())
        return ReplayResult(decisions, "completed", replayer.next_id, output=state.get("output"))
    return ReplayResult(decisions, "running", replayer.next_id)
