"""HTTP triggers of the fleet operations (docs/fleet-operations.md), all with a function key.

* ``GET /api/instances?selector=env=prod,team=cloud&template=<id>&health=quarantined&top=50&skip=0`` -
  the inventory: ids, labels, template, credential references (Key Vault secret names), the job's
  state and health category, recorded decisions, and from the fleet registry ``lastBatch``
  {batchId, outcome, at}, ``lastAction`` {actionId, action, outcome, at} and ``lastSweepResult`` (the last
  health sweep's classification). One listing of our service principals, then job
  reads bounded by ``HEALTH_SWEEP_MAX_IN_FLIGHT`` (only the page's, unless ``health`` filters).
* ``GET /api/instances/{key}`` - one instance (404 for an unknown key), with its
  ``provisioningSettings``: the accidental-deletion threshold and notification email of its
  ``SyncNotificationSettings`` secret, as Graph stores them.
* ``POST /api/instances/{key}/actions`` and ``POST /api/actions`` (with ``selector``) -
  ``{"action", "dryRun"?, "confirm"?, "actionId"?, "resetScope"?, "subject"?}``. A dry-run answers
  200 with the targets and the Graph calls each would get, writing nothing. Otherwise destructive
  actions (restart, allowDeletes, teardown) and any writing action on more than one target need
  ``confirm`` equal to the number of targets (else 400 naming ``confirm``, nothing done); then one
  ``fleet_action`` orchestration starts under the action id (202; a retried request finds it and
  starts nothing: ``X-Fleet-Action-Duplicate: true``).
* ``GET /api/actions/{id}`` - the action's status and per-target report.
* ``DELETE /api/instances/{key}`` - teardown; a dry-run unless ``?dryRun=false&confirm=1``.
* ``POST /api/instances/adopt`` - ``{"servicePrincipalId" | "displayName", "labels"?, "credentials"?,
  "dryRun"?}``: tag an app made elsewhere so the fleet manages it (200 with what it holds: jobs,
  secret key names, assignment count); never changes its configuration. 404 / 409 when the name
  matches none or several, or the app is another instance's.
* ``POST /api/plans`` - a provisioning request's plan: per instance create / adopt /
  alreadyConfigured / update with what would change. Reads only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from core import errors, fleet, model, names, steps
from core.errors import InvalidRequest, Problem
from core.fleet_contracts import FleetActionInput, FleetTarget
from core.instance_ids import FLEET_ACTION_PREFIX, action_instance_id
from core.settings import get_settings
from triggers.blueprint import bp
from triggers.responses import error_response, json_response
from core.workflow_options import workflow_options
from triggers.submission import BodyNotJson, read_json

log = logging.getLogger("triggers.fleet")

MAX_TOP = 500


def _invalid(exc: InvalidRequest) -> func.HttpResponse:
    return error_response(400, "InvalidRequest", f"{len(exc.problems)} problem(s) in the request",
                          [p.to_dict() for p in exc.problems])


def _graph_failed(exc: errors.ProvisioningError) -> func.HttpResponse:
    if isinstance(exc, errors.ConfigurationError):
        return error_response(500, "InvalidConfiguration", str(exc))
    log.warning("fleet read failed: %s", exc.code)
    return error_response(502, exc.code, f"Graph: {exc.message[:300]}")


def _int_param(req: func.HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = req.params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest([Problem(name, f"must be an integer from {low} to {high}")])
    return int(raw)


def _body(req: func.HttpRequest) -> Any:
    try:
        return read_json(req.get_body() or b"")
    except BodyNotJson as exc:
        raise InvalidRequest([Problem("$", f"the body is not valid UTF-8 JSON ({exc})")]) from None


async def _listed(ctx: steps.StepContext) -> list[dict]:
    return await asyncio.to_thread(fleet.list_instances, ctx)


async def _jobs(ctx: steps.StepContext, instances: list[dict]) -> list[dict]:
    return await asyncio.to_thread(fleet.with_jobs, ctx, instances, ctx.settings.health_sweep_max_in_flight)


async def _history(instances: list[dict]) -> list[dict]:
    """``lastBatch``, ``lastAction`` and ``lastSweepResult`` of each instance from the fleet registry (nulls if it
    cannot be read)."""
    rows = await asyncio.to_thread(fleet.registry_rows, [i["servicePrincipalId"] for i in instances])
    return fleet.with_history(instances, rows)


@bp.function_name(names.HTTP_LIST_INSTANCES)
@bp.route(route="instances", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_list_instances(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The inventory, filtered by selector, template and health category, paged with top/skip."""
    try:
        selector = fleet.parse_selector(req.params["selector"]) if "selector" in req.params else None
        health = req.params.get("health")
        if health is not None and health not in fleet.HEALTH + ("unreadable",):
            raise InvalidRequest([Problem("health", f"must be one of {', '.join(fleet.HEALTH)}")])
        top = _int_param(req, "top", 100, 1, MAX_TOP)
        skip = _int_param(req, "skip", 0, 0, 10**6)
    except InvalidRequest as exc:
        return _invalid(exc)
    try:
        ctx = steps.default_context()
        matching = fleet.select(await _listed(ctx), selector, req.params.get("template"))
        if health is not None:  # the category needs every candidate's job
            matching = [i for i in await _jobs(ctx, matching) if i["health"] == health]
            page = matching[skip:skip + top]
        else:
            page = await _jobs(ctx, matching[skip:skip + top])
        page = await _history(page)
    except errors.ProvisioningError as exc:
        return _graph_failed(exc)
    body: dict[str, Any] = {"count": len(matching), "skip": skip, "top": top, "instances": page}
    if skip + top < len(matching):
        body["nextSkip"] = skip + top
    return json_response(body)


@bp.function_name(names.HTTP_GET_INSTANCE)
@bp.route(route="instances/{key}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_get_instance(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """One instance by its instanceKey (the batch report's)."""
    try:
        key = fleet.check_key(req.route_params.get("key"))
    except InvalidRequest as exc:
        return _invalid(exc)
    try:
        ctx = steps.default_context()
        found = fleet.select(await _listed(ctx), key=key)
        if not found:
            return error_response(404, "NotFound", f"no instance with key {key} carries our correlation tag")
        view = (await _history(await _jobs(ctx, found)))[0]
        view["provisioningSettings"] = await asyncio.to_thread(fleet.provisioning_settings, ctx,
                                                               view["servicePrincipalId"])
    except errors.ProvisioningError as exc:
        return _graph_failed(exc)
    return json_response(view)


@bp.function_name(names.HTTP_INSTANCE_ACTION)
@bp.route(route="instances/{key}/actions", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_instance_action(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """An action on one instance."""
    try:
        key = fleet.check_key(req.route_params.get("key"))
        parsed = fleet.parse_action(_body(req), by_selector=False)
    except InvalidRequest as exc:
        return _invalid(exc)
    return await _act(client, parsed, key=key)


@bp.function_name(names.HTTP_FLEET_ACTION)
@bp.route(route="actions", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_fleet_action(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """An action on every instance whose labels match ``selector``."""
    try:
        parsed = fleet.parse_action(_body(req), by_selector=True)
    except InvalidRequest as exc:
        return _invalid(exc)
    return await _act(client, parsed)


@bp.function_name(names.HTTP_TEARDOWN_INSTANCE)
@bp.route(route="instances/{key}", methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_teardown_instance(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Teardown of one instance: a dry-run unless ``dryRun=false`` and ``confirm=1``."""
    try:
        key = fleet.check_key(req.route_params.get("key"))
        dry = (req.params.get("dryRun") or "true").lower()
        if dry not in ("true", "false"):
            raise InvalidRequest([Problem("dryRun", "must be true or false")])
        confirm = _int_param(req, "confirm", -1, 0, 10**6) if "confirm" in req.params else None
        if "actionId" in req.params and not fleet.valid_action_id(req.params["actionId"]):
            raise InvalidRequest([Problem("actionId", fleet.ACTION_ID_RULE)])
    except InvalidRequest as exc:
        return _invalid(exc)
    parsed = {"action": "teardown", "dryRun": dry == "true", "confirm": confirm, "actionId": req.params.get("actionId"),
              "params": {}, "selector": {}}
    return await _act(client, parsed, key=key)


async def _act(client: df.DurableOrchestrationClient, parsed: dict[str, Any], key: str | None = None) -> func.HttpResponse:
    action, params, selector = parsed["action"], parsed["params"], parsed["selector"]
    try:
        ctx = steps.default_context()
        targets = fleet.select(await _listed(ctx), selector or None, key=key)
        if not targets:
            what = f"key {key}" if key else f"selector {','.join(f'{k}={v}' for k, v in selector.items())}"
            return error_response(404, "NoTargets", f"no instance carrying our correlation tag matches {what}")
        if parsed["dryRun"]:
            targets = await _jobs(ctx, targets)
    except errors.ProvisioningError as exc:
        return _graph_failed(exc)
    count = len(targets)
    confirm_needed = fleet.needs_confirm(action, count)
    instance_id = action_instance_id(action, params, targets, parsed["actionId"])
    if parsed["dryRun"]:
        return json_response({
            "dryRun": True, "action": action, "params": params, "actionId": instance_id, "count": count,
            "confirmRequired": count if confirm_needed else None,
            "targets": [{"instanceKey": t["instanceKey"], "displayName": t.get("displayName"),
                         "servicePrincipalId": t["servicePrincipalId"], "health": t.get("health"),
                         "jobId": (t.get("job") or {}).get("id"),
                         "calls": fleet.planned_calls(t, action, params)} for t in targets]})
    if confirm_needed and parsed["confirm"] != count:
        return _invalid(InvalidRequest([Problem(
            "confirm", f"{action} on {count} instance(s) needs confirm = {count} (the number of targets); "
                       f"got {parsed['confirm']}. Run it with dryRun true to see them.")]))
    existing = await client.get_status(instance_id)
    duplicate = bool(existing and existing.runtime_status is not None)
    if not duplicate:
        settings = get_settings()
        payload = FleetActionInput(
            action_id=instance_id, action=action, params=params, selector=selector,
            targets=[FleetTarget(instance_key=t["instanceKey"], service_principal_id=t["servicePrincipalId"],
                                 display_name=t.get("displayName")) for t in targets],
            max_in_flight=max(1, settings.health_sweep_max_in_flight), options=workflow_options(settings))
        try:
            await client.start_new(names.FLEET_ACTION, instance_id, payload.to_dict())
        except Exception:  # a concurrent retry won the race: answer with its orchestration
            existing = await client.get_status(instance_id)
            if not existing or existing.runtime_status is None:
                raise
            duplicate = True
        log.info("fleet action %s started on %d instance(s)", instance_id, count)
    body: dict[str, Any] = {"id": instance_id, "action": action, "count": count,
                            "statusUri": f"/api/actions/{instance_id}", "duplicate": duplicate}
    if duplicate and existing is not None:
        created = existing.created_time.isoformat() if existing.created_time is not None else None
        body["note"] = (f"this action was started before ({created}, {existing.runtime_status.value}); nothing new "
                        "was started. To run it again on purpose, send a new actionId.")
    return json_response(body, 202, {"Location": f"/api/actions/{instance_id}",
                                     "X-Fleet-Action-Duplicate": "true" if duplicate else "false"})


@bp.function_name(names.HTTP_GET_FLEET_ACTION)
@bp.route(route="actions/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_get_fleet_action(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """An action's status: runtime status, progress and, when done, the per-target report."""
    wanted = req.route_params.get("id") or ""
    status = await client.get_status(wanted) if wanted.startswith(FLEET_ACTION_PREFIX) else None
    if not status or status.runtime_status is None or status.name != names.FLEET_ACTION:
        return error_response(404, "NotFound", "no fleet action with this id")
    body: dict[str, Any] = {"id": wanted, "runtimeStatus": status.runtime_status.value,
                            "progress": status.custom_status if isinstance(status.custom_status, dict) else None}
    if status.runtime_status.value == "Completed" and isinstance(status.output, dict):
        body["report"] = status.output
    elif status.runtime_status.value == "Failed":
        body["error"] = str(status.output)[:300] if status.output else "the action orchestration failed"
    return json_response(body)


@bp.function_name(names.HTTP_PLAN)
@bp.route(route="plans", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_plan(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """What a provisioning request would do, per instance, without writing anything."""
    try:
        settings = get_settings()
    except errors.ConfigurationError as exc:
        return _graph_failed(exc)
    try:
        request = model.parse_request(_body(req), settings.request_max_instances)
    except InvalidRequest as exc:
        return _invalid(exc)
    try:
        ctx = steps.default_context()
        return json_response(await asyncio.to_thread(fleet.plan, ctx, request))
    except errors.ProvisioningError as exc:
        return _graph_failed(exc)


@bp.function_name(names.HTTP_ADOPT_INSTANCE)
@bp.route(route="instances/adopt", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_adopt_instance(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Adopt one service principal named by id or display name (tags only; its configuration is read)."""
    try:
        parsed = fleet.parse_adopt(_body(req))
    except InvalidRequest as exc:
        return _invalid(exc)
    try:
        ctx = steps.default_context()
        result = await asyncio.to_thread(
            fleet.adopt, ctx, service_principal_id=parsed["servicePrincipalId"], display_name=parsed["displayName"],
            labels=parsed["labels"], credentials=parsed["credentials"], dry_run=parsed["dryRun"])
    except fleet.AdoptionRefused as exc:
        body = {"error": {"code": exc.code, "message": exc.message, "ids": exc.ids}}
        return json_response(body, exc.status or 409)
    except errors.ProvisioningError as exc:
        return _graph_failed(exc)
    return json_response(result)
