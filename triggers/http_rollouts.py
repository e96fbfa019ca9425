"""Staged rollout of a schema profile (function key; docs/configuration-as-code.md).

* ``POST /api/rollouts`` ``{"rolloutId", "profile", "selector": {"instances": [keys]} | {"labels": {..}},
  "canaries": <count> | [keys], "waveSize": 5, "pauseSeconds": 60, "maxChecks": 10, "maxInFlight": 10,
  "removalThreshold": 0, "canaryTestUsers": {<canary key>: {"objectId", "objectTypeName"?}}, "dryRun": false}`` - validates (field-level
  400s: unknown profile, an empty selection, a canary outside it), resolves the selection from the
  managed instances (``list_managed_instances``), and starts ``schema_rollout`` as ``rollout-<rolloutId>``
  (202 + check-status payload; the same id while it exists answers that rollout, never a second one).
  A canary without a named test user gets the one recorded in its service principal's notes (``canary``).
* ``GET /api/rollouts/{id}`` - the rollout's status: phase, waves with per-instance results, why it stopped.
* ``POST /api/rollouts/{id}/resume`` - accept a stopped rollout's regression and go on with the next wave.
* ``POST /api/rollouts/{id}/cancel`` - terminate it (instances already changed keep the profile).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from core import errors, names
from core.contracts import decode_json
from core import schema_profiles as profiles
from core.instance_ids import rollout_instance_id
from core.profile_contracts import RolloutInput
from core.settings import get_settings
from core.steps import default_context, list_managed_instances
from core.steps import profiles as profile_steps
from core.workflow_options import workflow_options
from orchestrators.rollout import RESUME_EVENT
from triggers.blueprint import bp
from triggers.http_profiles import _error
from triggers.responses import error_response, invalid_json_response, json_response
from triggers.submission import BodyNotJson, read_json

log = logging.getLogger("triggers.rollouts")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_FIELDS = ("rolloutId", "profile", "selector", "canaries", "waveSize", "pauseSeconds", "maxChecks", "dryRun",
           "removalThreshold", "canaryTestUsers", "maxInFlight")
_ACTIVE = {"Running", "Pending", "ContinuedAsNew", "Suspended"}


def _int(body: dict, name: str, default: int, low: int, high: int, problems: list[errors.Problem]) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        problems.append(errors.Problem(name, f"must be an integer from {low} to {high}"))
        return default
    return value


def parse_rollout(body: Any, managed: list[dict[str, Any]]) -> RolloutInput:
    """The orchestration input of a rollout request (InvalidRequest naming every bad field)."""
    if not isinstance(body, dict):
        raise errors.InvalidRequest([errors.Problem("$", "must be a JSON object")])
    problems = [errors.Problem(k, "unknown field") for k in body if k not in _FIELDS]
    rollout_id = body.get("rolloutId")
    if not isinstance(rollout_id, str) or not _ID.match(rollout_id):
        problems.append(errors.Problem("rolloutId", "required: 1-64 letters, digits, '.', '_' or '-'"))
    try:
        profile = profiles.ref(profiles.load(body.get("profile"), path="profile"))
    except errors.InvalidRequest as exc:
        problems += exc.problems
        profile = None
    wave_size = _int(body, "waveSize", 5, 1, 500, problems)
    pause = _int(body, "pauseSeconds", 60, 1, 86400, problems)
    checks = _int(body, "maxChecks", 10, 1, 100, problems)
    selector = body.get("selector")
    chosen: list[dict[str, Any]] = []
    if not isinstance(selector, dict) or not selector or any(k not in ("instances", "labels") for k in selector):
        problems.append(errors.Problem("selector", "required: {instances: [instance keys]} and/or {labels: {name: value}}"))
    else:
        keys = selector.get("instances")
        labels = selector.get("labels")
        if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
            problems.append(errors.Problem("selector.instances", "must be a list of instance keys"))
            keys = None
        if labels is not None and (not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values())):
            problems.append(errors.Problem("selector.labels", "must be {name: value}"))
            labels = None
        known = {str(i.get("instanceKey")): i for i in managed if i.get("instanceKey")}
        for k in keys or []:
            if k not in known:
                problems.append(errors.Problem("selector.instances", f"no managed instance with key {k}"))
        for key, inst in sorted(known.items()):
            if keys is not None and key not in keys:
                continue
            if labels and any((inst.get("labels") or {}).get(n) != v for n, v in labels.items()):
                continue
            chosen.append({"key": key, "servicePrincipalId": inst["servicePrincipalId"]})
        if not chosen and not problems:
            problems.append(errors.Problem("selector", "selects no managed instance"))
    canaries_raw = body.get("canaries", 1)
    canaries: list[str] = []
    if isinstance(canaries_raw, int) and not isinstance(canaries_raw, bool) and canaries_raw >= 0:
        canaries = [c["key"] for c in chosen[:canaries_raw]]
    elif isinstance(canaries_raw, list) and all(isinstance(c, str) for c in canaries_raw):
        selected = {c["key"] for c in chosen}
        for c in canaries_raw:
            if c not in selected:
                problems.append(errors.Problem("canaries", f"{c} is not in the selection"))
        if len(set(canaries_raw)) != len(canaries_raw):
            problems.append(errors.Problem("canaries", "lists an instance more than once"))
        canaries = list(canaries_raw)
    else:
        problems.append(errors.Problem("canaries", "a count or a list of instance keys"))
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        problems.append(errors.Problem("dryRun", "must be true or false"))
    removal_threshold = _int(body, "removalThreshold", 0, 0, 1_000_000, problems)
    max_in_flight = _int(body, "maxInFlight", 10, 1, 100, problems)
    test_users = _test_users(body.get("canaryTestUsers", {}), canaries, problems)
    if problems:
        raise errors.InvalidRequest(problems)
    return RolloutInput(rollout_id=rollout_id, profile=profile, instances=chosen, canaries=canaries,
                        wave_size=wave_size, pause_seconds=pause, max_checks=checks, dry_run=bool(dry_run),
                        removal_threshold=removal_threshold, canary_test_users=test_users,
                        max_in_flight=max_in_flight)


def _test_users(raw: Any, canaries: list[str], problems: list[errors.Problem]) -> dict[str, dict]:
    """``canaryTestUsers``: ``{<canary key>: {"objectId": <GUID>, "objectTypeName"?: "User" | "Group"}}``."""
    if not isinstance(raw, dict):
        problems.append(errors.Problem("canaryTestUsers", "must be {<canary instance key>: {objectId, objectTypeName?}}"))
        return {}
    found: dict[str, dict] = {}
    for key, value in raw.items():
        subject = profile_steps.canary_subject(value)
        if key not in canaries:
            problems.append(errors.Problem(f"canaryTestUsers.{key}", "is not a canary of this rollout"))
        elif subject is None:
            problems.append(errors.Problem(f"canaryTestUsers.{key}",
                                           'must be {"objectId": <object id (a GUID)>, "objectTypeName": "User" (default) or "Group"}'))
        else:
            found[key] = subject
    return found


def with_recorded_canaries(ctx: Any, request: RolloutInput) -> RolloutInput:
    """Each canary without a named test user gets the subject recorded in its notes (``canary``), if any."""
    sp_of = {str(i.get("key")): str(i.get("servicePrincipalId")) for i in request.instances}
    users = dict(request.canary_test_users)
    for key in request.canaries:
        if key not in users:
            subject = profile_steps.recorded_canary(ctx, sp_of[key])
            if subject is not None:
                users[key] = subject
    return dataclasses.replace(request, canary_test_users=users)


@bp.function_name(names.HTTP_START_ROLLOUT)
@bp.route(route="rollouts", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_start_rollout(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        body = read_json(req.get_body() or b"")
    except BodyNotJson as exc:
        return invalid_json_response(exc)
    try:
        listed = await asyncio.to_thread(lambda: list_managed_instances(default_context()))
        request = parse_rollout(body, listed["instances"])
        if not request.dry_run:
            request = await asyncio.to_thread(lambda: with_recorded_canaries(default_context(), request))
    except Exception as exc:  # noqa: BLE001
        return _error(exc)
    instance_id = rollout_instance_id(str(request.rollout_id))
    existing = await client.get_status(instance_id, show_input=True)
    if existing and existing.runtime_status and not _same_rollout(existing, request):
        return _rollout_conflict(instance_id)
    if not (existing and existing.runtime_status):
        payload = dataclasses.replace(request, options=workflow_options(get_settings()))
        try:
            await client.start_new(names.SCHEMA_ROLLOUT, instance_id, payload.to_dict())
        except Exception:  # started concurrently: answer that one
            raced = await client.get_status(instance_id, show_input=True)
            if not raced:
                raise
            if raced.runtime_status and not _same_rollout(raced, request):
                return _rollout_conflict(instance_id)
        log.info("rollout %s started: %d instances, %d canaries", instance_id, len(request.instances),
                 len(request.canaries))
    response: func.HttpResponse = client.create_check_status_response(req, instance_id)
    return response


def _same_rollout(status: Any, request: RolloutInput) -> bool:
    """The started rollout is the one asked for: same mode and profile (a retry; the selection is not
    compared: a label selector's instances may have grown since)."""
    given = decode_json(status.input_)
    if not isinstance(given, dict):
        return True  # no input to compare with: answered as before
    started = RolloutInput.from_dict(given)
    return (bool(started.dry_run), started.profile) == (bool(request.dry_run), request.profile)


def _rollout_conflict(instance_id: str) -> func.HttpResponse:
    return error_response(409, "RolloutIdConflict",
                          f"{instance_id} was started with another dryRun or profile; nothing was started", [{"path": "rolloutId", "message": "already names another rollout: send a new rolloutId"}])


@bp.function_name(names.HTTP_GET_ROLLOUT)
@bp.route(route="rollouts/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_get_rollout(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = rollout_instance_id(req.route_params.get("id") or "")
    status = await client.get_status(instance_id)
    if not (status and status.runtime_status) or status.name != names.SCHEMA_ROLLOUT:
        return error_response(404, "NotFound", "no rollout with this id")
    runtime = status.runtime_status.value
    view = status.output if runtime == "Completed" and isinstance(status.output, dict) else status.custom_status
    return json_response({"id": instance_id, "runtimeStatus": runtime, **(view if isinstance(view, dict) else {})})


@bp.function_name(names.HTTP_ROLLOUT_ACTION)
@bp.route(route="rollouts/{id}/{action}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_rollout_action(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    action = req.route_params.get("action") or ""
    if action not in ("resume", "cancel"):
        return error_response(404, "NotFound", "actions: resume, cancel")
    instance_id = rollout_instance_id(req.route_params.get("id") or "")
    status = await client.get_status(instance_id)
    if not (status and status.runtime_status) or status.name != names.SCHEMA_ROLLOUT:
        return error_response(404, "NotFound", "no rollout with this id")
    if status.runtime_status.value not in _ACTIVE:
        return error_response(409, "NotRunning", f"the rollout is {status.runtime_status.value}")
    if action == "cancel":
        await client.terminate(instance_id, "cancelled through POST /api/rollouts/{id}/cancel")
        return json_response({"id": instance_id, "cancelled": True}, 202)
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    if custom.get("phase") != "stopped":
        return error_response(409, "NotStopped", "only a rollout stopped on a regression can be resumed")
    await client.raise_event(instance_id, RESUME_EVENT, {"resumed": True})
    return json_response({"id": instance_id, "resumed": True}, 202)
