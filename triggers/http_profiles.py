"""HTTP triggers of schema profiles (function key; guide: docs/configuration-as-code.md).

* ``GET /api/instances/{key}/schema/diff?profile=<name>.v<version>`` - the plan: the profile checked
  against the job's template schema (errors name the mapping, 400) and the mapping-level diff
  between the job's schema and the desired one. Nothing is written. Without ``profile``: the
  profile recorded on the instance.
* ``POST /api/instances/{key}/schema/apply`` ``{"profile": "<name>.v<version>", "dryRun": false}`` -
  starts (or finds, while it runs) the ``apply_profile`` orchestration ``profile-<key>-<profile>``:
  202 with the Durable check-status payload.
* ``GET /api/instances/{key}/drift[?enforce=true]`` - what differs from the desired state
  (``parts``: ``schema`` with the changes, ``secretKeys`` by name, ``schedule``); with ``enforce``
  and a schema drift, the recorded profile is applied again through ``apply_profile`` (its id in
  ``enforce.instanceId``). Off by default.

``key``: the instance key (``<tag>:key:<key>`` on the service principal, as the health sweep lists
it). 404 for an unknown key; 409 ``NotManaged`` for a service principal without our tag.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import azure.durable_functions as df
import azure.functions as func

from core import errors, names
from core import schema_profiles as profiles
from core.profile_contracts import ApplyProfileInput
from core.settings import get_settings
from core.steps import default_context
from core.steps import profiles as profile_steps
from core.workflow_options import workflow_options
from triggers.blueprint import bp
from triggers.responses import error_response, json_response
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
        return error_response(400, "InvalidJson", "the body is not valid UTF-8 JSON", [{"path": "$", "message": str(exc)}])
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
    """What differs from the desired state; ``enforce=true`` re-applies the recorded profile on a schema drift."""
    key = req.route_params.get("key") or ""
    enforce_text = (req.params.get("enforce") or "false").strip().lower()
    if enforce_text not in ("true", "false"):
        return error_response(400, "InvalidRequest", "1 problem(s)", [{"path": "enforce", "message": "must be true or false"}])
    try:
        sp = await _instance(key)
        ctx = default_context()
        report = await _call(lambda: profile_steps.drift(ctx, service_principal_id=str(sp["id"])))
    except Exception as exc:  # noqa: BLE001
        return _error(exc)
    report = {"instanceKey": key, **report}
    if enforce_text == "true" and "schema" in report["parts"] and report.get("profile"):
        instance_id = await start_apply(client, key, str(sp["id"]), str(report["profile"]), False)
        report["enforce"] = {"instanceId": instance_id, "profile": report["profile"]}
    return json_response(report)
