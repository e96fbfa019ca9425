"""Event Grid trigger: Key Vault's secret events start the credential rotation.

Key Vault publishes ``Microsoft.KeyVault.SecretNewVersionCreated``, ``SecretNearExpiry`` (30 days
before ``exp``) and ``SecretExpired`` to an Event Grid system topic on the vault
(https://learn.microsoft.com/azure/key-vault/general/event-grid-overview); the subscription
delivers them to this function's webhook ``/runtime/webhooks/eventgrid?functionName=...`` with the
``eventgrid_extension`` system key (https://learn.microsoft.com/azure/azure-functions/functions-bindings-event-grid-trigger).
Data shape: https://learn.microsoft.com/azure/event-grid/event-schema-key-vault (``Id``,
``VaultName``, ``ObjectType``, ``ObjectName``, ``Version``, ``NBF``, ``EXP``; that page's own
example has a key with a trailing space and a version with a leading space, so keys and values
are read trimmed and case-insensitively, the name falls back to ``subject`` and the version to the
last segment of ``Id``).

* ``SecretNewVersionCreated``: start the rotation of that version (instance id per secret name +
  version, so Event Grid's at-least-once delivery and its retries start it once).
* ``SecretNearExpiry`` / ``SecretExpired``: one ``credentialExpiry`` line (:func:`expiry_line`); and when Key Vault already
  holds a newer enabled version than the event's, its rotation (the operator put one in and its
  event was missed). Otherwise there is nothing to rotate to yet.

Any other event type is logged and ignored; an event that names no secret is logged as malformed
and acknowledged (a retry would not fix it). A failure to start the orchestration raises, so the
host answers non-2xx and Event Grid retries.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from core import events, names
from core.events import event_line
from core.errors import InvalidRequest
from core.settings import get_settings
from core.times import iso
from triggers.rotation import bp, rotation_input, start_rotation

log = logging.getLogger("triggers.eventgrid")

NEW_VERSION = "Microsoft.KeyVault.SecretNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"
EXPIRED = "Microsoft.KeyVault.SecretExpired"
HANDLED = (NEW_VERSION, NEAR_EXPIRY, EXPIRED)


def secret_event(event_type: str | None, subject: str | None, data: Any) -> tuple[str | None, str | None]:
    """``(secret name, version)`` of a Key Vault secret event (lenient, see the module docstring)."""
    fields = {str(k).strip().lower(): v for k, v in data.items()} if isinstance(data, dict) else {}
    name = str(fields.get("objectname") or subject or "").strip() or None
    version = str(fields.get("version") or "").strip()
    if not version and isinstance(fields.get("id"), str):
        version = fields["id"].rstrip("/").rsplit("/", 1)[-1].strip()
    return name, (version or None)


def _event_fields(event: Any) -> tuple[str | None, str | None, str | None, Any]:
    """(id, type, subject, data) of an EventGridEvent or a CloudEvent."""
    if isinstance(event, func.EventGridEvent):
        return event.id, event.event_type, event.subject, event.get_json()
    return event.id, getattr(event, "type", None), event.subject, event.get_json()  # a CloudEvent


def expiry_line(event_id: str | None, event_type: str, name: str, version: str, data: Any, now: datetime,
                instances: int | None) -> str:
    """The ``credentialExpiry`` line of a ``SecretNearExpiry`` / ``SecretExpired`` event (core/events.py):
    ``expires`` and ``daysLeft`` from the event's ``EXP`` (unix seconds; null when absent or unreadable),
    ``instances``: how many registered instances reference the secret (null: registry not read)."""
    fields = {str(k).strip().lower(): v for k, v in data.items()} if isinstance(data, dict) else {}
    exp = fields.get("exp")
    expires = None
    if isinstance(exp, (int, float)) and not isinstance(exp, bool):
        try:
            expires = datetime.fromtimestamp(exp, timezone.utc)
        except (OverflowError, OSError, ValueError):
            expires = None
    return event_line(events.CREDENTIAL_EXPIRY, source="keyVaultEvent", eventId=event_id, eventType=event_type,
                      secretName=name, version=version, expires=iso(expires) if expires else None,
                      daysLeft=(expires - now).days if expires else None, expired=event_type == EXPIRED,
                      state="expired" if event_type == EXPIRED else "expiring", instances=instances)


def _dependents(secret_name: str) -> int | None:
    from core import registry

    try:
        return len(registry.get_registry().referencing(secret_name))
    except Exception as exc:  # noqa: BLE001 - the line is still logged; storage text may quote a request
        log.warning("fleet registry not read for %s (%s)", secret_name, type(exc).__name__)
        return None


def _current_version(secret_name: str) -> str | None:
    from core import clients

    return (clients.get_secret_resolver().current_properties(secret_name) or {}).get("version")


@bp.function_name(names.EVENTGRID_KEY_VAULT_SECRET)
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def eventgrid_key_vault_secret(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    event_id, event_type, subject, data = _event_fields(event)
    if event_type not in HANDLED:
        log.info("event %s of type %s ignored", event_id, event_type)
        return
    name, version = secret_event(event_type, subject, data)
    if not name or not version:
        log.warning(event_line(events.KEY_VAULT_EVENT_MALFORMED, eventId=event_id, eventType=event_type))
        return
    if event_type != NEW_VERSION:
        instances = await asyncio.to_thread(_dependents, name)
        log.warning(expiry_line(event_id, event_type, name, version, data, datetime.now(timezone.utc), instances))
        current = await asyncio.to_thread(_current_version, name)
        if not current or current == version:
            return  # nothing newer to rotate to: the calendar and this line tell the operator
        version = current
    try:
        payload = rotation_input(get_settings(), name, version, "event")
    except InvalidRequest as exc:
        log.warning(event_line(events.KEY_VAULT_EVENT_MALFORMED, eventId=event_id, eventType=event_type,
                               problems=[p.to_dict() for p in exc.problems]))
        return
    instance_id, started = await start_rotation(client, payload)
    log.info("event %s (%s %s): rotation %s %s", event_id, event_type, name, instance_id,
             "started" if started else "already known")
