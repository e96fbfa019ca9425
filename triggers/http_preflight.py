"""``GET /api/preflight`` (function key): can this deployment work? One row per check, a fix for each failure.

Runs :func:`core.preflight.run_preflight` (settings, a Graph token and its roles against the
required permissions, one gallery read, a Key Vault list of secret properties) plus a task-hub row
made here with the Durable client binding: a status read of an instance id that does not exist.
The task hub answers it through the Durable extension (404 = it answered), so storage or scheduler
problems show as an error status or an exception.

Why the SDK's request helper and not ``client.get_status``: the public method maps 404 *and* 500
to the same empty status object, so it cannot tell "no such instance" from "the task hub failed".
``_get_async_request`` and ``_orchestration_bindings`` (RPC base URL, task hub name) are the client's own (pinned
azure-functions-durable 1.7.0); tests/workflow/test_preflight_http.py runs this through devhost
with the real SDK.

Answers **200** when nothing failed (warnings allowed) and **503 Service Unavailable** when any
check failed: the app is up but cannot serve provisioning requests yet. The body is the same in
both cases: ``{"ok", "counts", "checks": [{"name", "status", "detail", "fix"}]}``. No secret values
(the library builds rows from names, ids and status codes, and scrubs secret-like settings).
"""

from __future__ import annotations

import asyncio
import logging

import azure.durable_functions as df
import azure.functions as func

from core import names, preflight
from triggers.blueprint import bp
from triggers.responses import json_response

log = logging.getLogger("triggers.preflight")

ROUTE = "preflight"


@bp.function_name(names.HTTP_PREFLIGHT)
@bp.route(route=ROUTE, methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_preflight(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Run every preflight check; 200 when all pass, 503 with the table when one fails."""
    hub = await task_hub_check(client)
    report = await asyncio.to_thread(preflight.run_preflight, task_hub=hub)
    failed = [c.name for c in report.failed()]
    if failed:
        log.warning("preflight failed: %s", ", ".join(failed))
    else:
        log.info("preflight passed (%s)", report.counts())
    return json_response(report.to_dict(), 200 if report.ok else 503)


async def task_hub_check(client: df.DurableOrchestrationClient) -> preflight.CheckResult:
    """The task-hub row: one status read of :data:`core.preflight.PROBE_INSTANCE_ID` through the client."""
    from azure.durable_functions.models.RpcManagementOptions import RpcManagementOptions

    bindings = client._orchestration_bindings
    hub = getattr(bindings, "task_hub_name", None)
    try:
        url = RpcManagementOptions(instance_id=preflight.PROBE_INSTANCE_ID).to_url(bindings.rpc_base_url)
        answer = await client._get_async_request(url)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the task hub is the finding
        return preflight.task_hub_result(None, hub, exc)
    return preflight.task_hub_result(int(answer[0]), hub)
