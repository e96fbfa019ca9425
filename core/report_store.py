"""Batch reports in blob storage: the ``AzureWebJobsStorage`` account, container ``BATCH_REPORT_CONTAINER``.

Why blob: a batch of 10,000 instances has a report of about 10 MB; as an orchestration output it
would travel through the batch's history (and every replay of it) and through each status query.
The orchestrators keep counts and the instances not in a clean steady state; the full report is
written here by the ``write_batch_report`` activity: ``<batchId>/part-<n>.json`` per sub-batch
(its instance outcomes, in request order) and ``<batchId>/report.json`` (the summary and the part
names). Writes overwrite the same name with the same document, so a retried activity or a replayed
orchestration never leaves two reports. A request larger than one sub-batch is kept here too
(``<batchId>/request-<hash>.jsonl``, written by the submission trigger before it starts the batch),
so the batch's history holds a reference and counts, not the ~8 MB of a 10,000-instance request.

The connection is the Functions host's own storage connection, resolved as the host does: a
connection string in ``AzureWebJobsStorage`` (locally ``UseDevelopmentStorage=true`` = Azurite), or
identity-based ``AzureWebJobsStorage__blobServiceUri`` (or ``__accountName``) with
``AzureWebJobsStorage__clientId`` for a user-assigned identity (infra/app/api.bicep sets these; the
identity holds Storage Blob Data Owner on the account, infra/app/rbac.bicep).
https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Mapping

from core.errors import ConfigurationError, Problem

STORAGE_SETTING = "AzureWebJobsStorage"
_DEV_CONNECTION = "UseDevelopmentStorage=true"
# Azurite's well-known development account (public, documented in Azurite's README)
_DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
_CONTAINER_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")


def part_blob_name(batch_id: str, index: int) -> str:
    """``<batchId>/part-00000.json``: one sub-batch's instance outcomes."""
    return f"{batch_id}/part-{index:05d}.json"


def setup_blob_name(batch_id: str, index: int) -> str:
    """``<batchId>/setup-00000.json``: one sub-batch's outcomes after setup, read by its watch phase."""
    return f"{batch_id}/setup-{index:05d}.json"


def report_blob_name(batch_id: str) -> str:
    """``<batchId>/report.json``: the batch summary with the names of its parts."""
    return f"{batch_id}/report.json"


def request_blob_name(batch_id: str, request_hash: str) -> str:
    """``<batchId>/request-<hash>.jsonl``: a stored request (one name per body, so two different bodies
    racing under one ``requestId`` never overwrite each other's; the batch started names its own)."""
    return f"{batch_id}/request-{request_hash[:32]}.jsonl"


def request_lines(instances: list[dict[str, Any]], size: int) -> tuple[bytes, list[dict[str, Any]]]:
    """A request's instances as JSON Lines (one instance a line, request order) and its slices.

    One slice per ``size`` instances: ``{"offset", "length", "count", "sha256"}`` (the form of
    ``core.batch_contracts.RequestPart``), so a sub-batch reads its slice as one byte range.
    """
    size = max(1, size)
    data = bytearray()
    parts: list[dict[str, Any]] = []
    for start in range(0, len(instances), size):
        chunk = b"".join(json.dumps(inst, separators=(",", ":"), sort_keys=True).encode("utf-8") + b"\n"
                         for inst in instances[start:start + size])
        parts.append({"offset": len(data), "length": len(chunk), "count": len(instances[start:start + size]),
                      "sha256": hashlib.sha256(chunk).hexdigest()})
        data += chunk
    return bytes(data), parts


class DamagedPart(ValueError):
    """A stored request's slice does not read back as written (hash or count differs)."""


def parse_lines(chunk: bytes, count: int | None = None, sha256: str | None = None) -> list[dict[str, Any]]:
    """The instances in ``chunk`` (JSON Lines); :class:`DamagedPart` when it is not what was written."""
    if sha256 is not None and hashlib.sha256(chunk).hexdigest() != sha256:
        raise DamagedPart("the stored request slice does not match its sha256")
    instances = [json.loads(line) for line in chunk.decode("utf-8").splitlines() if line]
    if count is not None and len(instances) != count:
        raise DamagedPart(f"the stored request slice holds {len(instances)} instances, not {count}")
    return instances


def write_bytes(container: str, blob: str, data: bytes, content_type: str = "application/jsonl",
                env: Mapping[str, str] | None = None) -> int:
    """Write ``data`` to ``container/blob`` (created when missing; overwritten); return its size."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import ContentSettings

    service = blob_service(env)
    try:
        box = service.get_container_client(check_container(container))
        try:
            box.create_container()
        except ResourceExistsError:
            pass
        box.upload_blob(blob, data, overwrite=True, content_settings=ContentSettings(content_type=content_type))
    finally:
        service.close()
    return len(data)


def read_bytes(container: str, blob: str, offset: int = 0, length: int | None = None,
               env: Mapping[str, str] | None = None) -> bytes | None:
    """The bytes of ``container/blob`` (``length`` bytes from ``offset`` when given), or None when there is none."""
    from azure.core.exceptions import ResourceNotFoundError

    service = blob_service(env)
    try:
        client = service.get_blob_client(check_container(container), blob)
        if length is None:
            return bytes(client.download_blob().readall())
        if length <= 0:
            return b""
        return bytes(client.download_blob(offset=offset, length=length).readall())
    except ResourceNotFoundError:
        return None
    finally:
        service.close()


def check_container(name: str, setting: str = "BATCH_REPORT_CONTAINER") -> str:
    if not _CONTAINER_NAME.match(name or ""):
        raise ConfigurationError([Problem(setting, f"{name!r} is not a blob container name "
                                          "(3-63 lowercase letters, digits and single hyphens)")])
    return name


def _connection_string(env: Mapping[str, str]) -> str | None:
    conn = (env.get(STORAGE_SETTING) or "").strip()
    if conn.lower() == _DEV_CONNECTION.lower():
        # what the host means by it: Azurite's default blob endpoint
        return ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                f"AccountKey={_DEV_ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;")
    return conn or None


def blob_service(env: Mapping[str, str] | None = None) -> Any:
    """A sync ``BlobServiceClient`` on the host storage account (see module docstring)."""
    from azure.storage.blob import BlobServiceClient

    env = os.environ if env is None else env
    conn = _connection_string(env)
    if conn:
        return BlobServiceClient.from_connection_string(conn)
    uri = (env.get(f"{STORAGE_SETTING}__blobServiceUri") or "").strip()
    if not uri and env.get(f"{STORAGE_SETTING}__accountName"):
        uri = f"https://{env[f'{STORAGE_SETTING}__accountName'].strip()}.blob.core.windows.net"
    if not uri:
        raise ConfigurationError([Problem(STORAGE_SETTING, "not set: batch and sweep reports need the host storage account "
                                          "(a connection string, or AzureWebJobsStorage__blobServiceUri with a "
                                          "managed identity)")])
    from azure.identity import DefaultAzureCredential

    client_id = (env.get(f"{STORAGE_SETTING}__clientId") or "").strip() or None
    return BlobServiceClient(uri, credential=DefaultAzureCredential(managed_identity_client_id=client_id))


def write_json(container: str, blob: str, document: Any, env: Mapping[str, str] | None = None) -> int:
    """Write ``document`` as JSON to ``container/blob`` (created when missing); return its size in bytes."""
    from azure.core.exceptions import ResourceExistsError

    data = json.dumps(document, separators=(",", ":"), sort_keys=True).encode("utf-8")
    service = blob_service(env)
    try:
        box = service.get_container_client(check_container(container))
        try:
            box.create_container()
        except ResourceExistsError:
            pass
        box.upload_blob(blob, data, overwrite=True, content_settings=_json_content())
    finally:
        service.close()
    return len(data)


def read_json(container: str, blob: str, env: Mapping[str, str] | None = None) -> Any:
    """The JSON document at ``container/blob``, or None when there is none."""
    from azure.core.exceptions import ResourceNotFoundError

    service = blob_service(env)
    try:
        return json.loads(service.get_blob_client(check_container(container), blob).download_blob().readall())
    except ResourceNotFoundError:
        return None
    finally:
        service.close()


def _json_content() -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/json")


__all__ = ["DamagedPart", "blob_service", "check_container", "parse_lines", "part_blob_name", "read_bytes", "read_json",
           "report_blob_name", "request_blob_name", "request_lines", "setup_blob_name", "write_bytes", "write_json"]
