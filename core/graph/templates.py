"""Application templates (the Entra app gallery): find by id or exact display name, cached per process.

Why cached: every instance of a batch usually names the same template; the gallery does not change
while a batch runs, so one look-up per process serves them all (the request budget in core/README.md,
"Graph request budget per instance", counts the template look-up as amortised over a batch).
"""

from __future__ import annotations

import threading

from core import errors, odata
from core.graph.transport import GraphClient

_SELECT = "id,displayName,supportedProvisioningTypes,categories,publisher"
_cache: dict[tuple[str, str], dict] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every cached template (tests)."""
    with _lock:
        _cache.clear()


def _remember(client: GraphClient, template: dict) -> dict:
    with _lock:
        _cache[(client.root, "id:" + template["id"].lower())] = template
        _cache[(client.root, "name:" + template["displayName"].casefold())] = template
    return template


def _cached(client: GraphClient, key: str) -> dict | None:
    with _lock:
        return _cache.get((client.root, key))


def get_by_id(client: GraphClient, template_id: str) -> dict:
    """The template with this id; :class:`~core.errors.NotFound` names it when it does not exist."""
    hit = _cached(client, "id:" + template_id.lower())
    if hit:
        return hit
    try:
        template = client.get(f"/applicationTemplates/{template_id}", {"$select": _SELECT})
    except errors.NotFound:
        raise errors.NotFound(f"no application template has id '{template_id}'", code="TemplateNotFound",
                              status=404) from None
    return _remember(client, template)


def find_by_name(client: GraphClient, display_name: str) -> dict:
    """The one template whose displayName equals ``display_name`` (case-insensitive, like Terraform).

    ``eq`` may match loosely, so results are re-checked; zero is NotFound, two or more AmbiguousMatch.
    """
    hit = _cached(client, "name:" + display_name.casefold())
    if hit:
        return hit
    found = client.get_all("/applicationTemplates",
                           {"$filter": odata.eq("displayName", display_name), "$select": _SELECT})
    exact = [t for t in found if str(t.get("displayName", "")).casefold() == display_name.casefold()]
    if not exact:
        raise errors.NotFound(f"no application template is named '{display_name}'", code="TemplateNotFound",
                              status=404)
    if len(exact) > 1:
        raise errors.AmbiguousMatch(
            f"{len(exact)} application templates are named '{display_name}'; give applicationTemplate.id instead",
            ids=[t["id"] for t in exact])
    return _remember(client, exact[0])
