"""Drift in the paged health sweep (``SWEEP_DRIFT_CHECK``, off by default): one helper the page calls.

With the option on, :func:`check_drift` runs ``check_instance_drift`` for each instance of the page
(at most ``sweepMaxInFlight`` at a time), marks each drifted instance's report line with
``drift: {parts, profile}`` and returns the page's counts per part (``checked``, ``drifted``, one count
per part: ``schema``, ``secretKeys``, ``provisioningSettings``, ``assignments``, ``schedule``, ``job``;
``unreadable`` for an instance whose drift could not be read). The parent adds the pages' counts into
the sweep report's ``driftCounts``.

Cost: per instance about 6 Graph reads (the service principal, the job list, the job's schema, the
template's schema when a profile is recorded, the secret set, the app-role assignments) - 6x the
sweep's single status read - which is why it is off by default.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Generator

import azure.durable_functions as df

from core import names
from core.profile_contracts import CheckInstanceDriftInput, InstanceDriftOutput
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import chunks, gather_settled


def check_drift(context: df.DurableOrchestrationContext, lines: list[dict[str, Any]],
                options: WorkflowOptions) -> Generator[Any, Any, tuple[list[dict[str, Any]], dict[str, int] | None]]:
    """``(lines, driftCounts)``: the lines with drifted instances marked, and the counts (None when switched off)."""
    if not options.sweep_drift_check:
        return lines, None
    policy = options.retry_for(names.CHECK_INSTANCE_DRIFT)
    retry = df.RetryOptions(policy.first_retry_interval_ms, policy.max_attempts)
    counts: Counter = Counter()
    marked: list[dict[str, Any]] = []
    for group in chunks(lines, max(1, options.sweep_max_in_flight)):
        tasks = [context.call_activity_with_retry(names.CHECK_INSTANCE_DRIFT, retry, CheckInstanceDriftInput(
            service_principal_id=str(line["servicePrincipalId"])).to_dict()) for line in group]
        settled = yield from gather_settled(context, tasks)
        for line, (ok, value) in zip(group, settled):
            counts["checked"] += 1
            if not (ok and isinstance(value, dict) and value.get("ok")):
                counts["unreadable"] += 1
                marked.append({**line, "drift": {"error": "drift could not be read"}})
                continue
            found = InstanceDriftOutput.from_dict(value)
            if found.drifted:
                counts["drifted"] += 1
                counts.update(found.parts)
                marked.append({**line, "drift": {"parts": list(found.parts), "profile": found.profile}})
            else:
                marked.append(line)
    return marked, dict(sorted(counts.items()))
