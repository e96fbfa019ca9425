"""Workflow options: the non-secret settings an orchestrator needs, carried in its input.

Why: an orchestrator must be deterministic, so it may not read environment variables (a setting
changed between two replays would change its decisions). The trigger reads ``core.settings`` once
and puts the values below into the orchestration input as a plain ``options`` dict; every
orchestrator rebuilds :class:`WorkflowOptions` from that dict with :meth:`WorkflowOptions.from_dict`.
Missing keys fall back to the defaults here, so an orchestration started by hand (a test, the
devhost CLI) still runs. Nothing in here is a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """Durable retry of one activity on *transient* failures (the activity raised)."""

    first_retry_interval_ms: int = 2000
    max_attempts: int = 5


@dataclass(frozen=True)
class WorkflowOptions:
    """Every knob the orchestrators read, with defaults that match ``core/settings.py``.

    Durations are seconds unless the name says otherwise.
    """

    # provision_batch
    max_instances_in_flight: int = 20
    # per-step retry for transient errors; per-step overrides by activity name
    activity_retry: RetryPolicy = field(default_factory=RetryPolicy)
    step_retry: dict[str, RetryPolicy] = field(default_factory=dict)
    # throttled results ({"kind": "throttled"}): durable-timer waits, bounded
    max_throttle_waits: int = 8
    default_throttle_wait: float = 10.0
    max_throttle_wait: float = 300.0
    # monitor_job
    poll_first_interval: float = 60.0
    poll_max_interval: float = 600.0
    poll_backoff: float = 2.0
    monitor_deadline: float = 86400.0
    polls_per_execution: int = 10
    provisioning_errors_top: int = 10
    # health_sweep
    sweep_max_in_flight: int = 20
    restart_credential_quarantine: bool = False
    sweep_page_size: int = 200
    sweep_max_reported: int = 500

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "WorkflowOptions":
        """Build options from the camelCase dict of :meth:`to_dict`; unknown keys are ignored."""
        data = data or {}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            key = _camel(f.name)
            if key not in data or data[key] is None:
                continue
            value = data[key]
            if f.name == "activity_retry":
                value = _retry(value)
            elif f.name == "step_retry":
                value = {name: _retry(v) for name, v in dict(value).items()}
            kwargs[f.name] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """camelCase JSON-able dict, the form that travels in orchestration inputs."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, RetryPolicy):
                value = _retry_dict(value)
            elif f.name == "step_retry":
                value = {name: _retry_dict(v) for name, v in value.items()}
            out[_camel(f.name)] = value
        return out

    def retry_for(self, activity: str) -> RetryPolicy:
        """The transient-retry policy of one activity (its override, else the default)."""
        return self.step_retry.get(activity, self.activity_retry)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _retry(value: Any) -> RetryPolicy:
    if isinstance(value, RetryPolicy):
        return value
    value = dict(value or {})
    return RetryPolicy(
        first_retry_interval_ms=max(1, int(value.get("firstRetryIntervalMs", RetryPolicy.first_retry_interval_ms))),
        max_attempts=max(1, int(value.get("maxAttempts", RetryPolicy.max_attempts))),
    )


def _retry_dict(policy: RetryPolicy) -> dict[str, int]:
    return {"firstRetryIntervalMs": policy.first_retry_interval_ms, "maxAttempts": policy.max_attempts}


__all__ = ["RetryPolicy", "WorkflowOptions"]
