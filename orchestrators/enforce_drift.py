"""``enforce_drift``: put the drifted instances of a selection back to their desired state - bounded,
paced, idempotent.

Input: :class:`core.profile_contracts.EnforceDriftInput` (the targets the trigger resolved from a
selector and the operator confirmed). One ``enforce_instance_drift`` per target, at most
``maxInFlight`` at a time, a durable timer of ``paceSeconds`` between two groups (the re-applies
restart jobs: a wide enforce should not restart a whole fleet at once; every write also waits for
the app-wide write limiter). With ``dryRun`` (the default) each target's drift is read and the
actions it would get are listed; nothing is written.

Idempotent: each action finds a part already in its desired state and writes nothing (the schema
PUT only with a diff, the job started only when it is not running, assignments only when missing),
so a replay after a crash or a repeated request re-applies nothing twice. Output: per target its
parts and actions, and counts (``drifted``, ``clean``, ``failed``, and per outcome of the actions).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, Generator

import azure.durable_functions as df

from core import names
from core.contracts import StepError
from core.profile_contracts import EnforceDriftInput, EnforceInstanceDriftInput
from core.times import iso
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step, chunks, failure_message, gather_settled
from orchestrators.blueprint import bp


@bp.function_name(names.ENFORCE_DRIFT)
@bp.orchestration_trigger(context_name="context")
def enforce_drift(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    data = EnforceDriftInput.from_dict(context.get_input() or {})
    options = WorkflowOptions.from_dict(data.options)
    started = iso(context.current_utc_datetime)
    targets = list(data.targets)
    results: list[dict[str, Any]] = []
    policy = options.retry_for(names.ENFORCE_INSTANCE_DRIFT)
    retry = df.RetryOptions(policy.first_retry_interval_ms, policy.max_attempts)
    groups = chunks(targets, max(1, data.max_in_flight))
    for n, group in enumerate(groups):
        if n and data.pace_seconds > 0:
            yield context.create_timer(context.current_utc_datetime + dt.timedelta(seconds=data.pace_seconds))
        context.set_custom_status({"phase": "enforcing" if not data.dry_run else "planning", "done": len(results),
                                   "total": len(targets)})
        payloads = [EnforceInstanceDriftInput(service_principal_id=str(t.get("servicePrincipalId")),
                                              instance_key=t.get("instanceKey"), dry_run=data.dry_run).to_dict()
                    for t in group]
        tasks = [context.call_activity_with_retry(names.ENFORCE_INSTANCE_DRIFT, retry, p) for p in payloads]
        settled = yield from gather_settled(context, tasks)
        for target, payload, (ok, value) in zip(group, payloads, settled):
            if ok and isinstance(value, dict) and not value.get("ok") and (value.get("error") or {}).get("kind") == "throttled":
                value = yield from call_step(context, names.ENFORCE_INSTANCE_DRIFT, payload, options)
            results.append(_result(target, ok, value))
    outcomes = Counter(str(a.get("outcome")) for r in results for a in r.get("actions") or [])
    counts = {"targets": len(results), "drifted": sum(1 for r in results if r.get("drifted")),
              "clean": sum(1 for r in results if r.get("drifted") is False),
              "failed": sum(1 for r in results if r.get("error")), **dict(sorted(outcomes.items()))}
    report = {"enforceId": data.enforce_id, "dryRun": data.dry_run, "selector": dict(data.selector), "counts": counts,
              "results": results, "startedAt": started, "finishedAt": iso(context.current_utc_datetime)}
    context.set_custom_status({"phase": "done", "done": len(results), "total": len(targets)})
    return report


def _result(target: dict[str, Any], ok: bool, value: Any) -> dict[str, Any]:
    base = {"instanceKey": target.get("instanceKey"), "servicePrincipalId": target.get("servicePrincipalId")}
    if not ok:
        return {**base, "error": failure_message(value) if isinstance(value, BaseException) else "the activity failed"}
    if isinstance(value, dict) and value.get("ok"):
        return {**base, **{k: v for k, v in value.items() if k != "ok"}}
    error = StepError.from_dict((value or {}).get("error") if isinstance(value, dict) else None)
    return {**base, "error": f"{error.code}: {error.message}"}
