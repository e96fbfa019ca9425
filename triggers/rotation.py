"""HTTP triggers of the credential lifecycle (function key), on their own blueprint.

* ``POST /api/rotations`` ``{"secretName", "version"?, "dryRun"?, "canary"?}``: start (or find) the
  ``rotate_secret`` orchestration of that Key Vault secret version (``version`` omitted: Key
  Vault's current enabled version, read as properties, never the value). 202 with ``id`` and
  ``statusUri``; ``X-Rotation-Duplicate: true`` when that version's rotation exists already. A dry
  run validates and saves nothing (outcome ``wouldRotate``), under its own id (``...:dryrun``).
  ``canary`` ``{"objectId", "objectTypeName": "User"|"Group"}`` wins over each instance's own canary
  (its request's ``canary``, kept in its notes), ``ROTATION_CANARY_BY_TEMPLATE`` and ``ROTATION_CANARY``.
* ``GET /api/rotations/{id}``: the rotation report (per instance: outcome, reason, restarted).
* ``GET /api/credentials``: the expiry calendar - every Key Vault secret the fleet registry
  references, its current version's ``expires`` (Key Vault properties only), days left, and the
  instances depending on it; one structured log line per secret expiring within
  ``CREDENTIAL_EXPIRY_WARNING_DAYS`` or expired.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from core import names
from core.errors import ConfigurationError, InvalidRequest, Problem, ProvisioningError
from core.instance_ids import rotation_instance_id
from core.rotation_contracts import RotateSecretInput, parse_canary, parse_canary_by_template
from core.settings import Settings, get_settings
from core.workflow_options import workflow_options
from triggers.responses import error_response, json_response

bp = df.Blueprint()
log = logging.getLogger("triggers.rotation")

ROUTE = "rotations"


def rotation_input(settings: Settings, secret_name: str, version: str, source: str, dry_run: bool = False,
                   canary: Any = None) -> dict:
    """The ``rotate_secret`` input (validated: a bad name, version or canary is a field-level InvalidRequest).

    ``canary``: the request's provisionOnDemand subject (wins over every instance's). The defaults for an
    instance whose notes name none: ``ROTATION_CANARY_BY_TEMPLATE`` for its template, then ``ROTATION_CANARY``."""
    data: dict[str, Any] = {"secretName": secret_name, "version": version, "dryRun": dry_run, "source": source,
                            "options": workflow_options(settings)}
    if canary is not None:
        data["canary"] = canary
    by_template = parse_canary_by_template(settings.rotation_canary_by_template)
    if by_template:
        data["canaryByTemplate"] = by_template
    default = parse_canary(settings.rotation_canary)
    if default is not None:
        data["defaultCanary"] = default
    return RotateSecretInput.from_dict(data).to_dict()


async def start_rotation(client: df.DurableOrchestrationClient, payload: dict,
                         instance_id: str | None = None) -> tuple[str, bool]:
    """Start the rotation of ``payload``'s secret version unless it exists; ``(instance id, started)``.
    ``instance_id``: the health sweep's follow-up id (core/steps/rotation_retry.py), else the version's."""
    # a dry run never takes the id of the real rotation of that version
    instance_id = instance_id or rotation_instance_id(payload["secretName"], payload["version"],
                                                      dry_run=bool(payload.get("dryRun")))
    existing = await client.get_status(instance_id)
    if existing and existing.runtime_status is not None:
        return instance_id, False
    try:
        await client.start_new(names.ROTATE_SECRET, instance_id, payload)
    except Exception:  # a concurrent start won the race: the instance exists now
        existing = await client.get_status(instance_id)
        if existing and existing.runtime_status is not None:
            return instance_id, False
        raise
    log.info("rotation %s started (%s)", instance_id, payload.get("source"))
    return instance_id, True


def _current_version(secret_name: str) -> str | None:
    from core import clients

    props = clients.get_secret_resolver().current_properties(secret_name)
    return (props or {}).get("version")


@bp.function_name(names.HTTP_START_ROTATION)
@bp.route(route=ROUTE, methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_start_rotation(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        return error_response(500, "InvalidConfiguration", str(exc))
    try:
        body = json.loads(req.get_body() or b"null")
    except (ValueError, UnicodeDecodeError):
        return error_response(400, "InvalidJson", "the body is not valid UTF-8 JSON", [{"path": "$", "message": "not JSON"}])
    if not isinstance(body, dict):
        return error_response(400, "InvalidRequest", "the body must be a JSON object",
                              [{"path": "$", "message": "must be an object"}])
    problems = [Problem(k, "unknown field") for k in sorted(set(body) - {"secretName", "version", "dryRun", "canary"})]
    if not isinstance(body.get("dryRun", False), bool):
        problems.append(Problem("dryRun", "must be true or false"))
    secret_name = body.get("secretName")
    version = body.get("version")
    if not problems and version is None and isinstance(secret_name, str) and secret_name:
        try:
            version = await asyncio.to_thread(_current_version, secret_name)
        except ProvisioningError as exc:
            return error_response(503, "KeyVaultUnavailable", exc.message)
        if version is None:
            problems.append(Problem("secretName", "Key Vault has no enabled version of this secret"))
    try:
        if problems:
            raise InvalidRequest(problems)
        payload = rotation_input(settings, str(secret_name or ""), str(version or ""), "http", bool(body.get("dryRun", False)),
                                 body.get("canary"))
    except InvalidRequest as exc:
        return error_response(400, "InvalidRequest", f"{len(exc.problems)} problem(s) in the request",
                              [p.to_dict() for p in exc.problems])
    instance_id, started = await start_rotation(client, payload)
    return json_response({"id": instance_id, "secretName": payload["secretName"], "version": payload["version"],
                          "statusUri": f"/api/{ROUTE}/{instance_id}"}, 202,
                         {"X-Rotation-Duplicate": "false" if started else "true"})


@bp.function_name(names.HTTP_GET_ROTATION)
@bp.route(route=ROUTE + "/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def http_get_rotation(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    wanted = req.route_params.get("id") or ""
    status = await client.get_status(wanted) if wanted.startswith("rotation-") else None
    if status is None or status.name != names.ROTATE_SECRET:
        return error_response(404, "NotFound", "no rotation with this id")
    runtime = status.runtime_status.value if status.runtime_status else None
    view: dict[str, Any] = {"id": wanted, "runtimeStatus": runtime,
                            "createdTime": status.created_time.isoformat() if status.created_time else None,
                            "lastUpdatedTime": status.last_updated_time.isoformat() if status.last_updated_time else None}
    if runtime == "Completed" and isinstance(status.output, dict):
        view["report"] = status.output
    elif runtime == "Failed":
        view["error"] = "the rotation orchestration failed"
    else:
        view["progress"] = status.custom_status if isinstance(status.custom_status, dict) else None
    return json_response(view)


def _calendar(settings: Settings) -> dict:
    """The calendar; reading it logs nothing. The ``credentialExpiry`` events the alerts fire on come
    from the health sweep (once per sweep, on the orchestrator's own thread) and from Key Vault's
    SecretNearExpiry / SecretExpired events: a person reading the calendar neither raises nor repeats
    an alert, and no event is logged from this worker thread, which carries no invocation id
    (https://learn.microsoft.com/azure/azure-functions/functions-reference-python#logging-from-created-threads)."""
    from core.steps import default_context
    from core.steps.rotation import expiry_calendar

    return expiry_calendar(default_context(), now=datetime.now(timezone.utc),
                           warning_days=settings.credential_expiry_warning_days)


@bp.function_name(names.HTTP_CREDENTIAL_CALENDAR)
@bp.route(route="credentials", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def http_credential_calendar(req: func.HttpRequest) -> func.HttpResponse:
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        return error_response(500, "InvalidConfiguration", str(exc))
    try:
        return json_response(await asyncio.to_thread(_calendar, settings))
    except ProvisioningError as exc:
        return error_response(503, "Unavailable", exc.message)
