"""Event Grid for the emulator's Key Vault: subscriptions registered through the admin API receive
the vault's secret events over HTTP, with Event Grid's handshake and retry.

Primary sources:

* Events and data: https://learn.microsoft.com/azure/key-vault/general/event-grid-overview and
  https://learn.microsoft.com/azure/event-grid/event-schema-key-vault
  (``Microsoft.KeyVault.SecretNewVersionCreated``; ``data``: ``Id``, ``VaultName``, ``ObjectType``,
  ``ObjectName``, ``Version``, ``NBF``, ``EXP``; topic = the vault's resource id, subject = the name).
* Expiry events, same pages: ``SecretNearExpiry`` is "triggered when the current version of a secret
  is about to expire (the event is triggered 30 days before the expiration date)", ``SecretExpired``
  "when the current version of a secret is expired"; "notification events are triggered only on new
  versions ..., and you must first subscribe to the event on your key vault in order to receive these
  notifications". So here: each secret's *current* (newest, enabled) version with an ``exp`` publishes
  ``SecretNearExpiry`` once the emulator's clock reaches ``exp`` - 30 days (at once when it was set
  with less than 30 days left; not when it was set already expired) and ``SecretExpired`` once it
  reaches ``exp``: each once per version (a point in time passes once; the docs name no repeat), to
  the subscriptions created before that version. A version replaced before its time publishes
  nothing. The check runs after every Set Secret, every clock change (``POST /_emulator/clock``) and
  once a second.
* Webhook delivery and validation: https://learn.microsoft.com/azure/event-grid/webhook-event-delivery
  (Event Grid schema: a ``Microsoft.EventGrid.SubscriptionValidationEvent`` with
  ``aeg-event-type: SubscriptionValidation`` answered ``{"validationResponse": code}``; CloudEvents
  v1.0: an ``OPTIONS`` with ``WebHook-Request-Origin`` answered with ``WebHook-Allowed-Origin``).
* Retry: https://learn.microsoft.com/azure/event-grid/delivery-and-retry - a non-2xx answer is
  retried on a schedule (10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h)
  up to ``maxDeliveryAttempts`` (default 30) or until the event's time to live
  (``eventTimeToLiveInMinutes``, default 1440: 24 h) would be passed, whichever comes first; a
  webhook's 400, 401, 403 and 413 are not retried. The schedule runs on the emulator's clock (``--time-scale``). Delivery is at least once:
  a receiver must be idempotent (the rotation is, per secret name + version).

Admin API (loopback only): ``POST /_emulator/eventgrid/subscriptions`` ``{"endpoint",
"schema"?: "EventGridSchema" | "CloudEventSchemaV1_0", "includedEventTypes"?: [...],
"maxDeliveryAttempts"?: n, "eventTimeToLiveInMinutes"?: n}`` validates the endpoint, then answers 201 with the subscription (or
400 when the handshake fails); ``GET`` lists them with every delivery attempt; ``DELETE`` removes all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from emulator.clock import iso

log = logging.getLogger("emulator.eventgrid")

EVENTGRID_KEY = web.AppKey("eventgrid", object)
NEW_VERSION = "Microsoft.KeyVault.SecretNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry"
EXPIRED = "Microsoft.KeyVault.SecretExpired"
SCHEMAS = ("EventGridSchema", "CloudEventSchemaV1_0")
#: seconds before each retry (the docs' schedule; then every 12 h)
RETRY_SCHEDULE = (10, 30, 60, 300, 600, 1800, 3600, 10800, 21600)
NOT_RETRIED = {400, 401, 403, 413}
#: minutes an event lives by default (eventTimeToLiveInMinutes: 1 to 1440)
DEFAULT_TTL_MINUTES = 1440
SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000000"
#: SecretNearExpiry is published this long before the current version's ``exp`` (the docs: 30 days)
NEAR_EXPIRY_SECONDS = 30 * 86400
#: the version's record of the expiry events it published (in the saved tenant: once per version); present,
#: maybe empty, once a check has looked at the version
EXPIRY_MARK = "expiryEventsPublished"


class EventGrid:
    """Subscriptions and deliveries of the emulator's one vault (in memory: not part of the saved tenant)."""

    def __init__(self, clock: Any, ca_bundle: str | None = None) -> None:
        self.clock = clock
        self.subscriptions: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task] = set()
        #: per subscription name: the secret versions that existed when it was created
        self._existing: dict[str, frozenset[tuple[str, str]]] = {}

    def publish_expiry(self, store: Any, vault_url: str) -> list[dict]:
        """Publish the due ``SecretNearExpiry`` / ``SecretExpired`` of each secret's current version, once
        per version (see the module docstring); returns the events published."""
        if not vault_url:
            return []
        now = self.clock.now().timestamp()
        published = []
        for name, versions in list(store.secrets.items()):
            current = versions[-1] if versions else None
            expires = current.get("expires") if current else None
            if current is None or expires is None or not current.get("enabled", True):
                continue
            first_look = EXPIRY_MARK not in current
            done = list(current.get(EXPIRY_MARK) or [])
            current[EXPIRY_MARK] = done  # looked at: the checks run at Set Secret, so a first look is its set time
            due = []
            # set already expired (first looked at past exp, on this clock: ``created`` is wall-clock time,
            # which a test or demo moves this clock ahead of): never "about to expire", then or later
            if (now >= expires - NEAR_EXPIRY_SECONDS and EXPIRED not in done
                    and not (first_look and now >= expires)):
                due.append(NEAR_EXPIRY)
            if now >= expires:
                due.append(EXPIRED)
            for event_type in due:
                if event_type in done:
                    continue
                done.append(event_type)
                current[EXPIRY_MARK] = done
                event = self.key_vault_event(event_type, vault_url, name, current)
                self.publish(event, version_key=(name.lower(), current["version"]))
                published.append(event)
        return published

    # ------------------------------------------------------------------ events
    def key_vault_event(self, event_type: str, vault_url: str, name: str, version: dict) -> dict:
        vault = vault_url.split("//", 1)[-1].split("/", 1)[0].split(".", 1)[0].replace(":", "-")
        return {
            "id": str(uuid.uuid4()),
            "topic": f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/emulator/providers/Microsoft.KeyVault/vaults/{vault}",
            "subject": name,
            "eventType": event_type,
            "eventTime": iso(self.clock.now()),
            "data": {"Id": f"{vault_url}/secrets/{name}/{version['version']}", "VaultName": vault,
                     "ObjectType": "Secret", "ObjectName": name, "Version": version["version"],
                     "NBF": None, "EXP": version.get("expires")},
            "dataVersion": "1",
            "metadataVersion": "1",
        }

    def publish(self, event: dict, version_key: tuple[str, str] | None = None) -> None:
        """Deliver ``event`` (Event Grid schema) to every subscription that includes its type, in the background.

        ``version_key`` (``(name lower-cased, version)``, for the expiry events): not to the
        subscriptions that are younger than that version."""
        for sub in self.subscriptions:
            included = sub.get("includedEventTypes")
            if included and event["eventType"] not in included:
                continue
            if version_key is not None and version_key in self._existing.get(sub["name"], ()):
                continue
            task = asyncio.ensure_future(self._deliver(sub, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _as_cloud_event(event: dict) -> dict:
        return {"specversion": "1.0", "id": event["id"], "source": event["topic"], "type": event["eventType"],
                "subject": event["subject"], "time": event["eventTime"], "datacontenttype": "application/json",
                "data": event["data"]}

    async def _deliver(self, sub: dict, event: dict) -> None:
        cloud = sub["schema"] == "CloudEventSchemaV1_0"
        body = json.dumps(self._as_cloud_event(event) if cloud else [event])
        attempt = 0
        elapsed = 0.0  # simulated seconds since the first attempt, on the schedule
        while True:
            attempt += 1
            headers = {"Content-Type": "application/cloudevents+json" if cloud else "application/json",
                       "aeg-subscription-name": sub["name"], "aeg-delivery-count": str(attempt - 1),
                       "aeg-data-version": "1", "aeg-metadata-version": "1"}
            if not cloud:
                headers["aeg-event-type"] = "Notification"
            status = await self._post(sub["endpoint"], body, headers)
            self.deliveries.append({"subscription": sub["name"], "eventId": event["id"], "eventType": event["eventType"],
                                    "subject": event["subject"], "attempt": attempt, "status": status})
            if status is not None and 200 <= status < 300:
                return
            delay = RETRY_SCHEDULE[attempt - 1] if attempt - 1 < len(RETRY_SCHEDULE) else 43200
            expired = elapsed + delay > sub["eventTimeToLiveInMinutes"] * 60
            if (status in NOT_RETRIED) or attempt >= sub["maxDeliveryAttempts"] or expired:
                log.warning("event %s to %s dropped after %d attempt(s) (last status %s)", event["id"], sub["name"],
                            attempt, status)
                return
            elapsed += delay
            await asyncio.sleep(delay / max(self.clock.scale, 1e-9))

    @staticmethod
    async def _post(url: str, body: str, headers: dict) -> int | None:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                async with session.post(url, data=body.encode(), headers=headers) as response:
                    await response.read()
                    return response.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None

    # ------------------------------------------------------------------ subscriptions
    async def subscribe(self, spec: dict, existing_versions: Any = ()) -> dict:
        """Add a subscription (after the handshake); ``existing_versions``: the vault's ``(name lower-cased,
        version)`` pairs now (their expiry events never reach it)."""
        endpoint = spec.get("endpoint")
        schema = spec.get("schema") or "EventGridSchema"
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ValueError("'endpoint' must be an http(s) URL")
        if schema not in SCHEMAS:
            raise ValueError(f"'schema' must be one of {', '.join(SCHEMAS)}")
        included = spec.get("includedEventTypes")
        if included is not None and (not isinstance(included, list) or not all(isinstance(t, str) for t in included)):
            raise ValueError("'includedEventTypes' must be a list of event types")
        attempts = spec.get("maxDeliveryAttempts", 30)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 30:
            raise ValueError("'maxDeliveryAttempts' must be an integer from 1 to 30")
        ttl = spec.get("eventTimeToLiveInMinutes", DEFAULT_TTL_MINUTES)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= DEFAULT_TTL_MINUTES:
            raise ValueError(f"'eventTimeToLiveInMinutes' must be an integer from 1 to {DEFAULT_TTL_MINUTES}")
        sub = {"name": spec.get("name") or f"sub-{len(self.subscriptions) + 1}", "endpoint": endpoint, "schema": schema,
               "includedEventTypes": included, "maxDeliveryAttempts": attempts, "eventTimeToLiveInMinutes": ttl}
        await self._validate(sub)
        self.subscriptions.append(sub)
        self._existing[sub["name"]] = frozenset(existing_versions)
        return sub

    def clear(self) -> None:
        self.subscriptions.clear()
        self.deliveries.clear()
        self._existing.clear()

    async def _validate(self, sub: dict) -> None:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                if sub["schema"] == "CloudEventSchemaV1_0":
                    origin = "eventgrid.azure.net"
                    async with session.options(sub["endpoint"], headers={"WebHook-Request-Origin": origin}) as r:
                        if r.status != 200 or r.headers.get("WebHook-Allowed-Origin") not in (origin, "*"):
                            raise ValueError(f"endpoint validation failed: HTTP {r.status}, no WebHook-Allowed-Origin")
                    return
                code = str(uuid.uuid4())
                event = [{"id": str(uuid.uuid4()), "topic": "", "subject": "", "eventTime": iso(self.clock.now()),
                          "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                          "data": {"validationCode": code, "validationUrl": None},
                          "dataVersion": "2", "metadataVersion": "1"}]
                async with session.post(sub["endpoint"], json=event,
                                        headers={"aeg-event-type": "SubscriptionValidation"}) as r:
                    answer = await r.json(content_type=None) if r.status == 200 else None
                    if not isinstance(answer, dict) or answer.get("validationResponse") != code:
                        raise ValueError(f"endpoint validation failed: HTTP {r.status}, no matching validationResponse")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise ValueError(f"endpoint validation failed: {type(exc).__name__}") from None

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def event_grid_of(app: web.Application) -> EventGrid:
    return app[EVENTGRID_KEY]  # type: ignore[return-value]
