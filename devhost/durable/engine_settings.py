"""EngineSettings: the ``extensions.durableTask`` host.json settings the durable engine honours."""
from __future__ import annotations

import os
from dataclasses import dataclass

from devhost.durable.replayer import DEFAULT_MAX_ORCHESTRATION_ACTIONS


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



def _timespan_seconds(text: str) -> float:
    """Parse a .NET TimeSpan ``[d.]hh:mm:ss[.fff]`` (functionTimeout)."""
    days = 0
    if "." in text.split(":")[0]:
        day_part, text = text.split(".", 1)
        days = int(day_part)
    hours, minutes, seconds = text.split(":")
    return days * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
