"""``rotate_secret``: bring every registered instance that references a Key Vault secret to one
new version of it, validated first, with a report.

Input: :class:`core.rotation_contracts.RotateSecretInput` (``secretName``, ``version``, ``dryRun``,
``source``, ``options``). The instance id is :func:`core.instance_ids.rotation_instance_id` of the
secret name and version, so a redelivered event, a second event for the same version or a health
sweep that saw the lag find this orchestration and start nothing new.

Steps: ``list_secret_dependents`` (the fleet registry), then ``rotate_instance`` per instance, at
most ``ROTATION_MAX_IN_FLIGHT`` at a time (each activity's writes are paced with every other Graph
write of the app by the transport's write limiter). ``rotate_instance`` changes nothing on an
instance whose target refuses the new set. Output: :class:`core.rotation_contracts.RotationReport`
(``GET /api/rotations/{id}``); custom status: the counts so far. One structured log line
(``credentialRotationFailed``) per instance that did not reach the version and one
``credentialRotationCompleted`` per rotation (``core/events.py``; logged once, not on replay).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Generator

import azure.durable_functions as df

from core import names
from core.instance_ids import rotation_instance_id
from core.sweep_contracts import CheckSweepPageLagOutput
from core.rotation_contracts import (ListSecretDependentsInput, ListSecretDependentsOutput, RotateInstanceInput,
                                     RotateInstanceOutput, RotateSecretInput, RotationReport)
from core.steps.rotation import INVALID, completed_line, failure_line
from core.times import iso, seconds_between
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step, chunks, gather_settled

bp = df.Blueprint()
logger = logging.getLogger("orchestrators.rotate_secret")



def sweep_rotation_calls(lag_results: list[dict[str, Any]], raw_options: dict[str, Any],
                         canary: dict[str, str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The ``rotate_secret`` orchestrations a health sweep starts for the lagging instances it found.

    ``lag_results``: ``check_sweep_page_lag`` results (``{"ok": true, "rotations": [{secretName,
    version}]}``; failed ones are skipped). One call per distinct secret version, whichever
    instances lag on it (the rotation itself finds every instance that references the secret), as
    ``(instance id, input)``. The id is :func:`core.instance_ids.rotation_instance_id`, the one the
    Event Grid trigger and ``POST /api/rotations`` use, so the event and the sweep never rotate one
    version twice: the sweep starts it through ``start_sweep_rotation`` (an activity with the Durable
    client), which starts nothing when that instance exists. ``canary``: a provisionOnDemand subject
    for every instance (normally none: ``start_sweep_rotation`` adds the defaults of
    ``ROTATION_CANARY_BY_TEMPLATE`` and ``ROTATION_CANARY`` for instances whose notes name no canary of
    their own). Deterministic.
    """
    wanted: dict[tuple[str, str], None] = {}
    for result in lag_results:
        if not isinstance(result, dict) or not result.get("ok"):
            continue
        for rotation in CheckSweepPageLagOutput.from_dict(result).rotations:
            if rotation.get("secretName") and rotation.get("version"):
                wanted[(str(rotation["secretName"]), str(rotation["version"]))] = None
    calls = []
    for name, version in sorted(wanted):
        payload = RotateSecretInput(secret_name=name, version=version, source="sweep", canary=canary,
                                    options=dict(raw_options or {}))
        calls.append((rotation_instance_id(name, version), payload.to_dict()))
    return calls


@bp.function_name(names.ROTATE_SECRET)
@bp.orchestration_trigger(context_name="context")
def rotate_secret(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    data = RotateSecretInput.from_dict(context.get_input())
    options = WorkflowOptions.from_dict(data.options)
    bound = max(1, options.rotation_max_in_flight)
    started = iso(context.current_utc_datetime)
    listed = yield from call_step(context, names.LIST_SECRET_DEPENDENTS,
                                  ListSecretDependentsInput(secret_name=data.secret_name), options)
    results: list[RotateInstanceOutput] = []
    if not listed.get("ok"):
        error = listed.get("error") or {}
        results.append(RotateInstanceOutput(outcome="failed", reason=f"fleet registry not read: {error.get('message')}"))
    else:
        dependents = ListSecretDependentsOutput.from_dict(listed).instances
        counts: Counter = Counter()
        for group in chunks(dependents, bound):
            tasks = [_rotate_one(context, d.service_principal_id, data, options)
                     for d in group]
            settled = yield from gather_settled(context, tasks)
            for dependent, (ok, value) in zip(group, settled):
                if ok and isinstance(value, dict) and (value.get("error") or {}).get("kind") == "throttled":
                    # throttled beyond the activity's own budget: waited out on durable timers, bounded
                    value = yield from call_step(context, names.ROTATE_INSTANCE, RotateInstanceInput(
                        service_principal_id=str(dependent.service_principal_id), secret_name=data.secret_name,
                        version=data.version, dry_run=data.dry_run, canary=data.canary,
                        canary_by_template=data.canary_by_template, default_canary=data.default_canary), options)
                entry = _entry(dependent, ok, value)
                results.append(entry)
                counts[entry.outcome or "failed"] += 1
            context.set_custom_status({"counts": dict(counts), "total": len(dependents)})
    for entry in results:
        if entry.outcome in (INVALID, "failed") and not context.is_replaying:
            logger.warning(failure_line(context.instance_id, entry.to_dict()))
    report = RotationReport(rotation_id=context.instance_id, secret_name=data.secret_name, version=data.version,
                            source=data.source, dry_run=data.dry_run, started_at=started,
                            finished_at=iso(context.current_utc_datetime),
                            counts=dict(Counter(r.outcome or "failed" for r in results)), instances=results)
    output = report.to_dict()
    if not context.is_replaying:
        logger.info(completed_line(output, seconds_between(report.started_at, report.finished_at)))
    return output


def _rotate_one(context: df.DurableOrchestrationContext, sp_id: Any, data: RotateSecretInput,
                options: WorkflowOptions) -> Any:
    """One ``rotate_instance`` call as a task (throttled answers are retried by the activity's own budget)."""
    policy = options.retry_for(names.ROTATE_INSTANCE)
    retry = df.RetryOptions(policy.first_retry_interval_ms, policy.max_attempts)
    payload = RotateInstanceInput(service_principal_id=str(sp_id), secret_name=data.secret_name, version=data.version,
                                  dry_run=data.dry_run, canary=data.canary, canary_by_template=data.canary_by_template,
                                  default_canary=data.default_canary).to_dict()
    return context.call_activity_with_retry(names.ROTATE_INSTANCE, retry, payload)


def _entry(dependent: Any, ok: bool, value: Any) -> RotateInstanceOutput:
    base = {"servicePrincipalId": dependent.service_principal_id, "displayName": dependent.display_name}
    if not ok:
        return RotateInstanceOutput.from_dict({**base, "outcome": "failed",
                                               "reason": str(value).split(" \n ", 1)[0][:300]})
    if not isinstance(value, dict):
        return RotateInstanceOutput.from_dict({**base, "outcome": "failed", "reason": "no result"})
    if not value.get("ok"):
        error = value.get("error") or {}
        return RotateInstanceOutput.from_dict({**base, "outcome": "failed", "code": error.get("code"),
                                               "reason": error.get("message")})
    return RotateInstanceOutput.from_dict({**base, **value})
