"""The health sweep's listing, one page at a time (issue #15: a sweep whose cost grows linearly).

Why pages: the fleet is listed by the correlation tag. Listing it whole in one activity made the
listing one history event (3.5 MB at 10,000 instances) that every later episode replayed. Here an
activity lists one page (``$top`` = ``HEALTH_SWEEP_PAGE_SIZE``) and hands back Graph's
``@odata.nextLink`` as the cursor for the next page, so each page is checked by its own
sub-orchestration and no history holds more than one page. Graph pages collections this way
(https://learn.microsoft.com/graph/paging: the next page is read by sending the URL value of
``@odata.nextLink`` as it is; the ``$skiptoken`` inside it is not to be extracted or built). The
page size is bounded at 999, the ``$top`` the app already lists service principals with
(:func:`core.graph.applications.find_service_principals`).
The link is followed only on the Graph origin (``GraphClient``), so a cursor carried in an
orchestration's input cannot send the token elsewhere.

Each instance carries only what its check needs: the service principal id, display name,
template, instance key and labels, and - for the credential-quarantine restart - the Key Vault
references from its notes (names, never values).
"""

from __future__ import annotations

from typing import Any

from core import errors, odata, steps
from core.graph import applications as apps

#: the properties one page asks for (the check needs no more)
PAGE_SELECT = "id,displayName,applicationTemplateId,tags,notes"
MAX_PAGE_SIZE = 999


def list_page(ctx: steps.StepContext, cursor: str | None = None, page_size: int = 200) -> dict:
    """One page of the managed fleet: ``{"instances": [...], "nextCursor": link or None}``."""
    if cursor is not None and not (isinstance(cursor, str) and cursor.startswith("https://")):
        raise errors.InvalidRequest([errors.Problem("cursor", "must be the @odata.nextLink of the previous page")])
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise errors.InvalidRequest([errors.Problem("pageSize", f"must be an integer from 1 to {MAX_PAGE_SIZE}")])
    if cursor:
        body = ctx.graph.get(cursor)
    else:
        body = ctx.graph.get("/servicePrincipals", {"$filter": odata.any_eq("tags", ctx.tag), "$select": PAGE_SELECT,
                                                   "$top": str(page_size)})
    instances = [describe(ctx, sp) for sp in body.get("value") or []]
    return {"instances": instances, "nextCursor": body.get("@odata.nextLink") or None}


def describe(ctx: steps.StepContext, sp: dict) -> dict[str, Any]:
    """What the sweep needs of one listed service principal (as :func:`core.steps.list_managed_instances`)."""
    key_prefix, label_prefix = f"{ctx.tag}:key:", f"{ctx.tag}:label:"
    tags = [str(t) for t in sp.get("tags") or []]
    labels = dict(t[len(label_prefix):].split("=", 1) for t in tags if t.startswith(label_prefix) and "=" in t)
    key = next((t[len(key_prefix):] for t in tags if t.startswith(key_prefix)), None)
    instance: dict[str, Any] = {"servicePrincipalId": apps.object_id(sp), "displayName": sp.get("displayName"),
                                "applicationTemplateId": sp.get("applicationTemplateId"), "instanceKey": key,
                                "labels": labels}
    notes = steps.read_notes(ctx, sp.get("notes"))
    if notes and isinstance(notes.get("credentials"), dict):
        instance["credentials"] = notes["credentials"]
        instance["syncAll"] = bool(notes.get("syncAll"))
        if notes.get("notificationEmail"):
            instance["notificationEmail"] = str(notes["notificationEmail"])
    return instance
