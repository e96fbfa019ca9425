"""Build the orchestrators' ``options`` dict from ``core.settings`` (read here, outside any replay).

The keys are the camelCase names of ``orchestrators.options.WorkflowOptions``; the two sides agree
through this JSON shape only, so a trigger never imports orchestrator code.
"""

from __future__ import annotations

from typing import Any

from core.settings import Settings


def workflow_options(settings: Settings) -> dict[str, Any]:
    """The non-secret knobs every orchestrator needs, as a JSON-able dict."""
    return {
        "maxInstancesInFlight": settings.batch_max_in_flight,
        "activityRetry": {"firstRetryIntervalMs": int(settings.activity_retry_first_interval_seconds * 1000),
                          "maxAttempts": settings.activity_retry_max_attempts},
        "maxThrottleWaits": settings.throttled_max_waits,
        "pollFirstInterval": settings.monitor_first_poll_seconds,
        "pollMaxInterval": settings.monitor_max_poll_seconds,
        "monitorDeadline": settings.monitor_deadline_seconds,
        "pollsPerExecution": settings.monitor_polls_per_generation,
        "sweepMaxInFlight": settings.health_sweep_max_in_flight,
        "restartCredentialQuarantine": settings.health_sweep_restart_credential_quarantine,
        "sweepPageSize": settings.health_sweep_page_size,
        "sweepMaxReported": settings.health_sweep_max_reported,
    }
