"""Timer trigger: start ``health_sweep`` on the ``HEALTH_SWEEP_SCHEDULE`` app setting (default hourly).

Overlap: every sweep uses the same instance id, :data:`SWEEP_INSTANCE_ID`. A tick that finds that
instance pending or running does nothing; otherwise it starts a fresh sweep under the same id
(Durable replaces a finished instance), so the latest report is always at that id.
"""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from core import names
from core.settings import get_settings
from triggers.blueprint import bp
from core.workflow_options import workflow_options

log = logging.getLogger("triggers.timer")

SWEEP_INSTANCE_ID = "health-sweep"
_ACTIVE = {"Running", "Pending", "ContinuedAsNew", "Suspended"}


@bp.function_name(names.TIMER_HEALTH_SWEEP)
@bp.timer_trigger(arg_name="timer", schedule="%HEALTH_SWEEP_SCHEDULE%", run_on_startup=False)
@bp.durable_client_input(client_name="client")
async def timer_health_sweep(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Start a health sweep unless one is still running."""
    status = await client.get_status(SWEEP_INSTANCE_ID)
    if status and status.runtime_status and status.runtime_status.value in _ACTIVE:
        log.info("health sweep %s still %s; skipping this tick", SWEEP_INSTANCE_ID, status.runtime_status.value)
        return
    options = workflow_options(get_settings())
    try:
        await client.start_new(names.HEALTH_SWEEP, SWEEP_INSTANCE_ID, {"options": options})
    except Exception:  # another tick (another host instance) started it first
        status = await client.get_status(SWEEP_INSTANCE_ID)
        if not (status and status.runtime_status and status.runtime_status.value in _ACTIVE):
            raise
        log.info("health sweep started concurrently by another tick")
        return
    log.info("health sweep %s started (past due: %s)", SWEEP_INSTANCE_ID, timer.past_due)
