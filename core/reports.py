"""The health sweep's full report in blob storage: one JSON Lines blob per sweep, one line per instance.

Why blob storage: the sweep's output (orchestration history, the status API) holds the counts and
the unhealthy instances only, so it stays small at any fleet size; the per-instance report of
10,000 instances (about 3 MB) goes to a blob and the output links it (container and blob name,
and its URL without any SAS: reading it takes the reader's own storage access).

How it is written without holding the fleet anywhere: a *block blob* built from staged blocks.
Each page of the sweep stages its lines as one block (block id = the page number, so a retried
page re-stages the same block and replaces it), and the last step commits the block list in page
order (Put Block / Put Block List:
https://learn.microsoft.com/rest/api/storageservices/put-block-list - "blocks ... uncommitted
... are garbage collected" after a week if the sweep never commits them). Both calls are
idempotent under retry.

Which storage: the app's own ``AzureWebJobsStorage`` connection, as the Functions host uses it.
Locally a connection string (``UseDevelopmentStorage=true`` = Azurite); in Azure identity-based,
``AzureWebJobsStorage__blobServiceUri`` with the app's managed identity (it holds Storage Blob
Data Owner on that account: infra/app/rbac.bicep). The container is ``HEALTH_SWEEP_REPORT_CONTAINER``.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any, Iterable

from core.settings import Settings

CONTENT_TYPE = "application/x-ndjson"
#: the host's storage connection, resolved as the Functions host resolves a binding's ``connection``:
#: the setting itself (a connection string: local), else ``<connection>__blobServiceUri`` (identity-based:
#: set by infra/app/api.bicep, a platform setting like the host's own)
CONNECTION = "AzureWebJobsStorage"


def _block_id(index: int) -> str:
    return base64.b64encode(f"page-{index:08d}".encode()).decode()


def blob_service(settings: Settings) -> Any:
    """A ``BlobServiceClient`` on the app's storage (connection string locally, identity in Azure)."""
    from azure.storage.blob import BlobServiceClient

    connection = os.environ.get(CONNECTION)
    if connection:
        return BlobServiceClient.from_connection_string(connection)
    uri = os.environ.get(f"{CONNECTION}__blobServiceUri")
    if not uri:
        raise RuntimeError(f"no blob storage: set {CONNECTION} (a connection string) or "
                           f"{CONNECTION}__blobServiceUri (identity-based)")
    from core.clients import get_credential

    return BlobServiceClient(uri, credential=get_credential())


def _blob(settings: Settings, blob_name: str, create: bool) -> Any:
    from azure.core.exceptions import ResourceExistsError

    container = blob_service(settings).get_container_client(settings.health_sweep_report_container)
    if create:
        try:
            container.create_container()
        except ResourceExistsError:
            pass
    return container.get_blob_client(blob_name)


def stage_lines(settings: Settings, blob_name: str, index: int, entries: Iterable[dict]) -> dict:
    """Stage one page's lines as block ``index`` of ``blob_name`` (re-staging replaces it)."""
    data = "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in entries).encode()
    _blob(settings, blob_name, create=True).stage_block(_block_id(index), data, length=len(data))
    return {"block": index, "bytes": len(data)}


def present_blocks(blob: Any) -> set[str]:
    """Ids of the blocks the blob holds, committed or staged (none while nothing was staged)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        committed, uncommitted = blob.get_block_list("all")
    except ResourceNotFoundError:
        return set()
    return {str(b.id if hasattr(b, "id") else b["id"]) for b in [*committed, *uncommitted]}


def commit(settings: Settings, blob_name: str, blocks: list[int]) -> dict:
    """Commit the staged ``blocks`` (page numbers) in order: the blob holds every line, page by page.

    A block that is not there (staged blocks expire after a week uncommitted; a storage emulator
    killed mid-sweep may lose its last writes) is not committed around: the answer is
    ``{"missing": [page numbers]}`` and nothing is committed, so the sweep can stage those pages
    again. Committing the same list twice (a retry after a lost answer) is harmless: a committed
    block still counts as present.
    """
    from azure.storage.blob import BlobBlock, ContentSettings

    blob = _blob(settings, blob_name, create=True)
    present = present_blocks(blob)
    missing = [i for i in sorted(blocks) if _block_id(i) not in present]
    if missing:
        return {"missing": missing}
    blob.commit_block_list([BlobBlock(block_id=_block_id(i)) for i in sorted(blocks)],
                           content_settings=ContentSettings(content_type=CONTENT_TYPE))
    return {"container": settings.health_sweep_report_container, "blobName": blob_name,
            "url": blob.url.split("?", 1)[0]}
