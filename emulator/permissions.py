"""Application permissions (Graph app roles) and the app-only permission table Graph enforces.

Source: reference ``graph-provisioning-api.md`` §5.3 (least-privileged and higher permissions per
call) and the permission ids listed there. A requirement is a list of alternatives; each
alternative is a set of roles that must *all* be present (e.g. appRoleAssignedTo needs
AppRoleAssignment.ReadWrite.All **and** one read permission). ``OWNED`` marks alternatives that only
hold for objects the caller owns (``Application.ReadWrite.OwnedBy``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.errors import GraphError

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_AUDIENCE = "https://graph.microsoft.com"
VAULT_AUDIENCE = "https://vault.azure.net"

OWNED_BY = "Application.ReadWrite.OwnedBy"

# Microsoft Graph application permissions (appRole value -> id). The first eight ids are from the
# reference (§5.3); the others are the well-known ids of the same permissions in public code.
GRAPH_APP_ROLES: dict[str, str] = {
    "Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
    "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
    "Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    "Synchronization.ReadWrite.All": "9b50c33d-700f-43b1-b2eb-87e89b703581",
    "Synchronization.Read.All": "5ba43d2f-fa88-4db2-bd1c-a67c5f0fb1ce",
    "AuditLog.Read.All": "b0afded3-3588-46d8-8b3d-9842eff778da",
    "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
    "AppRoleAssignment.ReadWrite.All": "06b708a9-e830-4db3-a914-8e69da51d44f",
    "Directory.ReadWrite.All": "19dbc75e-c2e2-444c-a770-ec69d8559fc7",
    "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
    "Group.Read.All": "5b567255-7703-4780-807c-7be8301ae99b",
    "GroupMember.Read.All": "98830695-27a2-44f7-8c18-0c3ebc9698f6",
}
ROLE_BY_ID = {role_id: value for value, role_id in GRAPH_APP_ROLES.items()}

LEAST_PRIVILEGE_ROLES = ["Application.ReadWrite.All", "Synchronization.ReadWrite.All", "AppRoleAssignment.ReadWrite.All", "AuditLog.Read.All", "Directory.Read.All"]
ADMIN_ROLES = [
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "Directory.ReadWrite.All",
    "Directory.Read.All",
    "Synchronization.ReadWrite.All",
    "AuditLog.Read.All",
]


def graph_app_roles() -> list[dict]:
    """The ``appRoles`` of the Microsoft Graph resource service principal (application type only)."""
    return [
        {
            "allowedMemberTypes": ["Application"],
            "description": f"Allows the app to use {value} without a signed-in user.",
            "displayName": value,
            "id": role_id,
            "isEnabled": True,
            "origin": "Application",
            "value": value,
        }
        for value, role_id in GRAPH_APP_ROLES.items()
    ]


@dataclass(frozen=True)
class Requirement:
    """Alternatives of role sets; ``owned`` alternatives need the caller to own the target."""

    alternatives: tuple[frozenset[str], ...]
    owned: tuple[frozenset[str], ...] = field(default_factory=tuple)


def _req(*alternatives: str | tuple[str, ...], owned: tuple[str | tuple[str, ...], ...] = ()) -> Requirement:
    def as_set(item):
        return frozenset((item,) if isinstance(item, str) else item)

    return Requirement(tuple(as_set(a) for a in alternatives), tuple(as_set(o) for o in owned))


_APP_READ = ("Application.Read.All", OWNED_BY, "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
_APP_WRITE = ("Application.ReadWrite.All", "Directory.ReadWrite.All")

REQUIREMENTS: dict[str, Requirement] = {
    "templates.read": _req(),
    "instantiate": _req(OWNED_BY, *_APP_WRITE),
    "apps.read": _req(*_APP_READ),
    "apps.write": _req(*_APP_WRITE, owned=(OWNED_BY,)),
    "sync.read": _req("Synchronization.Read.All", "Synchronization.ReadWrite.All", *_APP_WRITE, owned=(OWNED_BY,)),
    "sync.write": _req("Synchronization.ReadWrite.All", *_APP_WRITE, owned=(OWNED_BY,)),
    "assignments.read": _req(*_APP_READ),
    "assignments.write": _req(
        *[("AppRoleAssignment.ReadWrite.All", read) for read in _APP_READ if read != OWNED_BY]
    ),
    "directory.read": _req("User.Read.All", "Group.Read.All", "GroupMember.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"),
    "auditlogs.read": _req(("AuditLog.Read.All", "Directory.Read.All"), ("AuditLog.Read.All", "Directory.ReadWrite.All")),
}


def denied() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def check(action: str, roles: set[str], owns_target: bool | None = None) -> None:
    """Raise 403 unless ``roles`` satisfy ``action``.

    ``owns_target`` is whether the caller owns the object concerned; ``None`` means the action has
    no single target (lists), where ``Application.ReadWrite.OwnedBy`` alternatives do not apply.
    """
    requirement = REQUIREMENTS[action]
    if not requirement.alternatives and not requirement.owned:
        return
    if any(alt <= roles for alt in requirement.alternatives):
        return
    if owns_target and any(alt <= roles for alt in requirement.owned):
        return
    raise denied()
