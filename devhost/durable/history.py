"""History events in the JSON shape the .NET extension sends (Newtonsoft, PascalCase, EventType int).

The SDK requires ``EventType``, ``EventId``, ``IsPlayed`` and ``Timestamp`` on every event, reads
``Version`` from ExecutionStarted and ``Result`` from completions (note "History events" in
devhost/durable/README.md), so the builders always emit those keys.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

EXECUTION_STARTED = 0
EXECUTION_COMPLETED = 1
EXECUTION_TERMINATED = 3
TASK_SCHEDULED = 4
TASK_COMPLETED = 5
TASK_FAILED = 6
SUB_ORCHESTRATION_CREATED = 7
SUB_ORCHESTRATION_COMPLETED = 8
SUB_ORCHESTRATION_FAILED = 9
TIMER_CREATED = 10
TIMER_FIRED = 11
ORCHESTRATOR_STARTED = 12
ORCHESTRATOR_COMPLETED = 13
EVENT_SENT = 14
EVENT_RAISED = 15
CONTINUE_AS_NEW = 16
EXECUTION_SUSPENDED = 19
EXECUTION_RESUMED = 20

EVENT_TYPE_NAMES = {
    0: "ExecutionStarted", 1: "ExecutionCompleted", 2: "ExecutionFailed", 3: "ExecutionTerminated",
    4: "TaskScheduled", 5: "TaskCompleted", 6: "TaskFailed", 7: "SubOrchestrationInstanceCreated",
    8: "SubOrchestrationInstanceCompleted", 9: "SubOrchestrationInstanceFailed", 10: "TimerCreated",
    11: "TimerFired", 12: "OrchestratorStarted", 13: "OrchestratorCompleted", 14: "EventSent",
    15: "EventRaised", 16: "ContinueAsNew", 17: "GenericEvent", 18: "HistoryState",
    19: "ExecutionSuspended", 20: "ExecutionResumed", 21: "ExecutionRewound",
}

# OrchestrationStatus ints used in ExecutionCompleted (DTFx enum).
STATUS_CODE = {"Running": 0, "Completed": 1, "ContinuedAsNew": 2, "Failed": 3, "Canceled": 4,
               "Terminated": 5, "Pending": 6, "Suspended": 7}


def iso(t: dt.datetime) -> str:
    """Timestamp as the extension writes it: ISO-8601 UTC with a 'Z' (dateutil parses it; naive would break)."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> dt.datetime:
    """Parse the timestamps we write and the ones clients send (up to 7 fractional digits, 'Z' or offset)."""
    text = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        tail = rest[len(digits):]
        text = f"{head}.{(digits + '000000')[:6]}{tail}"
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def event(event_type: int, timestamp: str, event_id: int = -1, **fields: Any) -> dict:
    """One history event with the four keys the SDK requires; ``fields`` are PascalCase extras."""
    ev = {"EventType": event_type, "EventId": event_id, "IsPlayed": False, "Timestamp": timestamp}
    ev.update(fields)
    return ev


def execution_started(timestamp: str, name: str, instance_id: str, execution_id: str, input_text: str | None,
                      parent: dict | None = None, version: str | None = "") -> dict:
    return event(EXECUTION_STARTED, timestamp, Name=name, Version=version or "", Input=input_text,
                 OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
                 ParentInstance=parent, Tags=None, Correlation=None, ParentTraceContext=None,
                 ScheduledStartTime=None, Generation=0)
