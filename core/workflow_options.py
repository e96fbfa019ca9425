"""Workflow options: the non-secret settings an orchestrator needs, carried in its input.

Why: an orchestrator must be deterministic, so it may not read environment variables (a setting
changed between two replays would change its decisions). The trigger reads ``core.settings`` once
and puts :meth:`WorkflowOptions.from_settings` into the orchestration input as a plain ``options``
dict (:meth:`WorkflowOptions.to_dict`); every orchestrator rebuilds :class:`WorkflowOptions` from
that dict with :meth:`WorkflowOptions.from_dict`. Missing keys fall back to the defaults, which are
the settings table's (:data:`core.settings.SETTINGS`): one source, so an orchestration started by
hand (a test, the devhost CLI) runs with the same values as one started by a trigger. Nothing in
here is a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from core.settings import SETTINGS, Settings

_DEFAULTS = {s.field: s.default for s in SETTINGS}

#: option field -> the settings field it comes from (every option a person can set)
FROM_SETTINGS: dict[str, str] = {
    "max_instances_in_flight": "batch_max_in_flight",
    "sub_batch_size": "batch_sub_batch_size",
    "sub_batches_in_flight": "batch_sub_batches_in_flight",
    "report_container": "batch_report_container",
    "report_inline_max": "batch_report_inline_max",
    "max_throttle_waits": "throttled_max_waits",
    "poll_first_interval": "monitor_first_poll_seconds",
    "poll_max_interval": "monitor_max_poll_seconds",
    "monitor_deadline": "monitor_deadline_seconds",
    "polls_per_execution": "monitor_polls_per_generation",
    "sweep_max_in_flight": "health_sweep_max_in_flight",
    "restart_credential_quarantine": "health_sweep_restart_credential_quarantine",
    "sweep_page_size": "health_sweep_page_size",
    "sweep_drift_check": "sweep_drift_check",
    "sweep_max_reported": "health_sweep_max_reported",
    "rotation_max_in_flight": "rotation_max_in_flight",
    "sweep_rotation_safety_net": "health_sweep_rotation_safety_net",
    "credential_expiry_warning_days": "credential_expiry_warning_days",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Durable retry of one activity on *transient* failures (the activity raised)."""

    first_retry_interval_ms: int = int(_DEFAULTS["activity_retry_first_interval_seconds"] * 1000)
    max_attempts: int = _DEFAULTS["activity_retry_max_attempts"]

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(first_retry_interval_ms=int(settings.activity_retry_first_interval_seconds * 1000),
                   max_attempts=settings.activity_retry_max_attempts)

    @classmethod
    def from_dict(cls, value: Any) -> "RetryPolicy":
        if isinstance(value, RetryPolicy):
            return value
        data = dict(value or {})
        return cls(first_retry_interval_ms=max(1, int(data.get("firstRetryIntervalMs", cls.first_retry_interval_ms))),
                   max_attempts=max(1, int(data.get("maxAttempts", cls.max_attempts))))

    def to_dict(self) -> dict[str, int]:
        return {"firstRetryIntervalMs": self.first_retry_interval_ms, "maxAttempts": self.max_attempts}


@dataclass(frozen=True)
class WorkflowOptions:
    """Every knob the orchestrators read. Durations are seconds unless the name says otherwise.

    The defaults of the fields in :data:`FROM_SETTINGS` (and of :class:`RetryPolicy`) are the
    settings table's; the others are not settings (tests and benchmarks may still pass them).
    """

    # provision_batch
    max_instances_in_flight: int = _DEFAULTS["batch_max_in_flight"]
    # provision_batch over sub-batches (an input whose options lack subBatchSize runs the single-history path)
    sub_batch_size: int = _DEFAULTS["batch_sub_batch_size"]
    sub_batches_in_flight: int = _DEFAULTS["batch_sub_batches_in_flight"]
    report_container: str = _DEFAULTS["batch_report_container"]
    report_inline_max: int = _DEFAULTS["batch_report_inline_max"]
    # per-step retry for transient errors; per-step overrides by activity name
    activity_retry: RetryPolicy = field(default_factory=RetryPolicy)
    step_retry: dict[str, RetryPolicy] = field(default_factory=dict)
    # throttled results ({"kind": "throttled"}): durable-timer waits, bounded
    max_throttle_waits: int = _DEFAULTS["throttled_max_waits"]
    default_throttle_wait: float = 10.0
    max_throttle_wait: float = 300.0
    # monitor_job
    poll_first_interval: float = _DEFAULTS["monitor_first_poll_seconds"]
    poll_max_interval: float = _DEFAULTS["monitor_max_poll_seconds"]
    poll_backoff: float = 2.0
    monitor_deadline: float = _DEFAULTS["monitor_deadline_seconds"]
    polls_per_execution: int = _DEFAULTS["monitor_polls_per_generation"]
    provisioning_errors_top: int = 10
    # health_sweep
    sweep_max_in_flight: int = _DEFAULTS["health_sweep_max_in_flight"]
    restart_credential_quarantine: bool = _DEFAULTS["health_sweep_restart_credential_quarantine"]
    # health_sweep over pages (an input whose options lack sweepPageSize runs the single-history sweep)
    sweep_page_size: int = _DEFAULTS["health_sweep_page_size"]
    sweep_max_reported: int = _DEFAULTS["health_sweep_max_reported"]
    sweep_drift_check: bool = _DEFAULTS["sweep_drift_check"]
    # rotate_secret (also started by the health sweep, which passes its own options on)
    rotation_max_in_flight: int = _DEFAULTS["rotation_max_in_flight"]
    # the paged sweep's duties (orchestrators/health_sweep_page.py): run only when the sweep's options carry
    # the key (a trigger-started sweep), so a sweep started before them replays as it was recorded
    sweep_rotation_safety_net: bool = _DEFAULTS["health_sweep_rotation_safety_net"]
    credential_expiry_warning_days: int = _DEFAULTS["credential_expiry_warning_days"]

    @classmethod
    def from_settings(cls, settings: Settings) -> "WorkflowOptions":
        """The options of a process's settings (read by a trigger, outside any replay)."""
        values: dict[str, Any] = {name: getattr(settings, source) for name, source in FROM_SETTINGS.items()}
        return cls(activity_retry=RetryPolicy.from_settings(settings), **values)

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
                value = RetryPolicy.from_dict(value)
            elif f.name == "step_retry":
                value = {name: RetryPolicy.from_dict(v) for name, v in dict(value).items()}
            kwargs[f.name] = value
        return cls(**kwargs)

    def to_dict(self, *, settings_only: bool = False) -> dict[str, Any]:
        """camelCase JSON-able dict, the form that travels in orchestration inputs.

        ``settings_only``: just the options that come from settings (and ``activityRetry``), the
        dict a trigger puts into an orchestration input.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            if settings_only and f.name not in FROM_SETTINGS and f.name != "activity_retry":
                continue
            value = getattr(self, f.name)
            if isinstance(value, RetryPolicy):
                value = value.to_dict()
            elif f.name == "step_retry":
                value = {name: v.to_dict() for name, v in value.items()}
            out[_camel(f.name)] = value
        return out

    def retry_for(self, activity: str) -> RetryPolicy:
        """The transient-retry policy of one activity (its override, else the default)."""
        return self.step_retry.get(activity, self.activity_retry)


def workflow_options(settings: Settings) -> dict[str, Any]:
    """The ``options`` dict a trigger puts into an orchestration input (JSON-able, no secret)."""
    return WorkflowOptions.from_settings(settings).to_dict(settings_only=True)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


__all__ = ["FROM_SETTINGS", "RetryPolicy", "WorkflowOptions", "workflow_options"]
