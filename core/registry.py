"""The fleet registry: one Azure Table row per managed instance (never a secret value).

Per instance (``PartitionKey`` ``instance``, ``RowKey`` = service principal object id): its ids
(``servicePrincipalId``, ``jobId``, ``instanceKey``), ``displayName``, ``applicationTemplateId``,
``labels``, its credential *references* (``credentials``: Key Vault secret names and non-secret
literals, as in the service principal's notes), per referenced secret the Key Vault version saved,
that version's ``expires`` and when it was validated and saved (``secrets``), the last outcome, the
last rotation, the last sweep result, the last batch (``lastBatch``) and the last operator action
(``lastAction``). Complex values are JSON strings (Table storage holds
scalars only); ``secretNames`` (``|a|b|``) lets a reader see the references without parsing.

Why Table storage (docs/architecture.md "The fleet registry"): the app already has the
``AzureWebJobsStorage`` account (Azurite locally), rows are read by the HTTP calendar and by
activities without going through an orchestration, and it survives the task hub's loss. It is a
cache: Graph tags stay the source of which objects we own, and :func:`rebuild` writes it again from
Graph (tags + notes) and Key Vault (versions, expiry).

Connection: ``AzureWebJobsStorage`` (a connection string, or ``UseDevelopmentStorage=true`` for
Azurite), else identity-based ``AzureWebJobsStorage__tableServiceUri`` /
``AzureWebJobsStorage__accountName`` with the app's credential (Storage Table Data Contributor), as
the Functions host resolves its own storage connection
(https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity).
Table name: the ``FLEET_REGISTRY_TABLE`` setting.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from core import errors

logger = logging.getLogger("core.registry")

PARTITION = "instance"
#: a registry write must not hold an activity for long: few retries, short timeouts (azure-core options)
_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 2, "connection_timeout": 5, "read_timeout": 20}
STORAGE_SETTING = "AzureWebJobsStorage"
#: properties stored as JSON text
JSON_FIELDS = ("labels", "credentials", "secrets", "lastRotation", "lastSweepResult", "lastBatch", "lastAction")
#: properties the registry writes (anything else in a row is ignored on read)
FIELDS = ("servicePrincipalId", "instanceKey", "displayName", "applicationTemplateId", "jobId", "labels",
          "credentials", "secrets", "secretNames", "lastOutcome", "lastOutcomeAt", "lastRotation",
          "lastSweepResult", "lastBatch", "lastAction", "updatedAt")
#: rows per table transaction (Azure Tables: at most 100 operations, one partition:
#: https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions)
TRANSACTION_MAX = 100


def _table_client(table_name: str, env: Mapping[str, str] | None = None) -> Any:
    from azure.data.tables import TableServiceClient

    env = os.environ if env is None else env
    connection = (env.get(STORAGE_SETTING) or "").strip()
    if connection:
        service = TableServiceClient.from_connection_string(connection, **_CLIENT_OPTIONS)
    else:
        uri = (env.get(f"{STORAGE_SETTING}__tableServiceUri") or "").strip()
        account = (env.get(f"{STORAGE_SETTING}__accountName") or "").strip()
        if not uri and account:
            uri = f"https://{account}.table.core.windows.net"
        if not uri:
            raise errors.ConfigurationError([errors.Problem(
                STORAGE_SETTING, "set a connection string (locally UseDevelopmentStorage=true) or "
                f"{STORAGE_SETTING}__tableServiceUri / __accountName for the fleet registry")])
        from core import clients

        service = TableServiceClient(endpoint=uri, credential=clients.get_credential(), **_CLIENT_OPTIONS)
    return service.get_table_client(table_name)


class FleetRegistry:
    """Read and write registry rows; the table is created on first use."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._ready = False
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        if self._ready:
            return
        from azure.core.exceptions import ResourceExistsError

        with self._lock:
            if not self._ready:
                try:
                    self._table.create_table()
                except ResourceExistsError:
                    pass
                self._ready = True

    def upsert(self, sp_id: str, fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` into the row of ``sp_id`` (a field given as None is left as it is)."""
        from azure.data.tables import UpdateMode

        self._ensure()
        self._table.upsert_entity(_entity(sp_id, fields), mode=UpdateMode.MERGE)

    def get(self, sp_id: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        self._ensure()
        try:
            return _decode(self._table.get_entity(PARTITION, sp_id))
        except ResourceNotFoundError:
            return None

    def all(self) -> list[dict[str, Any]]:
        self._ensure()
        rows = [_decode(e) for e in self._table.query_entities("PartitionKey eq @pk", parameters={"pk": PARTITION})]
        return sorted(rows, key=lambda r: (str(r.get("displayName") or ""), str(r.get("servicePrincipalId"))))

    def referencing(self, secret_name: str) -> list[dict[str, Any]]:
        """The rows whose credentials reference Key Vault secret ``secret_name`` (names compare case-insensitively)."""
        wanted = secret_name.lower()
        return [row for row in self.all() if wanted in {n.lower() for n in referenced_secrets(row.get("credentials"))}]

    def delete(self, sp_id: str) -> None:
        self._ensure()
        self._table.delete_entity(PARTITION, sp_id)

    # -- a page at a time (the health sweep): reads and writes per page, not per instance
    def get_many(self, sp_ids: Iterable[str], select: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """The rows of ``sp_ids`` (absent ones left out), read with one query per :data:`QUERY_IDS` ids.

        Why chunks: a Table ``$filter`` holds at most 15 discrete comparisons
        (https://learn.microsoft.com/rest/api/storageservices/querying-tables-and-entities), the
        partition key's included. Ids travel as query parameters, never spliced into the filter.
        """
        self._ensure()
        wanted = sorted(set(sp_ids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), QUERY_IDS):
            chunk = wanted[start:start + QUERY_IDS]
            params: dict[str, Any] = {"pk": PARTITION, **{f"k{i}": sp for i, sp in enumerate(chunk)}}
            # spaces around the parentheses: the SDK substitutes ``@name`` words split on spaces
            text = "PartitionKey eq @pk and ( " + " or ".join(f"RowKey eq @k{i}" for i in range(len(chunk))) + " )"
            fields = None if select is None else ["RowKey", *select]
            for entity in self._table.query_entities(text, parameters=params, select=fields):
                found[str(entity["RowKey"])] = _decode(entity)
        return found

    def upsert_many(self, rows: Mapping[str, Mapping[str, Any]]) -> None:
        """Merge each ``{sp_id: fields}`` like :meth:`upsert`, in entity group transactions of at most
        :data:`BATCH_ROWS` (one partition, so one request per 100 rows:
        https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions)."""
        from azure.data.tables import UpdateMode

        self._ensure()
        operations = [("upsert", _entity(sp_id, fields), {"mode": UpdateMode.MERGE}) for sp_id, fields in rows.items()]
        for start in range(0, len(operations), BATCH_ROWS):
            self._table.submit_transaction(operations[start:start + BATCH_ROWS])


#: ids per query of :meth:`FleetRegistry.get_many` (14 RowKey comparisons + the PartitionKey one)
QUERY_IDS = 14
#: rows per entity group transaction (the service's limit)
BATCH_ROWS = TRANSACTION_MAX


def _entity(sp_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": sp_id, "servicePrincipalId": sp_id,
                              "updatedAt": _now()}
    for name, value in fields.items():
        if value is None or name not in FIELDS:
            continue
        entity[name] = json.dumps(value, sort_keys=True, separators=(",", ":")) if name in JSON_FIELDS else value
    if "secrets" in fields and isinstance(fields["secrets"], dict):
        entity["secretNames"] = "|" + "|".join(sorted(fields["secrets"])) + "|" if fields["secrets"] else ""
    return entity


def _decode(entity: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in FIELDS:
        if name not in entity:
            continue
        value = entity[name]
        if name in JSON_FIELDS and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        row[name] = value
    return row


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def referenced_secrets(credentials: Any) -> list[str]:
    """The Key Vault secret names of a credentials mapping (``{key: {"keyVaultSecret": name} | literal}``)."""
    if not isinstance(credentials, dict):
        return []
    names = {str(v["keyVaultSecret"]) for v in credentials.values()
             if isinstance(v, dict) and isinstance(v.get("keyVaultSecret"), str)}
    return sorted(names)


def secret_records(credentials: Any, versions: Mapping[str, str], expires: Mapping[str, str | None],
                   at: str, validated: bool = True) -> dict[str, dict[str, Any]]:
    """``{secret name: {version, expires, savedAt, validatedAt?}}`` for the registry (names and ids, never values)."""
    records: dict[str, dict[str, Any]] = {}
    for name in referenced_secrets(credentials):
        if name not in versions:
            continue
        record: dict[str, Any] = {"version": versions[name], "expires": expires.get(name), "savedAt": at}
        if validated:
            record["validatedAt"] = at
        records[name] = record
    return records


def instance_fields(*, instance_key: str | None = None, display_name: str | None = None,
                    template_id: str | None = None, job_id: str | None = None, labels: dict | None = None,
                    credentials: dict | None = None) -> dict[str, Any]:
    return {"instanceKey": instance_key, "displayName": display_name, "applicationTemplateId": template_id,
            "jobId": job_id, "labels": labels, "credentials": credentials}


def credentials_json(credentials: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form of parsed credentials (``SecretRef`` -> ``{"keyVaultSecret": name}``), never a value."""
    from core import model

    return {key: (value.to_dict() if isinstance(value, model.SecretRef) else str(value))
            for key, value in sorted(credentials.items())}


def tags_view(tag: str, tags: Iterable[Any]) -> dict[str, Any]:
    """Instance key and labels from our tags on a service principal."""
    key_prefix, label_prefix = f"{tag}:key:", f"{tag}:label:"
    texts = [str(t) for t in tags]
    labels = dict(t[len(label_prefix):].split("=", 1) for t in texts if t.startswith(label_prefix) and "=" in t)
    key = next((t[len(key_prefix):] for t in texts if t.startswith(key_prefix)), None)
    return {"instanceKey": key, "labels": labels}


@functools.lru_cache(maxsize=1)
def get_registry() -> FleetRegistry:
    """The process's registry on the ``FLEET_REGISTRY_TABLE`` table."""
    from core.settings import get_settings

    return FleetRegistry(_table_client(get_settings().fleet_registry_table))


def record_best_effort(sp_id: str, fields: Mapping[str, Any]) -> bool:
    """Upsert, logging (not raising) a failure: the registry is a cache the rebuild restores, so a
    storage hiccup must never fail a provisioning step that already changed the tenant."""
    try:
        get_registry().upsert(sp_id, fields)
        return True
    except Exception as exc:  # noqa: BLE001 - any storage failure; its text may quote a request, so only the type
        logger.warning("fleet registry: row of %s not written (%s); the rebuild restores it", sp_id, type(exc).__name__)
        return False
