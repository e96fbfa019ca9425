"""HTTP triggers of schema profiles (function key; guide: docs/configuration-as-code.md).

* ``GET /api/instances/{key}/schema/diff?profile=<name>.v<version>`` - the plan: the profile checked
  against the job's template schema (errors name the mapping, 400) and the mapping-level diff
  between the job's schema and the desired one. Nothing is written. Without ``profile``: the
  profile recorded on the instance.
* ``POST /api/instances/{key}/schema/apply`` ``{"profile": "<name>.v<version>", "dryRun": false}`` -
  starts (or finds, while it runs) the ``apply_profile`` orchestration ``profile-<key>-<profile>``:
  202 with the Durable check-status payload.
* ``GET /api/instances/{key}/drift`` - what differs from the desired state (``parts``: ``schema``
  with the changes, ``secretKeys`` by name, ``provisioningSettings``, ``assignments``, ``schedule``).
  Reads only (``?enforce=`` is a 400 pointing at the POST below).
* ``POST /api/instances/{key}/drift/enforce`` ``{"dryRun": true, "enforceId"?}`` - the actions that
  would put it back (200, reads only) or, with ``dryRun`` false, the ``enforce_drift`` orchestration
  for this instance (202).
* ``POST /api/drift/enforce`` ``{"selector": "env=prod", "dryRun": true, "confirm": N, "enforceId"?,
  "paceSeconds"?}`` - ``enforce_drift`` over every instance the selector matches (202), a dry run
  unless ``dryRun`` is false; then more than one target needs ``confirm`` = their number (the rules
  of ``POST /api/actions``). ``GET /api/drift/enforce/{id}``: its status and per-instance report.

``key``: the instance key (``<tag>:key:<key>`` on the service principal, as the health sweep lists
it). 404 for an unknown key; 409 ``NotManaged`` for a service principal without our tag.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any, Callable

import azure.durable_functions as df
import azure.functions as func

from core import errors, fleet, names
from core.contracts import decode_json
from core import schema_profiles as profiles
from core.profile_contracts import ApplyProfileInput, EnforceDriftInput
from core.settings import get_settings
from core.steps import default_context
from core.steps import profiles as profile_steps
from core.workflow_options import workflow_options
from triggers.blueprint import bp
from triggers.responses import error_response, invalid_json_response, json_response
from triggers.submission import BodyNotJson, read_json

log = logging.getLogger("triggers.profiles")

_ACTIVE = {"Running", "Pending", "ContinuedAsNew", "Suspended"}


def apply_instance_id(key: str, profile: str) -> str:
    """The ``apply_profile`` orchestration of one instance and profile (one at a time)."""
    return f"profile-{key}-{profile}"


def _error(exc: Exception) -> func.HttpResponse:
    if isinstance(exc, errors.InvalidRequest):
        return error_response(400, "InvalidRequest", f"{len(exc.problems)} problem(s)",
                              [p.to_dict() for p in exc.problems])
    if isinstance(exc, errors.NotFound):
        return error_response(404, exc.code if exc.code != "Error" else "NotFound", exc.message)
    if isinstance(exc, errors.PermanentError):
        return error_response(409, exc.code, exc.message)
    if isinstance(exc, errors.ProvisioningError):
        return error_response(503, exc.code, exc.message)
    log.error("schema profile request failed: %s", type(exc).__name__)
    return error_response(500, "InternalError", f"unexpected {type(exc).__name__}")


async def _call(work: Callable[[], Any]) -> Any:
    return await asyncio.to_thread(work)


async def _instance(key: str) -> dict:
    found: dict = await _call(lambda: profile_steps.find_instance(default_context(), key))
    return found


@bp.function_name(names.HTTP_SCHEMA_DIFF)
@bp.route(route="instances/{key}/schema/diff", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_schema_diff(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The plan of a profile for one instance: validation and the mapping-level diff (no write)."""
    key = req.route_params.get("key") or ""
    try:
        sp = await _instance(key)
        ctx = default_context()
        profile = req.params.get("profile") or profile_steps.recorded_profile(ctx, sp.get("tags"))
        if not profile:
            raise errors.InvalidRequest([errors.Problem("profile", "name the profile (?profile=<name>.v<version>); "
                                                                   "the instance has none recorded")])
        profiles.load(profile, path="profile")
        plan = await _call(lambda: profile_steps.plan(ctx, service_principal_id=str(sp["id"]), profile=profile))
    except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
        return _error(exc)
    return json_response({"instanceKey": key, **plan})


@bp.function_name(names.HTTP_SCHEMA_APPLY)
@bp.route(route="instances/{key}/schema/apply", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_schema_apply(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Start ``apply_profile`` for one instance (202 + check-status payload)."""
    key = req.route_params.get("key") or ""
    try:
        body = read_json(req.get_body() or b"{}")
    except BodyNotJson as exc:
        return invalid_json_response(exc)
    try:
        if not isinstance(body, dict):
            raise errors.InvalidRequest([errors.Problem("$", "must be {profile, dryRun?}")])
        unknown = [k for k in body if k not in ("profile", "dryRun")]
        if unknown:
            raise errors.InvalidRequest([errors.Problem(k, "unknown field (profile, dryRun)") for k in unknown])
        if "dryRun" in body and not isinstance(body["dryRun"], bool):
            raise errors.InvalidRequest([errors.Problem("dryRun", "must be true or false")])
        profiles.load(body.get("profile"), path="profile")
        sp = await _instance(key)
    except Exception as exc:  # noqa: BLE001
        return _error(exc)
    instance_id = await start_apply(client, key, str(sp["id"]), str(body["profile"]), bool(body.get("dryRun")))
    response: func.HttpResponse = client.create_check_status_response(req, instance_id)
    return response


async def start_apply(client: df.DurableOrchestrationClient, key: str, sp_id: str, profile: str, dry_run: bool) -> str:
    """Start ``apply_profile`` unless the same one is running (then answer that one)."""
    instance_id = apply_instance_id(key, profile) + ("-dry-run" if dry_run else "")
    status = await client.get_status(instance_id)
    if status and status.runtime_status and status.runtime_status.value in _ACTIVE:
        return instance_id
    payload = ApplyProfileInput(service_principal_id=sp_id, profile=profile, instance_key=key, dry_run=dry_run,
                                options=workflow_options(get_settings()))
    try:
        await client.start_new(names.APPLY_PROFILE, instance_id, payload.to_dict())
    except Exception:  # started concurrently: answer that one
        status = await client.get_status(instance_id)
        if not (status and status.runtime_status and status.runtime_status.value in _ACTIVE):
            raise
    log.info("apply_profile %s started for %s", instance_id, sp_id)
    return instance_id


@bp.function_name(names.HTTP_INSTANCE_DRIFT)
@bp.route(route="instances/{key}/drift", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_instance_drift(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """What differs from the desired state. Reads only: enforcing is the POST .../drift/enforce."""
    key = req.route_params.get("key") or ""
    if "enforce" in req.params:
        return error_response(400, "InvalidRequest", "1 problem(s)", [{
            "path": "enforce", "message": f"GET only reads; enforce with POST /api/instances/{key}/drift/enforce "
                                          '{"dryRun": false}'}])
    try:
        sp = await _instance(key)
        ctx = default_context()
        report = await _call(lambda: profile_steps.drift(ctx, service_principal_id=str(sp["id"])))
    except Exception as exc:  # noqa: BLE001
        return _error(exc)
    return json_response({"instanceKey": key, **report})


#: orchestration ids of drift enforcement: ``drift-enforce:<enforceId>`` (or a hash of what it does)
ENFORCE_PREFIX = "drift-enforce:"
_ENFORCE_FIELDS = ("selector", "dryRun", "confirm", "enforceId", "paceSeconds")


def enforce_instance_id(enforce_id: str | None, dry_run: bool, targets: list[dict]) -> str:
    """The caller's ``enforceId``, else a hash of the targets and the mode (a retried request finds the same one)."""
    if enforce_id:
        return f"{ENFORCE_PREFIX}{enforce_id}"
    canonical = json.dumps({"dryRun": dry_run, "targets": sorted(str(t["servicePrincipalId"]) for t in targets)},
                           sort_keys=True, separators=(",", ":"))
    return f"{ENFORCE_PREFIX}{hashlib.sha256(canonical.encode()).hexdigest()[:24]}"


def parse_enforce(body: Any, *, by_selector: bool) -> dict[str, Any]:
    """The body of an enforce request, checked field by field (dryRun defaults to true)."""
    if not isinstance(body, dict):
        raise errors.InvalidRequest([errors.Problem("$", "must be a JSON object")])
    allowed = _ENFORCE_FIELDS if by_selector else ("dryRun", "enforceId")
    problems = [errors.Problem(k, f"unknown field ({', '.join(allowed)})") for k in body if k not in allowed]
    dry_run = body.get("dryRun", True)
    if not isinstance(dry_run, bool):
        problems.append(errors.Problem("dryRun", "must be true or false"))
    enforce_id = body.get("enforceId")
    if enforce_id is not None and not fleet.valid_action_id(enforce_id):
        problems.append(errors.Problem("enforceId", fleet.ACTION_ID_RULE))
    confirm = body.get("confirm")
    if confirm is not None and (not isinstance(confirm, int) or isinstance(confirm, bool) or confirm < 0):
        problems.append(errors.Problem("confirm", "must be the number of targets"))
    pace = body.get("paceSeconds", 10)
    if not isinstance(pace, int) or isinstance(pace, bool) or not 0 <= pace <= 3600:
        problems.append(errors.Problem("paceSeconds", "must be an integer from 0 to 3600"))
    selector: dict[str, str] = {}
    if by_selector:
        try:
            selector = fleet.parse_selector(body.get("selector"))
        except errors.InvalidRequest as exc:
            problems += exc.problems
    if problems:
        raise errors.InvalidRequest(problems)
    return {"dryRun": dry_run, "enforceId": enforce_id, "confirm": confirm, "paceSeconds": pace, "selector": selector}


async def start_enforce(req: func.HttpRequest, client: df.DurableOrchestrationClient, parsed: dict[str, Any],
                        targets: list[dict]) -> func.HttpResponse:
    """Start ``enforce_drift`` on ``targets`` (or answer the one already started: 202 either way)."""
    instance_id = enforce_instance_id(parsed["enforceId"], parsed["dryRun"], targets)
    existing = await client.get_status(instance_id, show_input=True)
    duplicate = bool(existing and existing.runtime_status is not None)
    if duplicate and not _same_enforce(existing, parsed["dryRun"], targets):
        return _enforce_conflict(instance_id)
    if not duplicate:
        settings = get_settings()
        payload = EnforceDriftInput(
            enforce_id=instance_id, selector=parsed["selector"], dry_run=parsed["dryRun"],
            targets=[{"instanceKey": t["instanceKey"], "servicePrincipalId": t["servicePrincipalId"]} for t in targets],
            max_in_flight=max(1, settings.health_sweep_max_in_flight),
            pace_seconds=0 if parsed["dryRun"] else parsed["paceSeconds"], options=workflow_options(settings))
        try:
            await client.start_new(names.ENFORCE_DRIFT, instance_id, payload.to_dict())
        except Exception:  # a concurrent retry won the race: answer with its orchestration
            existing = await client.get_status(instance_id, show_input=True)
            if not existing or existing.runtime_status is None:
                raise
            if not _same_enforce(existing, parsed["dryRun"], targets):
                return _enforce_conflict(instance_id)
            duplicate = True
        log.info("drift enforce %s started on %d instance(s), dryRun %s", instance_id, len(targets), parsed["dryRun"])
    body: dict[str, Any] = {"id": instance_id, "dryRun": parsed["dryRun"], "count": len(targets),
                            "statusUri": f"/api/drift/enforce/{instance_id}", "duplicate": duplicate}
    if parsed["dryRun"]:
        body["confirmRequired"] = len(targets) if len(targets) > 1 else None
    if duplicate:
        body["note"] = "started before with the same targets; nothing new was started (send a new enforceId to run again)"
    return json_response(body, 202, {"Location": body["statusUri"]})


def _same_enforce(status: Any, dry_run: bool, targets: list[dict]) -> bool:
    """The started enforcement does what this request asks (same mode, same service principals)."""
    given = decode_json(status.input_)
    if not isinstance(given, dict):
        return True  # no input to compare with: answered as before (a duplicate)
    ran = sorted(str(t.get("servicePrincipalId")) for t in given.get("targets") or [] if isinstance(t, dict))
    return (bool(given.get("dryRun", True)) == dry_run
            and ran == sorted(str(t["servicePrincipalId"]) for t in targets))


def _enforce_conflict(instance_id: str) -> func.HttpResponse:
    return error_response(409, "EnforceIdConflict",
                          f"{instance_id} was started with another dryRun or other targets; nothing was started",
                          [{"path": "enforceId", "message": "already names another enforcement: send a new enforceId"}])


@bp.function_name(names.HTTP_ENFORCE_INSTANCE_DRIFT)
@bp.route(route="instances/{key}/drift/enforce", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_enforce_instance_drift(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """One instance: the plan (dryRun, the default: 200, reads only) or the enforce orchestration (202)."""
    key = req.route_params.get("key") or ""
    try:
        parsed = parse_enforce(read_json(req.get_body() or b"{}"), by_selector=False)
    except BodyNotJson as exc:
        return invalid_json_response(exc)
    except errors.InvalidRequest as exc:
        return _error(exc)
    try:
        sp = await _instance(key)
        if parsed["dryRun"]:
            ctx = default_context()
            plan = await _call(lambda: profile_steps.enforce_drift(ctx, service_principal_id=str(sp["id"]), dry_run=True))
            return json_response({"instanceKey": key, **plan})
    except Exception as exc:  # noqa: BLE001
        return _error(exc)
    return await start_enforce(req, client, parsed, [{"instanceKey": key, "servicePrincipalId": str(sp["id"])}])


@bp.function_name(names.HTTP_ENFORCE_DRIFT)
@bp.route(route="drift/enforce", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_enforce_drift(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Every instance the selector matches: a dry run unless ``dryRun`` is false (then ``confirm`` for more than one)."""
    try:
        parsed = parse_enforce(read_json(req.get_body() or b""), by_selector=True)
    except BodyNotJson as exc:
        return invalid_json_response(exc)
    except errors.InvalidRequest as exc:
        return _error(exc)
    try:
        ctx = default_context()
        targets = fleet.select(await _call(lambda: fleet.list_instances(ctx)), parsed["selector"])
    except Exception as exc:  # noqa: BLE001
        return _error(exc)
    if not targets:
        what = ",".join(f"{k}={v}" for k, v in parsed["selector"].items())
        return error_response(404, "NoTargets", f"no instance carrying our correlation tag matches selector {what}")
    count = len(targets)
    if not parsed["dryRun"] and count > 1 and parsed["confirm"] != count:
        return _error(errors.InvalidRequest([errors.Problem(
            "confirm", f"enforce on {count} instance(s) needs confirm = {count} (the number of targets); got "
                       f"{parsed['confirm']}. Run it with dryRun true to see them.")]))
    return await start_enforce(req, client, parsed, targets)


@bp.function_name(names.HTTP_GET_DRIFT_ENFORCE)
@bp.route(route="drift/enforce/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_get_drift_enforce(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = req.route_params.get("id") or ""
    if not instance_id.startswith(ENFORCE_PREFIX):
        instance_id = ENFORCE_PREFIX + instance_id
    status = await client.get_status(instance_id)
    if not (status and status.runtime_status) or status.name != names.ENFORCE_DRIFT:
        return error_response(404, "NotFound", "no drift enforce with this id")
    runtime = status.runtime_status.value
    view = status.output if runtime == "Completed" and isinstance(status.output, dict) else status.custom_status
    return json_response({"id": instance_id, "runtimeStatus": runtime, **(view if isinstance(view, dict) else {})})
