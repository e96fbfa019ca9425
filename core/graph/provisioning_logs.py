"""Provisioning logs (``/auditLogs/provisioning``): by job and time window, paged and paced.

Graph allows 5 report requests per 10 s per app and tenant, so every request in this process waits
for a :class:`~core.graph.transport.Pacer` first (one pacer per process: concurrent activities share the budget). Rows are
reduced to a small summary and both the v1.0 and the deprecated beta field names are read.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Callable

from core import errors, odata
from core.graph.transport import GraphClient, Pacer
from core.times import iso_seconds


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


def lt(prop: str, raw: str) -> str:
    """``prop lt raw`` for a timestamp (the list page documents ``eq``, ``contains``, ``gt``, ``lt``)."""
    odata.gt(prop, raw)  # validates the property path and the raw value
    return f"{prop} lt {raw}"


#: the typed enum literal is not needed: OData 4.01 accepts a plain string for an enum value, and the
#: beta resource page marks provisioningStatusInfo/status "Supports $filter (eq, contains)"
STATUS_PROPERTY = "provisioningStatusInfo/status"


def read_rows(client: GraphClient, pacer: Pacer, job_id: str, since: datetime, page_size: int,
              status: str | None = None, until: datetime | None = None, max_pages: int = 20,
              summary: Callable[[dict], dict] = summarize) -> dict:
    """Every row of the job between ``since`` and ``until`` (newest first), optionally one status only.

    The filter is done by Graph where its list page allows it
    (https://learn.microsoft.com/graph/api/provisioningobjectsummary-list: ``$filter`` with ``eq``,
    ``contains``, ``gt``, ``lt``): ``jobId eq '<id>'`` (escaped), ``activityDateTime gt <since>``
    (and ``lt <until>``), ``provisioningStatusInfo/status eq '<status>'``. Should Graph refuse the
    status clause (400), the read is made again without it and the status is filtered here. Pages
    are followed through ``@odata.nextLink`` until they run out - i.e. back to ``since``, the order
    being ``activityDateTime desc`` - or ``max_pages`` were read; rows older than ``since`` end the
    read too (a server that ignored the time filter). Every request waits for ``pacer`` first.

    Returns ``{"rows": [summaries], "pages": n, "complete": bool, "serverStatusFilter": bool}``;
    ``complete`` is False when ``max_pages`` cut the read short. ``summary`` reduces each row
    (:func:`summarize` unless a caller needs more of it).
    """
    base = [odata.eq("jobId", job_id), odata.gt("activityDateTime", iso_seconds(since))]
    if until is not None:
        base.append(lt("activityDateTime", iso_seconds(until)))
    server_status = status is not None
    try:
        return _read(client, pacer, base, since, page_size, status, server_status, max_pages, summary)
    except errors.BadRequest:
        if not server_status:
            raise
        return _read(client, pacer, base, since, page_size, status, False, max_pages, summary)


def _read(client: GraphClient, pacer: Pacer, base: list[str], since: datetime, page_size: int, status: str | None,
          server_status: bool, max_pages: int, summary: Callable[[dict], dict] = summarize) -> dict:
    clauses = base + ([odata.eq(STATUS_PROPERTY, status)] if server_status and status else [])
    params: dict[str, str] | None = {"$filter": odata.and_(*clauses), "$top": str(page_size),
                                     "$orderby": "activityDateTime desc"}
    rows: list[dict] = []
    path: str | None = "/auditLogs/provisioning"
    pages = 0
    floor = iso_seconds(since)
    while path and pages < max(1, max_pages):
        pacer.wait()
        body = client.get(path, params)
        pages += 1
        reached_floor = False
        for row in body.get("value") or []:
            item = summary(row)
            if str(item.get("activityDateTime") or "")[:19] < floor[:19]:
                reached_floor = True  # older than the cycle: the server ignored the time filter
                continue
            if status is None or item["status"] == status:
                rows.append(item)
        path, params = body.get("@odata.nextLink"), None
        if reached_floor:
            path = None
    return {"rows": rows, "pages": pages, "complete": path is None, "serverStatusFilter": server_status}


def error_summary(rows: list[dict], top: int) -> dict:
    """What an operator reads first about failed rows: how many objects failed and the leading errors.

    ``failedObjects`` counts distinct source objects (a cycle that retried an object logs it again);
    ``topErrorCodes`` lists the most frequent error codes with one reason each.
    """
    objects = {((r.get("source") or {}).get("id") or r.get("id")) for r in rows}
    tally: Counter[str] = Counter()
    reasons: dict[str, str | None] = {}
    for row in rows:
        code = str(row.get("errorCode") or "Unknown")
        tally[code] += 1
        reasons.setdefault(code, (str(row["reason"])[:300] if row.get("reason") else None))
    return {"failedObjects": len(objects), "failures": len(rows),
            "topErrorCodes": [{"code": code, "count": count, "reason": reasons[code]}
                              for code, count in tally.most_common(max(1, top))]}
