"""``fleet_action``: one operator action (docs/fleet-operations.md) on the targets the HTTP trigger resolved and the
operator confirmed; one ``fleet_instance_action`` per target, at most ``maxInFlight`` at a time.

Input: :class:`core.fleet_contracts.FleetActionInput`. Output: :class:`FleetActionReport` - one
result per target (``outcome`` ``done`` / ``unchanged`` / ``refused`` / ``valid`` / ``invalid`` /
``failed``) and counts by outcome. Custom status: ``{"phase", "done", "total"}``.

Idempotent: the orchestration id is the action id (:func:`core.instance_ids.action_instance_id`), so a
retried request finds this orchestration and starts nothing; after a host crash Durable replays it
and each target's activity either ran (its result is in the history) or runs once more, and every
action finds work already done and says ``unchanged`` (pause, resume, allowDeletes, rejectDeletes, teardown),
or repeats harmlessly (restart). Writes are paced by the Graph client's write pacer.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, Generator

import azure.durable_functions as df

from core import names
from core.contracts import StepError
from core.fleet_contracts import FleetActionInput, FleetActionReport, FleetInstanceActionInput
from core.times import iso
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step, chunks, failure_message, gather_settled, throttle_delay
from orchestrators.blueprint import bp


@bp.function_name(names.FLEET_ACTION)
@bp.orchestration_trigger(context_name="context")
def fleet_action(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Run the action on every target, bounded; report per target."""
    data = FleetActionInput.from_dict(context.get_input() or {})
    options = WorkflowOptions.from_dict(data.options)
    started = iso(context.current_utc_datetime)
    targets = list(data.targets)
    results: list[dict[str, Any]] = []
    policy = options.retry_for(names.FLEET_INSTANCE_ACTION)
    retry = df.RetryOptions(policy.first_retry_interval_ms, policy.max_attempts)
    for chunk in chunks(targets, data.max_in_flight):
        context.set_custom_status({"phase": "acting", "done": len(results), "total": len(targets)})
        payloads = [FleetInstanceActionInput(action=data.action, instance_key=t.instance_key,
                                             service_principal_id=t.service_principal_id,
                                             params=dict(data.params), action_id=data.action_id).to_dict()
                    for t in chunk]
        tasks = [context.call_activity_with_retry(names.FLEET_INSTANCE_ACTION, retry, p) for p in payloads]
        settled = yield from gather_settled(context, tasks)
        for target, payload, (ok, value) in zip(chunk, payloads, settled):
            if ok and isinstance(value, dict) and not value.get("ok") and (value.get("error") or {}).get("kind") == "throttled":
                # wait out Graph's Retry-After on a durable timer, then call again (call_step waits out further ones)
                delay = throttle_delay(value["error"].get("retryAfterSeconds"), 1,
                                       f"{context.instance_id}:{target.service_principal_id}", options)
                yield context.create_timer(context.current_utc_datetime + dt.timedelta(seconds=delay))
                value = yield from call_step(context, names.FLEET_INSTANCE_ACTION, payload, options)
            results.append(_result(target.instance_key, target.service_principal_id, ok, value))
    counts = Counter(str(r.get("outcome")) for r in results)
    report = FleetActionReport(action_id=data.action_id, action=data.action, params=dict(data.params),
                               selector=dict(data.selector), counts=dict(sorted(counts.items())), results=results,
                               started_at=started, finished_at=iso(context.current_utc_datetime))
    context.set_custom_status({"phase": "done", "done": len(results), "total": len(targets)})
    return report.to_dict()


def _result(key: str, sp_id: str, ok: bool, value: Any) -> dict[str, Any]:
    base = {"instanceKey": key, "servicePrincipalId": sp_id}
    if not ok:
        return {**base, "outcome": "failed", "detail": failure_message(value) if isinstance(value, BaseException)
                else "the activity failed"}
    if isinstance(value, dict) and value.get("ok"):
        return {k: v for k, v in value.items() if k != "ok"}
    error = StepError.from_dict((value or {}).get("error") if isinstance(value, dict) else None)
    outcome = "refused" if error.code == "NotOurs" else "failed"
    return {**base, "outcome": outcome, "detail": f"{error.code}: {error.message}"}
