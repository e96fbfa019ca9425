"""Activity of the fleet operations (docs/fleet-operations.md): one operator action on one instance
(:func:`core.fleet.perform`): pause, resume, restart, validate, provision-on-demand, allowDeletes,
rejectDeletes, teardown. It re-reads the service principal and refuses one without our tags."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import errors, fleet, names, steps
from core.fleet_contracts import FleetInstanceActionInput
from core.times import iso

bp = df.Blueprint()


def fleet_instance_action_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    """Perform, then record the result as the instance's ``lastAction`` in the fleet registry (best
    effort); a permanent refusal or failure is recorded too, a transient one (retried) is not."""
    i = FleetInstanceActionInput.from_dict(p)
    try:
        result = fleet.perform(ctx, instance_key=i.instance_key, service_principal_id=i.service_principal_id,
                               action=i.action, params=dict(i.params))
    except errors.PermanentError as exc:
        fleet.record_action(i.action_id, {"servicePrincipalId": i.service_principal_id, "action": i.action,
                                          "outcome": "refused" if exc.code == "NotOurs" else "failed"},
                            iso(ctx.now()))
        raise
    fleet.record_action(i.action_id, result, iso(ctx.now()))
    return result


BODIES = {names.FLEET_INSTANCE_ACTION: fleet_instance_action_body}


@bp.function_name(names.FLEET_INSTANCE_ACTION)
@bp.activity_trigger(input_name="payload")
def fleet_instance_action(payload: dict) -> dict:
    return run(names.FLEET_INSTANCE_ACTION, payload, fleet_instance_action_body)
