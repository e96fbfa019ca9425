"""Applications and service principals: instantiate from a template, find, tag, read, delete.

``instantiate`` is *not* idempotent (every call creates a new pair, displayName is not unique), so
it is sent once, never retried on 5xx by the transport; :mod:`core.steps` looks up before and after.
"""

from __future__ import annotations

from core import odata
from core.graph.transport import GraphClient

SP_SELECT = "id,appId,displayName,applicationTemplateId,tags,appRoles"


def object_id(obj: dict) -> str:
    """``id``, or the legacy ``objectId`` that beta instantiate examples show."""
    return str(obj.get("id") or obj.get("objectId") or "")


def instantiate(client: GraphClient, template_id: str, display_name: str) -> dict:
    """POST ``/applicationTemplates/{id}/instantiate``; returns ``{application, servicePrincipal}``."""
    return client.post(f"/applicationTemplates/{template_id}/instantiate", {"displayName": display_name},
                       idempotent=False) or {}


def find_service_principals(client: GraphClient, *clauses: str, select: str = SP_SELECT) -> list[dict]:
    """Service principals matching every filter clause (built with :mod:`core.odata`), all pages."""
    return client.get_all("/servicePrincipals", {"$filter": odata.and_(*clauses), "$select": select, "$top": "999"})


def get_service_principal(client: GraphClient, sp_id: str, select: str = SP_SELECT) -> dict:
    """One service principal by object id (NotFound while it has not replicated yet)."""
    return client.get(f"/servicePrincipals/{sp_id}", {"$select": select})


def get_application(client: GraphClient, app_object_id: str, select: str = "id,appId,displayName") -> dict:
    """One application registration by object id."""
    return client.get(f"/applications/{app_object_id}", {"$select": select})


def find_application_by_app_id(client: GraphClient, app_id: str) -> dict:
    """The application registration behind a service principal (``appId`` alternate key)."""
    return client.get(f"/applications(appId='{app_id}')", {"$select": "id,appId,displayName"})


def set_service_principal_tags(client: GraphClient, sp_id: str, tags: list[str]) -> None:
    """PATCH the complete tag list (collections are replaced wholesale, so send existing + new)."""
    client.patch(f"/servicePrincipals/{sp_id}", {"tags": tags})


def update_service_principal(client: GraphClient, sp_id: str, body: dict) -> None:
    """PATCH some properties (e.g. the complete ``tags`` list and ``notes``) in one write."""
    client.patch(f"/servicePrincipals/{sp_id}", body)


def delete_application(client: GraphClient, app_object_id: str) -> None:
    """DELETE the application (soft delete); its service principal and jobs go with it."""
    client.delete(f"/applications/{app_object_id}")
