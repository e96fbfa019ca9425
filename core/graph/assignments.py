"""App role assignments (who is in scope when ``SyncAll`` is false) and user/group look-ups.

Users are named by object id or userPrincipalName, groups by object id or exact displayName.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from core import errors, odata
from core.graph.transport import GraphClient

DEFAULT_ACCESS_ROLE = "00000000-0000-0000-0000-000000000000"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_guid(text: str) -> bool:
    """True for an object id."""
    return bool(_GUID.match(text))


def resolve_user(client: GraphClient, ref: str) -> str:
    """Object id of a user named by id or userPrincipalName (a UPN is an alternate key of /users)."""
    try:
        # Percent-encoded: a guest's UPN holds '#' ("x_y.com#EXT#@..."), which would end the URL path.
        return str(client.get(f"/users/{quote(ref, safe='@')}", {"$select": "id"})["id"])
    except errors.NotFound:
        raise errors.NotFound(f"user '{ref}' does not exist", code="UserNotFound", status=404) from None


def resolve_group(client: GraphClient, ref: str) -> str:
    """Object id of a group named by id or exact displayName (two groups with that name: ambiguous)."""
    if is_guid(ref):
        try:
            return str(client.get(f"/groups/{ref}", {"$select": "id"})["id"])
        except errors.NotFound:
            raise errors.NotFound(f"group '{ref}' does not exist", code="GroupNotFound", status=404) from None
    found = client.get_all("/groups", {"$filter": odata.eq("displayName", ref), "$select": "id,displayName"})
    exact = [g for g in found if str(g.get("displayName", "")).casefold() == ref.casefold()]
    if not exact:
        raise errors.NotFound(f"no group is named '{ref}'", code="GroupNotFound", status=404)
    if len(exact) > 1:
        raise errors.AmbiguousMatch(f"{len(exact)} groups are named '{ref}'; name the group by id",
                                    ids=[g["id"] for g in exact])
    return str(exact[0]["id"])


def pick_app_role(service_principal: dict) -> str:
    """The role to assign: ``User``, else ``msiam_access``, else the first user role, else default access."""
    roles = [r for r in service_principal.get("appRoles") or []
             if r.get("isEnabled", True) and "User" in (r.get("allowedMemberTypes") or ["User"])]
    for wanted in ("User", "msiam_access"):
        for role in roles:
            if role.get("displayName") == wanted or role.get("value") == wanted:
                return str(role["id"])
    return str(roles[0]["id"]) if roles else DEFAULT_ACCESS_ROLE


def find_app_role(service_principal: dict, name: str) -> dict | None:
    """The enabled app role whose ``value`` or ``displayName`` is ``name`` (value first, exact text)."""
    roles = [r for r in service_principal.get("appRoles") or [] if isinstance(r, dict) and r.get("isEnabled", True)]
    for key in ("value", "displayName"):
        for role in roles:
            if role.get(key) == name:
                return role
    return None


def imported_roles(service_principal: dict) -> list[dict]:
    """The enabled app roles defined on the service principal itself (``origin`` ``ServicePrincipal``):
    where a role-import job writes the roles it imports (AWS Single-Account Access:
    https://learn.microsoft.com/entra/identity/saas-apps/amazon-web-service-tutorial; ``origin``:
    https://learn.microsoft.com/graph/api/resources/approle)."""
    return [r for r in service_principal.get("appRoles") or []
            if isinstance(r, dict) and r.get("isEnabled", True) and r.get("origin") == "ServicePrincipal"]


def list_assigned(client: GraphClient, sp_id: str) -> list[dict]:
    """Current app role assignments to the service principal."""
    return client.get_all(f"/servicePrincipals/{sp_id}/appRoleAssignedTo",
                          {"$select": "id,principalId,appRoleId,principalType"})


def assign(client: GraphClient, sp_id: str, principal_id: str, app_role_id: str) -> dict:
    """POST appRoleAssignedTo (201). Not retried on 5xx by the transport; callers list first."""
    body = {"principalId": principal_id, "resourceId": sp_id, "appRoleId": app_role_id}
    return client.post(f"/servicePrincipals/{sp_id}/appRoleAssignedTo", body, idempotent=False) or {}
