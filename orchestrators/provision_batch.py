"""``provision_batch``: one request for N app instances → N provisioning orchestrations → one report.

Contract
--------
Input: ``{"requestId": str|None, "request": {"instances": [instance, ...], ...}, "options": {...}}``
where each instance is the validated, secret-free form produced by ``core.model`` (credentials are
Key Vault references). The batch id is the orchestration's own instance id.

Output: the batch report of :func:`orchestrators.report.batch_report` - per instance the outcome
(steadyState / quarantined / failed / timedOut) with reason, ids, timings and provisioning errors,
plus counts and the top errors of the batch.

Custom status while running: ``{"phase": "...", "counts": {total, queued, configuring,
monitoring, running, steadyState, quarantined, failed, timedOut}}``.

Failure modes: this orchestrator does not fail for instance problems; each is an outcome. An
unknown application template fails the instances that use it before they start.

Bounded fan-out
---------------
At most ``options.maxInstancesInFlight`` instances are *being configured* at once: the bound exists
for Graph's identity write limit, and only setup writes. So each ``provision_instance`` child runs
with ``monitor: false`` and returns ``configured``; the batch then starts that instance's
``monitor_job`` itself (same id as ``provision_instance`` would use) and frees the slot - a job
whose first cycle takes an hour must not hold back the rest of the fleet. New children are started with a
zero-delay "dispatch" timer next to them in a ``task_any``: the .NET extension replays the action
list *in order, awaiting each action* (``ProcessAsyncActionsV2`` in
https://github.com/Azure/azure-functions-durable-extension/blob/dev/src/WebJobs.Extensions.DurableTask/Listener/OutOfProcOrchestrationShim.cs), so a WhenAny that held only the
new children would block every later start until those children finished. The timer makes each
dispatch action complete at once in both the SDK and the extension, and the "wait for any child"
step afterwards emits no action at all (every child is already scheduled). Children are called
without Durable retries, so no task ids are allocated out of order.
"""

from __future__ import annotations

import logging
from typing import Any, Generator

import azure.durable_functions as df

from core import events, names
from core.contracts import (CONFIGURED, InstanceOutcome, ProvisionInstanceInput, ResolveTemplateInput,
                            ResolveTemplateOutput, StepError)
from core.instance_ids import child_instance_id, monitor_instance_id
from core.times import iso, seconds_between
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step, failure_message
from orchestrators.blueprint import bp
from orchestrators.provision_instance import monitor_job_input
from orchestrators.report import batch_report, crashed_outcome, final_outcome, not_started_outcome, progress_counts

log = logging.getLogger("orchestrators.provision_batch")


@bp.function_name(names.PROVISION_BATCH)
@bp.orchestration_trigger(context_name="context")
def provision_batch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Fan out the instances of one request, bounded, and fan in to the batch report.

    An input whose options carry ``subBatchSize`` (every request submitted since sub-batches were introduced) runs over
    sub-batches (:mod:`orchestrators.batch_over_parts`); one without it - a batch started before,
    whose history is replayed by this code - keeps the single-history path below, unchanged.
    """
    data: dict[str, Any] = context.get_input() or {}
    if "subBatchSize" in (data.get("options") or {}):
        from orchestrators.batch_over_parts import run_over_sub_batches

        report = yield from run_over_sub_batches(context, data)
    else:
        report = yield from _run_single_history(context, data)
    if not context.is_replaying:  # once, in the episode that completes the batch (no action: histories unchanged)
        log.info(events.event_line(events.BATCH_COMPLETED, batchId=context.instance_id,
                                   requestId=report.get("requestId"), total=(report.get("counts") or {}).get("total"),
                                   counts=report.get("counts"), durationSeconds=report.get("durationSeconds")))
    return report


def _run_single_history(context: df.DurableOrchestrationContext,
                        data: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    options = WorkflowOptions.from_dict(data.get("options"))
    batch_id = context.instance_id
    instances: list[dict[str, Any]] = list((data.get("request") or {}).get("instances") or [])
    started_at = iso(context.current_utc_datetime)

    context.set_custom_status({"phase": "resolving templates",
                               "counts": progress_counts(len(instances), len(instances), 0, 0, [])})
    templates = yield from resolve_templates(context, instances, options)
    outcomes = yield from run_instances(context, batch_id, instances, templates, data.get("options") or {},
                                        options.max_instances_in_flight, started_at)

    finished_at = iso(context.current_utc_datetime)
    ordered = [outcomes[child_instance_id(batch_id, str(inst.get("key")))] for inst in instances]
    report = batch_report(batch_id, data.get("requestId"), started_at, finished_at, ordered,
                          seconds_between(started_at, finished_at))
    context.set_custom_status({"phase": "completed", "counts": progress_counts(len(instances), 0, 0, 0, ordered)})
    return report.to_dict()


def run_instances(context: df.DurableOrchestrationContext, batch_id: str, instances: list[dict[str, Any]],
                  templates: dict[str, dict[str, Any]], raw_options: dict[str, Any],
                  max_in_flight: int, started_at: str, *, watch: bool = True,
                  set_up_before: tuple[InstanceOutcome, ...] = ()) -> Generator[Any, Any, dict[str, InstanceOutcome]]:
    """Provision ``instances`` (at most ``max_in_flight`` in setup at once), watch their jobs; the
    outcome per ``provision_instance`` id. Used by the single-history batch and by the sub-batches:
    ``watch=False`` stops at setup (a configured instance's outcome is ``configured``), ``set_up_before``
    are ``configured`` outcomes of an earlier setup whose jobs are to be watched."""
    options = WorkflowOptions.from_dict(raw_options)
    outcomes: dict[str, InstanceOutcome] = {}
    pending: list[dict[str, Any]] = []
    for inst in instances:
        child_id = child_instance_id(batch_id, str(inst.get("key")))
        resolved = templates.get(template_key(inst))
        if resolved and not resolved.get("ok"):
            outcomes[child_id] = not_started_outcome(inst, child_id, StepError.from_dict(resolved["error"]), started_at)
        else:
            pending.append(inst)

    configuring: dict[Any, tuple[str, dict[str, Any]]] = {}  # setup children: bounded
    monitoring: dict[Any, tuple[str, InstanceOutcome]] = {}  # monitor_job children: not bounded
    ready_to_watch: list[tuple[str, InstanceOutcome]] = [(str(c.orchestration_id), c) for c in set_up_before]
    set_up = 0  # watch=False: instances configured (their jobs are watched by the caller's next phase)
    while pending or configuring or monitoring or ready_to_watch:
        dispatched = []
        while pending and len(configuring) < max(1, max_in_flight):
            inst = pending.pop(0)
            child_id = child_instance_id(batch_id, str(inst.get("key")))
            child_input = ProvisionInstanceInput(batch_id=batch_id, instance=_with_template(inst, templates),
                                                 options=raw_options, monitor=False)
            task = context.call_sub_orchestrator(names.PROVISION_INSTANCE, child_input.to_dict(),
                                                 instance_id=child_id)
            configuring[task] = (child_id, inst)
            dispatched.append(task)
        for child_id, configured in ready_to_watch:
            monitor_input = monitor_job_input(configured.ids, configured.job_started_at or "",
                                              context.current_utc_datetime, raw_options, options,
                                              configured.role_import)
            task = context.call_sub_orchestrator(names.MONITOR_JOB, monitor_input.to_dict(),
                                                 instance_id=monitor_instance_id(child_id))
            monitoring[task] = (child_id, configured)
            dispatched.append(task)
        ready_to_watch = []
        _report_progress(context, len(instances) + len(set_up_before), len(pending), len(configuring),
                         len(monitoring) + set_up, outcomes)
        if dispatched:
            yield context.task_any(dispatched + [context.create_timer(context.current_utc_datetime)])
        else:
            yield context.task_any(list(configuring) + list(monitoring))
        now = iso(context.current_utc_datetime)
        for task in [t for t in configuring if t.is_completed]:
            child_id, inst = configuring.pop(task)
            result = _child_outcome(task, inst, child_id, now)
            if result.outcome == CONFIGURED and not watch:
                outcomes[child_id] = result
                set_up += 1
            elif result.outcome == CONFIGURED:
                ready_to_watch.append((child_id, result))
            else:
                outcomes[child_id] = result
        for task in [t for t in monitoring if t.is_completed]:
            child_id, configured = monitoring.pop(task)
            if task.state.name == "SUCCEEDED" and isinstance(task.result, dict):
                watched = task.result
            else:
                reason = failure_message(task.result) if isinstance(task.result, BaseException) else "no result"
                watched = {"outcome": "failed", "reason": f"monitor_job failed: {reason}"}
            outcomes[child_id] = final_outcome(configured, watched, now)
    return outcomes


def _report_progress(context: df.DurableOrchestrationContext, total: int, queued: int, configuring: int,
                     monitoring: int, outcomes: dict[str, InstanceOutcome]) -> None:
    counts = progress_counts(total, queued, configuring, monitoring,
                             [o for o in outcomes.values() if o.outcome != CONFIGURED])
    context.set_custom_status({"phase": "provisioning", "counts": counts})


def _child_outcome(task: Any, inst: dict[str, Any], child_id: str, at: str) -> InstanceOutcome:
    if task.state.name == "SUCCEEDED" and isinstance(task.result, dict):
        return InstanceOutcome.from_dict(task.result)
    return crashed_outcome(inst, child_id, failure_message(task.result) if isinstance(task.result, BaseException)
                           else "provision_instance returned no outcome", at)


def template_key(inst: dict[str, Any]) -> str:
    template = inst.get("applicationTemplate") or {}
    return f"id:{template['id']}" if template.get("id") else f"name:{template.get('displayName', '')}"


def _with_template(inst: dict[str, Any], templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    resolved = templates.get(template_key(inst))
    if resolved and resolved.get("ok"):
        template = ResolveTemplateOutput.from_dict(resolved)
        return {**inst, "templateId": template.template_id, "jobKind": template.job_kind}
    return inst


def resolve_templates(context: df.DurableOrchestrationContext, instances: list[dict[str, Any]],
                       options: WorkflowOptions) -> Generator[Any, Any, dict[str, dict[str, Any]]]:
    """Resolve each distinct application template once for the whole batch (not once per instance)."""
    distinct: dict[str, dict[str, Any]] = {}
    for inst in instances:
        distinct.setdefault(template_key(inst), inst.get("applicationTemplate") or {})
    keys = list(distinct)
    # templates are few; resolve them one after the other (each call has its own retry/throttle budget)
    results: dict[str, dict[str, Any]] = {}
    for key in keys:
        results[key] = yield from call_step(context, names.RESOLVE_APPLICATION_TEMPLATE,
                                            ResolveTemplateInput(application_template=distinct[key]), options)
    return results


__all__ = ["provision_batch", "resolve_templates", "run_instances", "template_key"]
