"""Provisioning logs (``/auditLogs/provisioning``): by job and time window, paged and paced.

Graph allows 5 report requests per 10 s per app and tenant, so every request in this process waits
for a :class:`~core.graph.transport.Pacer` first (one pacer per process: concurrent activities share the budget). Rows are
reduced to a small summary and both the v1.0 and the deprecated beta field names are read.
"""

from __future__ import annotations

from datetime import datetime, timezone

from core import odata
from core.graph.transport import GraphClient, Pacer


def iso_z(moment: datetime) -> str:
    """UTC timestamp as an OData DateTimeOffset literal (``2026-11-27T10:00:00Z``)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def summarize(row: dict) -> dict:
    """The fields an operator needs from one provisioningObjectSummary (v1.0 names first, then beta)."""
    status_info = row.get("provisioningStatusInfo") or row.get("statusInfo") or {}
    error = status_info.get("errorInformation") or status_info  # beta puts error fields in statusInfo
    source = row.get("sourceIdentity") or {}
    target = row.get("targetIdentity") or {}
    return {
        "id": row.get("id"),
        "activityDateTime": row.get("activityDateTime"),
        "cycleId": row.get("cycleId"),
        "action": row.get("provisioningAction") or row.get("action"),
        "status": str(status_info.get("status") or "").lower() or None,
        "errorCode": error.get("errorCode"),
        "reason": error.get("reason"),
        "source": {"id": source.get("id"), "displayName": source.get("displayName"),
                   "type": source.get("identityType")},
        "target": {"id": target.get("id"), "displayName": target.get("displayName")},
    }


def list_rows(client: GraphClient, pacer: Pacer, job_id: str, since: datetime, page_size: int,
              status: str | None = None, limit: int = 100, max_pages: int = 10) -> list[dict]:
    """Summaries of the job's rows after ``since`` (newest first), optionally one status only.

    The status is filtered here, not in ``$filter``: whether Graph accepts a plain string for the
    enum is UNCONFIRMED (graph-provisioning-api.md 4.2). ``max_pages`` bounds the read.
    """
    params: dict[str, str] | None = {
        "$filter": odata.and_(odata.eq("jobId", job_id), odata.gt("activityDateTime", iso_z(since))),
        "$top": str(page_size),
        "$orderby": "activityDateTime desc",
    }
    rows: list[dict] = []
    path: str | None = "/auditLogs/provisioning"
    pages = 0
    while path and pages < max_pages and len(rows) < limit:
        pacer.wait()
        body = client.get(path, params)
        pages += 1
        for row in body.get("value") or []:
            item = summarize(row)
            if status is None or item["status"] == status:
                rows.append(item)
        path, params = body.get("@odata.nextLink"), None
    return rows[:limit]
