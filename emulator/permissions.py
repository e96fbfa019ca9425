"""Application permissions (Graph app roles) and the app-only permission table Graph enforces.

Each requirement below is taken from the "Permissions" table of the Microsoft Graph API page named
next to it (application permissions, least privileged and higher privileged columns). A requirement
is a list of alternatives; each alternative is a set of roles that must *all* be present (e.g.
appRoleAssignedTo needs AppRoleAssignment.ReadWrite.All **and** a read permission). ``owned``
alternatives hold only for objects the caller owns (``Application.ReadWrite.OwnedBy``). A permission
a page does not list does not grant the call here, even where it might on a real tenant: the
emulator is pessimistic so that what works here works there.

* instantiate: https://learn.microsoft.com/graph/api/applicationtemplate-instantiate
  (Application.ReadWrite.OwnedBy; Application.ReadWrite.All, Directory.ReadWrite.All).
* PATCH / DELETE of service principals and applications:
  https://learn.microsoft.com/graph/api/serviceprincipal-update,
  https://learn.microsoft.com/graph/api/serviceprincipal-delete,
  https://learn.microsoft.com/graph/api/application-update,
  https://learn.microsoft.com/graph/api/application-delete
  (Application.ReadWrite.OwnedBy - owner only; Application.ReadWrite.All, Directory.ReadWrite.All).
* owners: https://learn.microsoft.com/graph/api/application-post-owners,
  https://learn.microsoft.com/graph/api/serviceprincipal-post-owners ("Application.ReadWrite.OwnedBy
  will not be sufficient to add another owner. Consent also to Application.ReadWrite.All.").
* synchronization, writes: https://learn.microsoft.com/graph/api/synchronization-synchronization-post-jobs,
  https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-start,
  https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-validatecredentials,
  https://learn.microsoft.com/graph/api/synchronization-serviceprincipal-put-synchronization,
  https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-delete
  (Application.ReadWrite.OwnedBy - owner of the service principal; Synchronization.ReadWrite.All).
  Reads: https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-get
  (the same plus Synchronization.Read.All). Neither Application.ReadWrite.All nor
  Directory.ReadWrite.All is listed, so neither grants a synchronization call.
* appRoleAssignedTo: https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignedto
  (AppRoleAssignment.ReadWrite.All and Application.Read.All; AppRoleAssignment.ReadWrite.All and
  Directory.Read.All).
* reads of applications and service principals (and their owners and app role assignments):
  https://learn.microsoft.com/graph/api/serviceprincipal-get,
  https://learn.microsoft.com/graph/api/serviceprincipal-list-owners,
  https://learn.microsoft.com/graph/api/serviceprincipal-list-approleassignments (Application.Read.All;
  Application.ReadWrite.OwnedBy - which "allows an app to call GET /applications and GET
  /servicePrincipals to list all" -, Application.ReadWrite.All, Directory.Read(Write).All).
* users and groups: https://learn.microsoft.com/graph/api/user-list (User.Read.All),
  https://learn.microsoft.com/graph/api/group-list-members (GroupMember.Read.All, Group.Read.All),
  each also Directory.Read.All and Directory.ReadWrite.All.
* provisioning logs: https://learn.microsoft.com/graph/api/provisioningobjectsummary-list
  (AuditLog.Read.All and Directory.Read.All; no higher permission).

How a refusal looks: directory calls answer 403 ``Authorization_RequestDenied``; synchronization
calls answer, by users' reports, **401 with code ``UnknownError`` and an empty message**
(https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/8800,
https://github.com/microsoft/zerotrustassessment/issues/1382). The directory setting
``synchronizationDeniedStatus`` (401 default, or 403) picks that answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.errors import GraphError

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_AUDIENCE = "https://graph.microsoft.com"
VAULT_AUDIENCE = "https://vault.azure.net"

OWNED_BY = "Application.ReadWrite.OwnedBy"

# Microsoft Graph application permissions (appRole value -> id). The ids are the ones listed on
# https://learn.microsoft.com/graph/permissions-reference (the same well-known ids appear in public code).
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

# The seeded ``workflow`` client: exactly the permission set the app documents
# (core.permissions.REQUIRED_GRAPH_PERMISSIONS, same order; a test checks they agree), no more.
LEAST_PRIVILEGE_ROLES = [
    "Application.ReadWrite.All",
    "Synchronization.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "AuditLog.Read.All",
    "Directory.Read.All",
]
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
    """Alternatives of role sets; ``owned`` alternatives need the caller to own the target.

    ``synchronization``: a synchronization API call, refused the way that API refuses (see
    :func:`denied`).
    """

    alternatives: tuple[frozenset[str], ...]
    owned: tuple[frozenset[str], ...] = field(default_factory=tuple)
    synchronization: bool = False


def _req(*alternatives: str | tuple[str, ...], owned: tuple[str | tuple[str, ...], ...] = (),
         synchronization: bool = False) -> Requirement:
    def as_set(item):
        return frozenset((item,) if isinstance(item, str) else item)

    return Requirement(tuple(as_set(a) for a in alternatives), tuple(as_set(o) for o in owned), synchronization)


_APP_READ = ("Application.Read.All", OWNED_BY, "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")

REQUIREMENTS: dict[str, Requirement] = {
    "templates.read": _req(),
    # applicationtemplate-instantiate
    "instantiate": _req(OWNED_BY, "Application.ReadWrite.All", "Directory.ReadWrite.All"),
    # application-get / serviceprincipal-get / -list
    "apps.read": _req(*_APP_READ),
    # serviceprincipal-update, serviceprincipal-delete (restore and purge of deleted items alike)
    "servicePrincipals.write": _req("Application.ReadWrite.All", "Directory.ReadWrite.All", owned=(OWNED_BY,)),
    # application-update, application-delete (the delete page lists no Directory.ReadWrite.All)
    "applications.write": _req("Application.ReadWrite.All", owned=(OWNED_BY,)),
    # serviceprincipal-post-owners; application-post-owners adds "OwnedBy will not be sufficient to
    # add another owner", so OwnedBy counts for service principals only
    "servicePrincipals.owners.write": _req(("Application.ReadWrite.All", "Directory.Read.All"), "Directory.ReadWrite.All",
                                           owned=((OWNED_BY, "Directory.Read.All"),)),
    "applications.owners.write": _req(("Application.ReadWrite.All", "Directory.Read.All"), "Directory.ReadWrite.All"),
    # synchronization-synchronizationjob-get (and the other reads)
    "sync.read": _req("Synchronization.Read.All", "Synchronization.ReadWrite.All", owned=(OWNED_BY,),
                      synchronization=True),
    # synchronization-synchronization-post-jobs, -start, -validatecredentials, secrets PUT, ...
    "sync.write": _req("Synchronization.ReadWrite.All", owned=(OWNED_BY,), synchronization=True),
    "assignments.read": _req(*_APP_READ),
    # serviceprincipal-post-approleassignedto (and appRoleAssignments, delete alike)
    "assignments.write": _req(("AppRoleAssignment.ReadWrite.All", "Application.Read.All"),
                              ("AppRoleAssignment.ReadWrite.All", "Directory.Read.All")),
    # user-list / user-get (User.Read.All; Directory.Read.All, Directory.ReadWrite.All): a group
    # permission does not read users
    "users.read": _req("User.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"),
    # group-list / group-get / group-list-members (GroupMember.Read.All; Group.Read.All,
    # Directory.Read.All, Directory.ReadWrite.All)
    "groups.read": _req("GroupMember.Read.All", "Group.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"),
    # provisioningobjectsummary-list: both, no higher alternative
    "auditlogs.read": _req(("AuditLog.Read.All", "Directory.Read.All")),
}


def denied(synchronization: bool = False, sync_status: int = 401) -> GraphError:
    """The refusal: 403 ``Authorization_RequestDenied``, or for synchronization calls (with the
    default ``sync_status``) 401 ``UnknownError`` with an empty message, as users report it."""
    if synchronization and sync_status == 401:
        return GraphError(401, "UnknownError", "")
    return GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def allows(action: str, roles: set[str], owns_target: bool | None = None) -> bool:
    """Whether ``roles`` satisfy ``action``.

    ``owns_target`` is whether the caller owns the object concerned; ``None`` means the action has
    no single target (lists), where ``Application.ReadWrite.OwnedBy`` alternatives do not apply.
    """
    requirement = REQUIREMENTS[action]
    if not requirement.alternatives and not requirement.owned:
        return True
    if any(alt <= roles for alt in requirement.alternatives):
        return True
    return bool(owns_target) and any(alt <= roles for alt in requirement.owned)


def check(action: str, roles: set[str], owns_target: bool | None = None, sync_status: int = 401) -> None:
    """Raise Graph's refusal unless ``roles`` satisfy ``action`` (see :func:`allows`, :func:`denied`)."""
    if not allows(action, roles, owns_target):
        raise denied(REQUIREMENTS[action].synchronization, sync_status)
