"""``provision_batch``: one request for N app instances → N provisioning orchestrations → one report.

Contract
--------
Input: ``{"requestId": str|None, "request": {"instances": [instance, ...], ...}, "options": {...}}``
where each instance is the validated, secret-free form produced by ``core.model`` (credentials are
Key Vault references). The batch id is the orchestration's own instance id.

Output: the batch report of :func:`orchestrators.report.batch_report` - per instance the outcome
(steadyState / quarantined / failed / timedOut) with reason, ids, timings and provisioning errors,
plus counts and the top errors of the batch.

Custom status while running: ``{"phase": "...", "counts": {total, queued, running, steadyState,
quarantined, failed, timedOut}}``.

Failure modes: this orchestrator does not fail for instance problems; each is an outcome. An
unknown application template fails the instances that use it before they start.

Bounded fan-out
---------------
At most ``options.maxInstancesInFlight`` children run at once. New children are started with a
zero-delay "dispatch" timer next to them in a ``task_any``: the .NET extension replays the action
list *in order, awaiting each action* (durable-host-protocol §3.8), so a WhenAny that held only the
new children would block every later start until those children finished. The timer makes each
dispatch action complete at once in both the SDK and the extension, and the "wait for any child"
step afterwards emits no action at all (every child is already scheduled). Children are called
without Durable retries, so no task ids are allocated out of order.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from core import names
from orchestrators.blueprint import bp
from orchestrators.options import WorkflowOptions
from orchestrators.report import (
    batch_report, child_instance_id, crashed_outcome, not_started_outcome, progress_counts,
)
from orchestrators.steps import call_step, failure_message, iso, seconds_between


@bp.function_name(names.PROVISION_BATCH)
@bp.orchestration_trigger(context_name="context")
def provision_batch(context: df.DurableOrchestrationContext):
    """Fan out the instances of one request, bounded, and fan in to the batch report."""
    data: dict[str, Any] = context.get_input() or {}
    options = WorkflowOptions.from_dict(data.get("options"))
    batch_id = context.instance_id
    instances: list[dict[str, Any]] = list((data.get("request") or {}).get("instances") or [])
    started_at = iso(context.current_utc_datetime)
    outcomes: dict[str, dict[str, Any]] = {}

    context.set_custom_status({"phase": "resolving templates",
                               "counts": progress_counts(len(instances), len(instances), 0, [])})
    templates = yield from _resolve_templates(context, instances, options)

    pending: list[dict[str, Any]] = []
    for inst in instances:
        child_id = child_instance_id(batch_id, inst.get("key"))
        resolved = templates.get(_template_key(inst))
        if resolved and not resolved.get("ok"):
            outcomes[child_id] = not_started_outcome(inst, child_id, resolved["error"], started_at)
        else:
            pending.append(inst)

    in_flight: dict[Any, tuple[str, dict[str, Any]]] = {}
    while pending or in_flight:
        dispatched = []
        while pending and len(in_flight) < max(1, options.max_instances_in_flight):
            inst = pending.pop(0)
            child_id = child_instance_id(batch_id, inst.get("key"))
            child_input = {"batchId": batch_id, "instance": _with_template(inst, templates),
                           "options": data.get("options") or {}}
            task = context.call_sub_orchestrator(names.PROVISION_INSTANCE, child_input, instance_id=child_id)
            in_flight[task] = (child_id, inst)
            dispatched.append(task)
        _report_progress(context, len(instances), len(pending), len(in_flight), outcomes)
        if dispatched:
            yield context.task_any(dispatched + [context.create_timer(context.current_utc_datetime)])
        else:
            try:
                yield context.task_any(list(in_flight))
            except Exception:  # a failed child surfaces below as its own outcome
                pass
        for task in [t for t in in_flight if t.is_completed]:
            child_id, inst = in_flight.pop(task)
            outcomes[child_id] = _child_outcome(task, inst, child_id, iso(context.current_utc_datetime))

    finished_at = iso(context.current_utc_datetime)
    ordered = [outcomes[child_instance_id(batch_id, inst.get("key"))] for inst in instances]
    report = batch_report(batch_id, data.get("requestId"), started_at, finished_at, ordered,
                          seconds_between(started_at, finished_at))
    context.set_custom_status({"phase": "completed", "counts": progress_counts(len(instances), 0, 0, ordered)})
    return report


def _report_progress(context, total: int, queued: int, running: int, outcomes: dict) -> None:
    context.set_custom_status({"phase": "provisioning",
                               "counts": progress_counts(total, queued, running, list(outcomes.values()))})


def _child_outcome(task, inst: dict[str, Any], child_id: str, at: str) -> dict[str, Any]:
    if task.state.name == "SUCCEEDED" and isinstance(task.result, dict):
        return task.result
    return crashed_outcome(inst, child_id, failure_message(task.result) if isinstance(task.result, BaseException)
                           else "provision_instance returned no outcome", at)


def _template_key(inst: dict[str, Any]) -> str:
    template = inst.get("applicationTemplate") or {}
    return f"id:{template['id']}" if template.get("id") else f"name:{template.get('displayName', '')}"


def _with_template(inst: dict[str, Any], templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    resolved = templates.get(_template_key(inst))
    if resolved and resolved.get("ok"):
        return {**inst, "templateId": resolved["templateId"]}
    return inst


def _resolve_templates(context, instances: list[dict[str, Any]], options: WorkflowOptions):
    """Resolve each distinct application template once for the whole batch (not once per instance)."""
    distinct: dict[str, dict[str, Any]] = {}
    for inst in instances:
        distinct.setdefault(_template_key(inst), inst.get("applicationTemplate") or {})
    keys = list(distinct)
    # templates are few; resolve them one after the other (each call has its own retry/throttle budget)
    results: dict[str, dict[str, Any]] = {}
    for key in keys:
        results[key] = yield from call_step(context, names.RESOLVE_APPLICATION_TEMPLATE,
                                            {"applicationTemplate": distinct[key]}, options)
    return results


__all__ = ["provision_batch"]
