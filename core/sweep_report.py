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

Which storage: the app's own ``AzureWebJobsStorage`` account, through the one blob client helper
the batch reports use (:func:`core.report_store.blob_service`: a connection string locally, the
app's managed identity in Azure). The container is ``HEALTH_SWEEP_REPORT_CONTAINER``.
"""

from __future__ import annotations

import base64
import json
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from core import report_store
from core.settings import Settings

CONTENT_TYPE = "application/x-ndjson"
_SETTING = "HEALTH_SWEEP_REPORT_CONTAINER"


def _block_id(index: int) -> str:
    return base64.b64encode(f"page-{index:08d}".encode()).decode()


@contextmanager
def _blob(settings: Settings, blob_name: str) -> Iterator[Any]:
    """The report blob's client, its container created when missing (the service closed after use)."""
    from azure.core.exceptions import ResourceExistsError

    service = report_store.blob_service()
    try:
        container = service.get_container_client(report_store.check_container(settings.health_sweep_report_container,
                                                                               _SETTING))
        try:
            container.create_container()
        except ResourceExistsError:
            pass
        yield container.get_blob_client(blob_name)
    finally:
        service.close()


def stage_lines(settings: Settings, blob_name: str, index: int, entries: Iterable[dict]) -> dict:
    """Stage one page's lines as block ``index`` of ``blob_name`` (re-staging replaces it)."""
    data = "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in entries).encode()
    with _blob(settings, blob_name) as blob:
        blob.stage_block(_block_id(index), data, length=len(data))
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

    with _blob(settings, blob_name) as blob:
        present = present_blocks(blob)
        missing = [i for i in sorted(blocks) if _block_id(i) not in present]
        if missing:
            return {"missing": missing}
        blob.commit_block_list([BlobBlock(block_id=_block_id(i)) for i in sorted(blocks)],
                               content_settings=ContentSettings(content_type=CONTENT_TYPE))
        url = blob.url.split("?", 1)[0]
    return {"container": settings.health_sweep_report_container, "blobName": blob_name, "url": url}
