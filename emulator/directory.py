"""The emulated tenant's directory: clients, applications, service principals, people, groups,
owners and app role assignments, as plain JSON dicts shaped like Graph's resources.

One ``Directory`` holds one tenant. It is deterministic under a seed (ids, secrets, population),
serialises to JSON for ``--state-dir`` persistence, and implements the ``DirectoryView`` the
provisioning simulation reads (``get_service_principal``, ``assigned_principals``, ``all_users``,
``all_groups``, ``group_members``). Permission checks and HTTP shapes live in the route modules;
this module enforces only the directory's own rules (existence, duplicates, valid roles).
"""

from __future__ import annotations

import base64
import copy
import random
import string
import uuid
from typing import Any

from emulator import seed_data
from emulator.clock import Clock, iso, parse_iso
from emulator.errors import GraphError, bad_request, not_found
from emulator.permissions import ADMIN_ROLES, GRAPH_APP_ID, GRAPH_APP_ROLES, LEAST_PRIVILEGE_ROLES, graph_app_roles
from emulator.rng import rng_from_state, rng_state

NON_GALLERY_TEMPLATE_ID = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
DEFAULT_ACCESS_ROLE_ID = "00000000-0000-0000-0000-000000000000"
USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"
SP_TYPE = "#microsoft.graph.servicePrincipal"


def check_directory_setting(key: str, value: object) -> None:
    """ValueError unless ``key`` is a directory setting and ``value`` one of its allowed values."""
    if key == "duplicateAssignmentStatus":
        if value not in (400, 409) or isinstance(value, bool):
            raise ValueError("'duplicateAssignmentStatus' must be 400 or 409.")
    elif key in ("instantiateOwnsApplication", "instantiateOwnsServicePrincipal", "filtersIgnoreCase"):
        if not isinstance(value, bool):
            raise ValueError(f"'{key}' must be true or false.")
    elif key == "synchronizationDeniedStatus":
        if value not in (401, 403) or isinstance(value, bool):
            raise ValueError("'synchronizationDeniedStatus' must be 401 or 403.")
    elif key == "unknownTemplateStatus":
        if value not in (400, 404) or isinstance(value, bool):
            raise ValueError("'unknownTemplateStatus' must be 400 or 404.")
    else:
        raise ValueError(f"Unknown directory setting '{key}'.")


class Directory:
    """One tenant's directory state plus the registered OAuth clients."""

    def __init__(self, clock: Clock, seed: int = 0, settings: dict | None = None) -> None:
        self.clock = clock
        self.overrides = dict(settings or {})
        self.settings = {
            # Instantiate by an app-only caller makes it owner of neither the application nor the
            # service principal, by users' reports with a Microsoft reply
            # (https://github.com/microsoftgraph/microsoft-graph-docs/issues/16545,
            # https://github.com/microsoftgraph/msgraph-sdk-powershell/issues/829), while the
            # documentation's OwnedBy wording suggests it would. Default false (harder on the
            # client); true makes the caller owner of that object, for experiments.
            "instantiateOwnsApplication": False,
            "instantiateOwnsServicePrincipal": False,
            # How the synchronization API refuses a caller without permission: 401 UnknownError
            # with an empty message, as users report
            # (https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/8800,
            # https://github.com/microsoft/zerotrustassessment/issues/1382); 403
            # Authorization_RequestDenied, as the directory routes answer, is the alternative.
            "synchronizationDeniedStatus": 401,
            # Graph answers a duplicate app role assignment with 400 Request_BadRequest
            # ("Permission being assigned already exists on the object."); 409 is selectable.
            "duplicateAssignmentStatus": 400,
            # UNCONFIRMED (Graph's filter docs do not say): directory string comparisons in $filter (eq,
            # startswith...) ignore case, as Terraform's case-insensitive recheck of a displayName
            # lookup suggests; false compares exactly.
            "filtersIgnoreCase": True,
            # UNCONFIRMED (the instantiate page lists no error for it): an unknown application template id
            # (GET, instantiate) answers 404 Request_ResourceNotFound, as Graph does for unknown ids
            # elsewhere; 400 Request_BadRequest is the alternative.
            "unknownTemplateStatus": 404,
        }
        self.defaults = dict(self.settings)
        self.settings.update(self.overrides)
        self.reset(seed)

    def is_tenant(self, name: str) -> bool:
        """Whether ``name`` names this tenant in a login URL: its id or its domain (both, as in Entra)."""
        return name.lower() in (self.tenant_id, seed_data.DOMAIN.lower())

    # -- identity of generated things ---------------------------------------------------------
    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _secret(self) -> str:
        alphabet = string.ascii_letters + string.digits + "~._-"
        return "emu~" + "".join(self.rng.choice(alphabet) for _ in range(36))

    def _assignment_id(self) -> str:
        # Real assignment ids are 43-character base64url strings (the response example of
        # https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignedto).
        return base64.urlsafe_b64encode(self.rng.getrandbits(256).to_bytes(32, "big")).decode().rstrip("=")

    # -- seeding ------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Replace everything with the seeded initial tenant (same seed, same ids and secrets)."""
        self.seed = seed
        self.settings = {**self.defaults, **self.overrides}
        self.rng = random.Random(seed)
        self.tenant_id = self.new_id()
        self.signing_key = "".join(self.rng.choice(string.ascii_letters + string.digits) for _ in range(48))
        self.clients: dict[str, dict] = {}
        self.applications: dict[str, dict] = {}
        self.service_principals: dict[str, dict] = {}
        self.users: dict[str, dict] = {}
        self.groups: dict[str, dict] = {}
        self.members: dict[str, list[str]] = {}
        self.owners: dict[str, list[str]] = {}
        self.assignments: dict[str, dict] = {}
        self.deleted: dict[str, dict] = {}
        self.created_at: dict[str, float] = {}
        # PATCHed / deleted applications and service principals, as they were, for lagging read
        # replicas: {object id: [(monotonic time, collection, object before the write)]} (emulator/replication.py)
        self.changes: dict[str, list[tuple[float, str, dict]]] = {}
        graph_sp = self._service_principal(
            app_id=GRAPH_APP_ID, display_name="Microsoft Graph", app_roles=graph_app_roles(), sp_type="Application"
        )
        graph_sp["appOwnerOrganizationId"] = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
        graph_sp["tags"] = []
        self.graph_sp_id = graph_sp["id"]
        self.add_client("Provisioning fleet (workflow app)", LEAST_PRIVILEGE_ROLES, key_vault="readwrite", name="workflow")
        self.add_client("Provisioning admin (permission grants)", ADMIN_ROLES, key_vault="readwrite", name="admin")
        self.add_client("Unprivileged client", [], key_vault="none", name="unprivileged")
        self.add_client("Fleet managed identity", [], key_vault="none", name="managed-identity", sp_type="ManagedIdentity")
        self._seed_people()
        self.created_at = {}  # seeded objects are long replicated: the lag fault never hides them

    def _seed_people(self) -> None:
        by_department: dict[str, list[str]] = {}
        for given, surname, title, department in seed_data.PEOPLE:
            user_id = self.new_id()
            nick = f"{given}.{surname}".lower().replace("'", "").replace(" ", "")
            ascii_nick = nick.encode("ascii", "ignore").decode() or user_id[:8]
            upn = f"{ascii_nick}@{seed_data.DOMAIN}"
            self.users[user_id] = {
                "@odata.type": USER_TYPE,
                "id": user_id,
                "accountEnabled": not given.startswith("Disabled"),
                "businessPhones": [],
                "displayName": f"{given} {surname}",
                "givenName": given,
                "surname": surname,
                "jobTitle": title,
                "department": department,
                "mail": upn,
                "mailNickname": ascii_nick,
                "mobilePhone": None,
                "officeLocation": None,
                "preferredLanguage": "en-US",
                "userPrincipalName": upn,
                "userType": "Member",
            }
            by_department.setdefault(department, []).append(user_id)
        group_ids: dict[str, str] = {}
        for display_name, description, _ in seed_data.GROUPS:
            group_id = self.new_id()
            group_ids[display_name] = group_id
            self.groups[group_id] = {
                "@odata.type": GROUP_TYPE,
                "id": group_id,
                "createdDateTime": iso(self.clock.now().replace(microsecond=0)),
                "description": description,
                "displayName": display_name,
                "groupTypes": [],
                "mail": None,
                "mailEnabled": False,
                "mailNickname": "".join(ch for ch in display_name.lower() if ch.isalnum()),
                "securityEnabled": True,
                "visibility": None,
            }
        for display_name, _, selectors in seed_data.GROUPS:
            members: list[str] = []
            for selector in selectors:
                if selector.startswith("group:"):
                    members.append(group_ids[selector[6:]])
                else:
                    members.extend(by_department.get(selector, []))
            self.members[group_ids[display_name]] = members

    # -- clients ------------------------------------------------------------------------------
    def add_client(
        self,
        display_name: str,
        roles: list[str],
        key_vault: str = "none",
        name: str | None = None,
        client_id: str | None = None,
        secret: str | None = None,
        sp_type: str = "Application",
    ) -> dict:
        """Register an OAuth client with a service principal and Graph app roles granted to it."""
        unknown = [r for r in roles if r not in GRAPH_APP_ROLES]
        if unknown:
            raise bad_request(f"Unknown Graph application permission(s): {', '.join(unknown)}.")
        if key_vault not in ("none", "read", "readwrite"):
            raise bad_request("keyVault must be one of none, read, readwrite.")
        client_id = client_id or self.new_id()
        if client_id in self.clients:
            raise GraphError(409, "Request_MultipleObjectsWithSameKeyValue", f"Client '{client_id}' already exists.")
        sp = self._service_principal(app_id=client_id, display_name=display_name, app_roles=[], sp_type=sp_type)
        sp["tags"] = []
        client = {
            "clientId": client_id,
            "name": name or display_name,
            "displayName": display_name,
            "secret": secret or self._secret(),
            "keyVault": key_vault,
            "servicePrincipalId": sp["id"],
        }
        self.clients[client_id] = client
        for role in roles:
            self.assign(sp["id"], self.graph_sp_id, GRAPH_APP_ROLES[role])
        return client

    def client_by_name(self, name: str) -> dict:
        for client in self.clients.values():
            if client["name"] == name:
                return client
        raise KeyError(name)

    def roles_of(self, sp_id: str) -> list[str]:
        """Graph application permissions granted to a service principal (its token's ``roles``)."""
        graph_roles = {
            r["id"].lower(): r["value"]
            for r in self.service_principals[self.graph_sp_id]["appRoles"]
            if isinstance(r.get("id"), str) and isinstance(r.get("value"), str)
        }
        return sorted(
            graph_roles[a["appRoleId"]]
            for a in self.assignments.values()
            if a["principalId"] == sp_id and a["resourceId"] == self.graph_sp_id and a["appRoleId"] in graph_roles
        )

    # -- applications and service principals --------------------------------------------------
    def _service_principal(
        self,
        app_id: str,
        display_name: str,
        app_roles: list[dict],
        sp_type: str,
        template_id: str | None = None,
        tags: list[str] | None = None,
    ) -> dict:
        sp_id = self.new_id()
        sp = {
            "id": sp_id,
            "deletedDateTime": None,
            "accountEnabled": True,
            "appDisplayName": display_name,
            "appDescription": None,
            "appId": app_id,
            "applicationTemplateId": template_id,
            "appOwnerOrganizationId": self.tenant_id,
            "appRoleAssignmentRequired": template_id is not None,
            "description": None,
            "displayName": display_name,
            "homepage": None,
            "loginUrl": None,
            "logoutUrl": None,
            "notes": None,
            "preferredSingleSignOnMode": None,
            "replyUrls": [],
            "servicePrincipalNames": [app_id],
            "servicePrincipalType": sp_type,
            "signInAudience": "AzureADMyOrg",
            "tags": list(tags or []),
            "appRoles": copy.deepcopy(app_roles),
            "oauth2PermissionScopes": [],
        }
        self.service_principals[sp_id] = sp
        self.created_at[sp_id] = self.clock.monotonic()
        return sp

    def instantiate(self, template: dict, display_name: str, caller_sp_id: str | None) -> tuple[dict, dict]:
        """Create the application + service principal pair for a gallery (or non-gallery) template."""
        template_id = template["id"]
        app_id = self.new_id()
        app_roles = [
            {
                "allowedMemberTypes": ["User"],
                "description": role_name,
                "displayName": role_name,
                "id": self.new_id(),
                "isEnabled": True,
                "origin": "Application",
                "value": None,
            }
            for role_name in ("User", "msiam_access")  # the roles a gallery instance starts with
        ]
        now = iso(self.clock.now().replace(microsecond=0))
        app_object_id = self.new_id()
        application = {
            "id": app_object_id,
            "deletedDateTime": None,
            "appId": app_id,
            "applicationTemplateId": template_id,
            "createdDateTime": now,
            "description": None,
            "displayName": display_name,
            "groupMembershipClaims": None,
            "identifierUris": [],
            "isFallbackPublicClient": None,
            "notes": None,
            "publisherDomain": seed_data.DOMAIN,
            "signInAudience": "AzureADMyOrg",
            "tags": [],
            "api": {
                "oauth2PermissionScopes": [
                    {
                        "adminConsentDescription": f"Allow the application to access {display_name} on behalf of the signed-in user.",
                        "adminConsentDisplayName": f"Access {display_name}",
                        "id": self.new_id(),
                        "isEnabled": True,
                        "type": "User",
                        "userConsentDescription": f"Allow the application to access {display_name} on your behalf.",
                        "userConsentDisplayName": f"Access {display_name}",
                        "value": "user_impersonation",
                    }
                ]
            },
            "appRoles": app_roles,
            "web": {"homePageUrl": template.get("homePageUrl"), "redirectUris": [], "logoutUrl": None},
        }
        self.applications[app_object_id] = application
        self.created_at[app_object_id] = self.clock.monotonic()
        tags = ["WindowsAzureActiveDirectoryIntegratedApp"]
        if template_id == NON_GALLERY_TEMPLATE_ID:
            tags.append("WindowsAzureActiveDirectoryCustomSingleSignOnApplication")
        sp = self._service_principal(app_id, display_name, app_roles, "Application", template_id, tags)
        sp["homepage"] = template.get("homePageUrl")
        if caller_sp_id:
            if self.settings["instantiateOwnsApplication"]:
                self.owners.setdefault(app_object_id, []).append(caller_sp_id)
            if self.settings["instantiateOwnsServicePrincipal"]:
                self.owners.setdefault(sp["id"], []).append(caller_sp_id)
        return copy.deepcopy(application), copy.deepcopy(sp)

    def get_application(self, object_id: str) -> dict:
        app = self.applications.get(object_id)
        if app is None:
            raise not_found(object_id)
        return app

    def application_by_app_id(self, app_id: str) -> dict:
        for app in self.applications.values():
            if app["appId"].lower() == app_id.lower():
                return app
        raise not_found(app_id)

    def get_sp(self, sp_id: str) -> dict:
        sp = self.service_principals.get(sp_id)
        if sp is None:
            raise not_found(sp_id)
        return sp

    def sp_by_app_id(self, app_id: str) -> dict:
        for sp in self.service_principals.values():
            if sp["appId"].lower() == app_id.lower():
                return sp
        raise not_found(app_id)

    def sp_for_application(self, app: dict) -> dict | None:
        for sp in self.service_principals.values():
            if sp["appId"] == app["appId"]:
                return sp
        return None

    def owns(self, caller_sp_id: str | None, object_id: str) -> bool:
        return caller_sp_id is not None and caller_sp_id in self.owners.get(object_id, [])

    def delete_application(self, object_id: str) -> str | None:
        """Soft-delete an application and its service principal; return the deleted SP id (if any)."""
        app = self.get_application(object_id)
        sp = self.sp_for_application(app)
        del self.applications[object_id]
        self._to_bin(app, "#microsoft.graph.application")
        if sp is not None:
            self.delete_service_principal(sp["id"])
            return sp["id"]
        return None

    def delete_service_principal(self, sp_id: str) -> None:
        """Soft-delete a service principal; its app role assignments (both ways) are removed."""
        sp = self.get_sp(sp_id)
        del self.service_principals[sp_id]
        self._to_bin(sp, SP_TYPE)
        for owned in self.owners.values():
            if sp_id in owned:
                owned.remove(sp_id)
        for assignment_id in [
            a["id"] for a in self.assignments.values() if sp_id in (a["principalId"], a["resourceId"])
        ]:
            del self.assignments[assignment_id]

    # -- deleted items (soft delete, restore within 30 days, purge) ---------------------------
    def _to_bin(self, obj: dict, odata_type: str) -> None:
        obj["deletedDateTime"] = iso(self.clock.now())
        self.deleted[obj["id"]] = {"@odata.type": odata_type, **obj}

    def deleted_items(self, odata_type: str) -> list[dict]:
        self._purge_expired()
        return [copy.deepcopy(o) for o in self.deleted.values() if o["@odata.type"] == odata_type]

    def get_deleted(self, object_id: str) -> dict:
        self._purge_expired()
        obj = self.deleted.get(object_id)
        if obj is None:
            raise not_found(object_id)
        return obj

    def restore(self, object_id: str) -> dict:
        """Restore a soft-deleted application or service principal (owners kept, assignments not)."""
        obj = self.get_deleted(object_id)
        restored = {k: v for k, v in obj.items() if k != "@odata.type"}
        restored["deletedDateTime"] = None
        if obj["@odata.type"] == SP_TYPE:
            if any(sp["appId"] == restored["appId"] for sp in self.service_principals.values()):
                raise bad_request(f"A service principal for appId '{restored['appId']}' already exists.")
            self.service_principals[object_id] = restored
        else:
            self.applications[object_id] = restored
        del self.deleted[object_id]
        return copy.deepcopy(obj | {"deletedDateTime": None})

    def purge(self, object_id: str) -> None:
        self.get_deleted(object_id)
        del self.deleted[object_id]
        self.owners.pop(object_id, None)

    def _purge_expired(self) -> None:
        # DOC: soft-deleted applications can be restored within 30 days, then they are purged.
        limit = self.clock.now().timestamp() - 30 * 86400
        for object_id in [i for i, o in self.deleted.items() if parse_iso(o["deletedDateTime"]).timestamp() < limit]:
            del self.deleted[object_id]
            self.owners.pop(object_id, None)

    # -- people -------------------------------------------------------------------------------
    def get_user(self, user_id: str) -> dict:
        user = self.users.get(user_id) or next(
            (u for u in self.users.values() if u["userPrincipalName"].lower() == user_id.lower()), None
        )
        if user is None:
            raise not_found(user_id)
        return user

    def get_group(self, group_id: str) -> dict:
        group = self.groups.get(group_id)
        if group is None:
            raise not_found(group_id)
        return group

    def directory_object(self, object_id: str) -> dict | None:
        if object_id in self.users:
            return self.users[object_id]
        if object_id in self.groups:
            return self.groups[object_id]
        if object_id in self.service_principals:
            return {"@odata.type": SP_TYPE, **self.service_principals[object_id]}
        return None

    # -- app role assignments -----------------------------------------------------------------
    def assign(self, principal_id: str, resource_id: str, app_role_id: str) -> dict:
        """Create an app role assignment with Graph's validation rules; return it."""
        resource = self.get_sp(resource_id)
        principal = self.directory_object(principal_id)
        if principal is None:
            raise not_found(principal_id)
        principal_type = {USER_TYPE: "User", GROUP_TYPE: "Group", SP_TYPE: "ServicePrincipal"}[principal["@odata.type"]]
        roles = {
            r["id"].lower(): r
            for r in resource.get("appRoles", [])
            if isinstance(r, dict) and isinstance(r.get("id"), str) and r.get("isEnabled", True)
        }
        if app_role_id != DEFAULT_ACCESS_ROLE_ID or roles:
            role = roles.get(app_role_id)
            if role is None:
                raise bad_request(f"Permission being assigned was not found on application '{resource['appId']}'.")
            member_type = "Application" if principal_type == "ServicePrincipal" else "User"
            if member_type not in (role.get("allowedMemberTypes") or []):
                raise bad_request(
                    f"The app role '{app_role_id}' cannot be assigned to a principal of type '{principal_type}'."
                )
        for existing in self.assignments.values():
            if (existing["principalId"], existing["resourceId"], existing["appRoleId"]) == (
                principal_id,
                resource_id,
                app_role_id,
            ):
                if self.settings["duplicateAssignmentStatus"] == 409:
                    raise GraphError(
                        409,
                        "Request_MultipleObjectsWithSameKeyValue",
                        "Permission being assigned already exists on the object.",
                    )
                raise bad_request("Permission being assigned already exists on the object.")
        assignment = {
            "id": self._assignment_id(),
            "deletedDateTime": None,
            "appRoleId": app_role_id,
            "createdDateTime": iso(self.clock.now()),
            "principalDisplayName": principal.get("displayName"),
            "principalId": principal_id,
            "principalType": principal_type,
            "resourceDisplayName": resource["displayName"],
            "resourceId": resource_id,
        }
        self.assignments[assignment["id"]] = assignment
        return copy.deepcopy(assignment)

    def unassign(self, assignment_id: str, *, principal_id: str | None = None, resource_id: str | None = None) -> None:
        assignment = self.assignments.get(assignment_id)
        if assignment is None or (principal_id and assignment["principalId"] != principal_id) or (
            resource_id and assignment["resourceId"] != resource_id
        ):
            raise not_found(assignment_id)
        del self.assignments[assignment_id]

    # -- DirectoryView (consumed by the provisioning simulation) ------------------------------
    def get_service_principal(self, sp_id: str) -> dict | None:
        sp = self.service_principals.get(sp_id)
        return copy.deepcopy(sp) if sp else None

    def assigned_principals(self, sp_id: str) -> list[dict]:
        seen: list[dict] = []
        ids: set[str] = set()
        for assignment in self.assignments.values():
            if assignment["resourceId"] == sp_id and assignment["principalId"] not in ids:
                obj = self.directory_object(assignment["principalId"])
                if obj is not None and obj["@odata.type"] in (USER_TYPE, GROUP_TYPE):
                    ids.add(assignment["principalId"])
                    seen.append(copy.deepcopy(obj))
        return seen

    def put_app_role(self, sp_id: str, role: dict) -> None:
        """A role-import job's write: add the appRole to the SP, or replace the one with the same id."""
        sp = self.service_principals.get(sp_id)
        if sp is None:
            return  # deleted meanwhile: nothing to write to
        roles = sp.setdefault("appRoles", [])
        for index, existing in enumerate(roles):
            if isinstance(existing, dict) and existing.get("id") == role["id"]:
                roles[index] = copy.deepcopy(role)
                return
        roles.append(copy.deepcopy(role))

    def all_users(self) -> list[dict]:
        return [copy.deepcopy(u) for u in self.users.values()]

    def all_groups(self) -> list[dict]:
        return [copy.deepcopy(g) for g in self.groups.values()]

    def group_members(self, group_id: str) -> list[dict]:
        result = []
        for member_id in self.members.get(group_id, []):
            obj = self.directory_object(member_id)
            if obj is not None:
                result.append(copy.deepcopy(obj))
        return result

    # -- persistence --------------------------------------------------------------------------
    _STATE_FIELDS = (
        "seed", "tenant_id", "signing_key", "clients", "applications", "service_principals", "users",
        "groups", "members", "owners", "assignments", "graph_sp_id", "deleted",
    )

    def to_state(self) -> dict[str, Any]:
        state = {name: copy.deepcopy(getattr(self, name)) for name in self._STATE_FIELDS}
        state["rng"] = rng_state(self.rng)
        state["settings"] = dict(self.settings)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        for name in self._STATE_FIELDS:
            setattr(self, name, copy.deepcopy(state.get(name, {}) if name == "deleted" else state[name]))
        self.rng.setstate(rng_from_state(state["rng"]))
        # Settings changed at runtime survive a restart; those this start names (--settings) win.
        saved = state.get("settings", {})
        self.settings.update({k: v for k, v in saved.items() if k in self.defaults})
        self.settings.update(self.overrides)
        # Objects restored from disk are long replicated.
        self.created_at = {}
        self.changes = {}

