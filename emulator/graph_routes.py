"""Microsoft Graph routes (``/v1.0`` and ``/beta``): directory objects, app role assignments,
owners, and the synchronization / provisioning-log paths delegated to the provisioning simulation.

Each handler is synchronous and works on in-memory state; the server does the async parts
(authentication, throttling, latency, body reading) before calling ``dispatch``. Handlers check
permissions themselves because ``Application.ReadWrite.OwnedBy`` depends on the target object.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from emulator import odata, permissions
from emulator.errors import GraphError, bad_request, not_found
from emulator.identity import Caller
from emulator.state import EmulatorState

GUIDISH = r"[^/()]+"


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict = field(default_factory=dict)


@dataclass
class GraphRequest:
    """One Graph call after authentication, as the handlers see it."""

    method: str
    version: str
    path: str
    query: dict[str, str]
    raw_body: bytes
    origin: str
    caller: Caller
    state: EmulatorState
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def directory(self):
        return self.state.directory

    @property
    def service(self):
        if self.state.provisioning is None:
            raise GraphError(501, "NotImplemented", "The provisioning simulation is not available in this build.")
        return self.state.provisioning

    def json(self, required: bool = True) -> dict:
        """The body as a JSON object; 400 for malformed JSON or a non-object."""
        if not self.raw_body.strip():
            if required:
                raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
            return {}
        try:
            body = json.loads(self.raw_body)
        except (ValueError, UnicodeDecodeError):
            raise GraphError(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
            ) from None
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "The request payload must be a JSON object.")
        return body

    def require(self, action: str, owned_object: str | None = None) -> None:
        owns = self.directory.owns(self.caller.sp_id, owned_object) if owned_object else None
        permissions.check(action, set(self.caller.roles), owns)

    def context(self, fragment: str) -> str:
        return f"{self.origin}/{self.version}/$metadata#{fragment}"

    def collection(self, items: list[dict], path: str, fragment: str, max_top: int = 999, default_top: int = 100,
                   ignore_case: bool = True, directory: bool = False) -> Reply:
        eventual = False
        if directory:
            eventual = self._advanced_query_allowed()
        body = odata.apply_query(
            items,
            self.query,
            f"{self.origin}/{self.version}/{path}",
            max_top=max_top,
            default_top=default_top,
            context=self.context(fragment),
            ignore_case=ignore_case,
            allow_search=eventual,
        )
        return Reply(200, body)

    def _advanced_query_allowed(self) -> bool:
        """Directory "advanced queries" need ``ConsistencyLevel: eventual`` (reference §6.1).

        ``$count``, ``$search`` and ``$filter`` combined with ``$orderby`` are refused without the
        header (400 Request_UnsupportedQuery; exact messages UNCONFIRMED). With it they are served
        from the same in-memory data (the real index may lag recent writes; the emulator's
        replication-lag fault covers that).
        """
        options = odata.normalize_query(self.query)
        eventual = self.headers.get("consistencylevel", "").lower() == "eventual"
        if eventual:
            return True
        if str(options.get("$count", "")).lower() == "true":
            raise GraphError(400, "Request_UnsupportedQuery", "$count requires the ConsistencyLevel: eventual header.")
        if "$search" in options:
            raise GraphError(400, "Request_UnsupportedQuery", "$search requires the ConsistencyLevel: eventual header.")
        if "$filter" in options and "$orderby" in options:
            raise GraphError(400, "Request_UnsupportedQuery", "Sorting not supported for current query.")
        return False

    def entity(self, item: dict, fragment: str) -> Reply:
        options = odata.normalize_query(self.query)
        body = copy.deepcopy(item)
        if options.get("$select"):
            body = odata.select_fields(body, options["$select"])
        return Reply(200, {"@odata.context": self.context(fragment + "/$entity"), **body})

    # -- replication lag ----------------------------------------------------------------------
    def visible(self, object_id: str) -> None:
        """404 while a newly created object is still "replicating" (fault setting)."""
        created = self.directory.created_at.get(object_id)
        if self.state.faults.hidden(object_id, created):
            raise not_found(object_id)

    def recently_created(self, object_id: str) -> bool:
        lag = self.state.faults.config["replicationLag"]["seconds"]
        created = self.directory.created_at.get(object_id)
        return bool(lag and created is not None and self.state.clock.monotonic() - created < lag)


# -- applicationTemplates -----------------------------------------------------------------------

def list_templates(req: GraphRequest) -> Reply:
    req.require("templates.read")
    return req.collection(req.state.templates(), "applicationTemplates", "applicationTemplates", default_top=999)


def get_template(req: GraphRequest, template_id: str) -> Reply:
    req.require("templates.read")
    template = req.state.find_template(template_id)
    if template is None:
        raise not_found(template_id)
    return req.entity(template, "applicationTemplates")


def instantiate(req: GraphRequest, template_id: str) -> Reply:
    req.require("instantiate")
    body = req.json()
    display_name = body.get("displayName")
    if display_name is None:
        raise bad_request("Required property 'displayName' is missing.")
    if not isinstance(display_name, str) or not display_name.strip():
        raise bad_request("Property 'displayName' must be a non-empty string.")
    if len(display_name) > 256:
        raise bad_request("Property 'displayName' exceeds the maximum length of 256 characters.")
    template = req.state.find_template(template_id)
    if template is None:
        raise not_found(template_id)
    application, sp = req.directory.instantiate(template, display_name, req.caller.sp_id)
    if req.state.provisioning is not None:
        req.state.provisioning.on_instantiate(template["id"], sp["id"])
    failure = req.state.faults.instantiate_failure()
    if failure is not None:
        raise failure  # the objects exist anyway, as with the real 504/404-but-created bug
    return Reply(
        201,
        {
            "@odata.context": req.context("microsoft.graph.applicationServicePrincipal"),
            "application": application,
            "servicePrincipal": sp,
        },
    )


# -- applications and service principals ----------------------------------------------------------

_SP_WRITABLE = {
    "accountEnabled": bool, "appRoleAssignmentRequired": bool, "description": (str, type(None)),
    "displayName": str, "homepage": (str, type(None)), "loginUrl": (str, type(None)),
    "logoutUrl": (str, type(None)), "notes": (str, type(None)), "notificationEmailAddresses": list,
    "preferredSingleSignOnMode": (str, type(None)), "replyUrls": list, "tags": list,
    "servicePrincipalNames": list, "appRoles": list,
}
_APP_WRITABLE = {
    "displayName": str, "description": (str, type(None)), "notes": (str, type(None)), "tags": list,
    "identifierUris": list, "web": dict, "api": dict, "appRoles": list, "signInAudience": str,
    "groupMembershipClaims": (str, type(None)), "isFallbackPublicClient": (bool, type(None)),
}


def _patch(obj: dict, body: dict, writable: dict) -> None:
    updates = {}
    for key, value in body.items():
        if key.startswith("@odata."):
            continue
        if key not in writable:
            if key in obj:
                raise bad_request(f"Property '{key}' is read-only and cannot be set.")
            raise bad_request(f"Property '{key}' does not exist as a declared property or extension property.")
        if not isinstance(value, writable[key]):
            raise bad_request(f"Invalid value for property '{key}'.")
        if key in ("tags", "replyUrls", "servicePrincipalNames", "identifierUris", "notificationEmailAddresses"):
            if not all(isinstance(v, str) for v in value):
                raise bad_request(f"Property '{key}' must be a collection of strings.")
        if key == "displayName" and not value.strip():
            raise bad_request("Property 'displayName' must be a non-empty string.")
        updates[key] = copy.deepcopy(value)
    obj.update(updates)


def list_applications(req: GraphRequest) -> Reply:
    req.require("apps.read")
    items = [a for a in req.directory.applications.values() if not req.recently_created(a["id"])]
    return req.collection(items, "applications", "applications", directory=True)


def _application(req: GraphRequest, object_id: str) -> dict:
    app = req.directory.get_application(object_id)
    req.visible(object_id)
    return app


def get_application(req: GraphRequest, object_id: str) -> Reply:
    req.require("apps.read")
    return req.entity(_application(req, object_id), "applications")


def patch_application(req: GraphRequest, object_id: str) -> Reply:
    app = _application(req, object_id)
    req.require("apps.write", owned_object=object_id)
    _patch(app, req.json(), _APP_WRITABLE)
    return Reply(204)


def delete_application(req: GraphRequest, object_id: str) -> Reply:
    _application(req, object_id)
    req.require("apps.write", owned_object=object_id)
    sp_id = req.directory.delete_application(object_id)
    if sp_id and req.state.provisioning is not None:
        req.state.provisioning.on_service_principal_deleted(sp_id)
    return Reply(204)


def list_service_principals(req: GraphRequest) -> Reply:
    req.require("apps.read")
    items = [s for s in req.directory.service_principals.values() if not req.recently_created(s["id"])]
    return req.collection(items, "servicePrincipals", "servicePrincipals", directory=True)


def _sp(req: GraphRequest, sp_id: str) -> dict:
    sp = req.directory.get_sp(sp_id)
    req.visible(sp_id)
    return sp


def get_service_principal(req: GraphRequest, sp_id: str) -> Reply:
    req.require("apps.read")
    return req.entity(_sp(req, sp_id), "servicePrincipals")


def patch_service_principal(req: GraphRequest, sp_id: str) -> Reply:
    sp = _sp(req, sp_id)
    req.require("apps.write", owned_object=sp_id)
    _patch(sp, req.json(), _SP_WRITABLE)
    return Reply(204)


def delete_service_principal(req: GraphRequest, sp_id: str) -> Reply:
    _sp(req, sp_id)
    req.require("apps.write", owned_object=sp_id)
    req.directory.delete_service_principal(sp_id)
    if req.state.provisioning is not None:
        req.state.provisioning.on_service_principal_deleted(sp_id)
    return Reply(204)


def _owners(req: GraphRequest, object_id: str) -> list[dict]:
    result = []
    for owner_id in req.directory.owners.get(object_id, []):
        obj = req.directory.directory_object(owner_id)
        if obj is not None:
            result.append(obj)
    return result


def list_sp_owners(req: GraphRequest, sp_id: str) -> Reply:
    req.require("apps.read")
    _sp(req, sp_id)
    return req.collection(_owners(req, sp_id), f"servicePrincipals/{sp_id}/owners", "directoryObjects")


def list_app_owners(req: GraphRequest, object_id: str) -> Reply:
    req.require("apps.read")
    _application(req, object_id)
    return req.collection(_owners(req, object_id), f"applications/{object_id}/owners", "directoryObjects")


_REF_RE = re.compile(r"/directoryObjects/([^/?]+)$|^([0-9a-fA-F-]{36})$")


def _add_owner(req: GraphRequest, object_id: str) -> Reply:
    req.require("apps.write", owned_object=object_id)
    ref = req.json().get("@odata.id")
    match = _REF_RE.search(ref) if isinstance(ref, str) else None
    if not match:
        raise bad_request("Property '@odata.id' must reference a directory object, e.g. https://graph.microsoft.com/v1.0/directoryObjects/{id}.")
    owner_id = match.group(1) or match.group(2)
    if req.directory.directory_object(owner_id) is None:
        raise not_found(owner_id)
    owners = req.directory.owners.setdefault(object_id, [])
    if owner_id in owners:
        raise bad_request("One or more added object references already exist for the following modified properties: 'owners'.")
    owners.append(owner_id)
    return Reply(204)


def add_sp_owner(req: GraphRequest, sp_id: str) -> Reply:
    _sp(req, sp_id)
    return _add_owner(req, sp_id)


def add_app_owner(req: GraphRequest, object_id: str) -> Reply:
    _application(req, object_id)
    return _add_owner(req, object_id)


def remove_sp_owner(req: GraphRequest, sp_id: str, owner_id: str) -> Reply:
    _sp(req, sp_id)
    req.require("apps.write", owned_object=sp_id)
    owners = req.directory.owners.get(sp_id, [])
    if owner_id not in owners:
        raise not_found(owner_id)
    owners.remove(owner_id)
    return Reply(204)


# -- app role assignments -------------------------------------------------------------------------

def _assignments(req: GraphRequest, **match: str) -> list[dict]:
    return [a for a in req.directory.assignments.values() if all(a[k] == v for k, v in match.items())]


def list_assigned_to(req: GraphRequest, sp_id: str) -> Reply:
    req.require("assignments.read")
    _sp(req, sp_id)
    return req.collection(
        _assignments(req, resourceId=sp_id), f"servicePrincipals/{sp_id}/appRoleAssignedTo",
        f"servicePrincipals('{sp_id}')/appRoleAssignedTo",
    )


def _assignment_body(req: GraphRequest) -> tuple[str, str, str]:
    body = req.json()
    values = []
    for name in ("principalId", "resourceId", "appRoleId"):
        value = body.get(name)
        if value is None:
            raise bad_request(f"Required property '{name}' is missing.")
        if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F-]{36}", value):
            raise bad_request(f"Invalid value specified for property '{name}' of resource 'AppRoleAssignment'.")
        values.append(value.lower())
    return values[0], values[1], values[2]


def add_assigned_to(req: GraphRequest, sp_id: str) -> Reply:
    req.require("assignments.write")
    _sp(req, sp_id)
    principal_id, resource_id, role_id = _assignment_body(req)
    if resource_id != sp_id.lower():
        raise bad_request("The resourceId in the request body must match the service principal in the URL.")
    assignment = req.directory.assign(principal_id, resource_id, role_id)
    return Reply(201, {"@odata.context": req.context(f"servicePrincipals('{sp_id}')/appRoleAssignedTo/$entity"), **assignment})


def remove_assigned_to(req: GraphRequest, sp_id: str, assignment_id: str) -> Reply:
    req.require("assignments.write")
    _sp(req, sp_id)
    req.directory.unassign(assignment_id, resource_id=sp_id)
    return Reply(204)


def list_assignments(req: GraphRequest, sp_id: str) -> Reply:
    req.require("assignments.read")
    _sp(req, sp_id)
    return req.collection(
        _assignments(req, principalId=sp_id), f"servicePrincipals/{sp_id}/appRoleAssignments",
        f"servicePrincipals('{sp_id}')/appRoleAssignments",
    )


def add_assignment(req: GraphRequest, sp_id: str) -> Reply:
    req.require("assignments.write")
    _sp(req, sp_id)
    principal_id, resource_id, role_id = _assignment_body(req)
    if principal_id != sp_id.lower():
        raise bad_request("The principalId in the request body must match the service principal in the URL.")
    assignment = req.directory.assign(principal_id, resource_id, role_id)
    return Reply(201, {"@odata.context": req.context(f"servicePrincipals('{sp_id}')/appRoleAssignments/$entity"), **assignment})


def remove_assignment(req: GraphRequest, sp_id: str, assignment_id: str) -> Reply:
    req.require("assignments.write")
    _sp(req, sp_id)
    req.directory.unassign(assignment_id, principal_id=sp_id)
    return Reply(204)


# -- users and groups ---------------------------------------------------------------------------

def list_users(req: GraphRequest) -> Reply:
    req.require("directory.read")
    return req.collection(list(req.directory.users.values()), "users", "users", directory=True)


def get_user(req: GraphRequest, user_id: str) -> Reply:
    req.require("directory.read")
    return req.entity(req.directory.get_user(user_id), "users")


def list_groups(req: GraphRequest) -> Reply:
    req.require("directory.read")
    return req.collection(list(req.directory.groups.values()), "groups", "groups", directory=True)


def get_group(req: GraphRequest, group_id: str) -> Reply:
    req.require("directory.read")
    return req.entity(req.directory.get_group(group_id), "groups")


def list_group_members(req: GraphRequest, group_id: str) -> Reply:
    req.require("directory.read")
    req.directory.get_group(group_id)
    return req.collection(req.directory.group_members(group_id), f"groups/{group_id}/members", "directoryObjects", directory=True)


# -- synchronization (delegated to the provisioning simulation) ----------------------------------

def _sync_target(req: GraphRequest, sp_id: str, write: bool) -> None:
    req.directory.get_sp(sp_id)
    req.visible(sp_id)
    req.require("sync.write" if write else "sync.read", owned_object=sp_id)


def _job_visible(req: GraphRequest, job_id: str) -> None:
    req.visible(job_id)


def sync_templates(req: GraphRequest, sp_id: str) -> Reply:
    _sync_target(req, sp_id, write=False)
    return req.collection(req.service.list_templates(sp_id), f"servicePrincipals/{sp_id}/synchronization/templates",
                          f"servicePrincipals('{sp_id}')/synchronization/templates")


def sync_template(req: GraphRequest, sp_id: str, template_id: str) -> Reply:
    _sync_target(req, sp_id, write=False)
    template = req.service.get_template(sp_id, template_id)
    return req.entity(template, f"servicePrincipals('{sp_id}')/synchronization/templates")


def list_jobs(req: GraphRequest, sp_id: str) -> Reply:
    _sync_target(req, sp_id, write=False)
    return req.collection(req.service.list_jobs(sp_id), f"servicePrincipals/{sp_id}/synchronization/jobs",
                          f"servicePrincipals('{sp_id}')/synchronization/jobs")


def create_job(req: GraphRequest, sp_id: str) -> Reply:
    _sync_target(req, sp_id, write=True)
    job = req.service.create_job(sp_id, req.json())
    req.directory.created_at[job["id"]] = req.state.clock.monotonic()
    return Reply(201, {"@odata.context": req.context(f"servicePrincipals('{sp_id}')/synchronization/jobs/$entity"), **job})


def get_job(req: GraphRequest, sp_id: str, job_id: str) -> Reply:
    _sync_target(req, sp_id, write=False)
    job = req.service.get_job(sp_id, job_id)
    _job_visible(req, job_id)
    return req.entity(job, f"servicePrincipals('{sp_id}')/synchronization/jobs")


def delete_job(req: GraphRequest, sp_id: str, job_id: str) -> Reply:
    _sync_target(req, sp_id, write=True)
    req.service.delete_job(sp_id, job_id)
    return Reply(204)


def _job_action(action: str) -> Callable[..., Reply]:
    def handler(req: GraphRequest, sp_id: str, job_id: str) -> Reply:
        _sync_target(req, sp_id, write=True)
        _job_visible(req, job_id)
        if action == "start":
            req.service.start_job(sp_id, job_id)
        elif action == "pause":
            req.service.pause_job(sp_id, job_id)
        elif action == "restart":
            req.service.restart_job(sp_id, job_id, req.json(required=False))
        else:
            req.service.validate_credentials(sp_id, job_id, req.json())
        return Reply(204)

    handler.__name__ = f"job_{action}"
    return handler


def validate_without_job(req: GraphRequest, sp_id: str) -> Reply:
    _sync_target(req, sp_id, write=True)
    req.service.validate_credentials(sp_id, None, req.json())
    return Reply(204)


def get_schema(req: GraphRequest, sp_id: str, job_id: str) -> Reply:
    _sync_target(req, sp_id, write=False)
    _job_visible(req, job_id)
    schema = req.service.get_schema(sp_id, job_id)
    return Reply(200, {"@odata.context": req.context(f"servicePrincipals('{sp_id}')/synchronization/jobs('{job_id}')/schema/$entity"), **schema})


def put_schema(req: GraphRequest, sp_id: str, job_id: str) -> Reply:
    _sync_target(req, sp_id, write=True)
    _job_visible(req, job_id)
    req.service.put_schema(sp_id, job_id, req.json())
    return Reply(204)


def provision_on_demand(req: GraphRequest, sp_id: str, job_id: str) -> Reply:
    _sync_target(req, sp_id, write=True)
    _job_visible(req, job_id)
    result = req.service.provision_on_demand(sp_id, job_id, req.json())
    return Reply(200, {"@odata.context": req.context("microsoft.graph.stringKeyStringValuePair"), **result})


def put_secrets(req: GraphRequest, sp_id: str) -> Reply:
    _sync_target(req, sp_id, write=True)
    req.service.put_secrets(sp_id, req.json())
    return Reply(204)


def get_secrets(req: GraphRequest, sp_id: str) -> Reply:
    _sync_target(req, sp_id, write=False)
    body = req.service.get_secrets(sp_id)
    return Reply(200, {"@odata.context": req.context(f"servicePrincipals('{sp_id}')/synchronization/secrets"), **body})


def provisioning_logs(req: GraphRequest) -> Reply:
    req.require("auditlogs.read")
    rows = req.service.provisioning_logs(req.version)
    return req.collection(rows, "auditLogs/provisioning", "auditLogs/provisioning", max_top=1000, default_top=50)


# -- route table ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern
    handler: Callable[..., Reply]
    name: str
    budget: str | None  # throttling bucket beyond "writes": "reports" or "provisionOnDemand"


def _route(method: str, template: str, handler: Callable[..., Reply], budget: str | None = None) -> Route:
    regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>{GUIDISH})", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
    return Route(method, re.compile(f"^{regex}$"), handler, template, budget)


SYNC = "servicePrincipals/{sp_id}/synchronization"
JOB = SYNC + "/jobs/{job_id}"
ROUTES: list[Route] = [
    _route("GET", "applicationTemplates", list_templates),
    _route("GET", "applicationTemplates/{template_id}", get_template),
    _route("POST", "applicationTemplates/{template_id}/instantiate", instantiate),
    _route("GET", "applications", list_applications),
    _route("GET", "applications/{object_id}", get_application),
    _route("PATCH", "applications/{object_id}", patch_application),
    _route("DELETE", "applications/{object_id}", delete_application),
    _route("GET", "applications/{object_id}/owners", list_app_owners),
    _route("POST", "applications/{object_id}/owners/$ref", add_app_owner),
    _route("GET", "servicePrincipals", list_service_principals),
    _route("GET", "servicePrincipals/{sp_id}", get_service_principal),
    _route("PATCH", "servicePrincipals/{sp_id}", patch_service_principal),
    _route("DELETE", "servicePrincipals/{sp_id}", delete_service_principal),
    _route("GET", "servicePrincipals/{sp_id}/owners", list_sp_owners),
    _route("POST", "servicePrincipals/{sp_id}/owners/$ref", add_sp_owner),
    _route("DELETE", "servicePrincipals/{sp_id}/owners/{owner_id}/$ref", remove_sp_owner),
    _route("GET", "servicePrincipals/{sp_id}/appRoleAssignedTo", list_assigned_to),
    _route("POST", "servicePrincipals/{sp_id}/appRoleAssignedTo", add_assigned_to),
    _route("DELETE", "servicePrincipals/{sp_id}/appRoleAssignedTo/{assignment_id}", remove_assigned_to),
    _route("GET", "servicePrincipals/{sp_id}/appRoleAssignments", list_assignments),
    _route("POST", "servicePrincipals/{sp_id}/appRoleAssignments", add_assignment),
    _route("DELETE", "servicePrincipals/{sp_id}/appRoleAssignments/{assignment_id}", remove_assignment),
    _route("GET", SYNC + "/templates", sync_templates),
    _route("GET", SYNC + "/templates/{template_id}", sync_template),
    _route("GET", SYNC + "/jobs", list_jobs),
    _route("POST", SYNC + "/jobs", create_job),
    _route("POST", SYNC + "/jobs/validateCredentials", validate_without_job),
    _route("GET", JOB, get_job),
    _route("DELETE", JOB, delete_job),
    _route("POST", JOB + "/start", _job_action("start")),
    _route("POST", JOB + "/pause", _job_action("pause")),
    _route("POST", JOB + "/restart", _job_action("restart")),
    _route("POST", JOB + "/validateCredentials", _job_action("validateCredentials")),
    _route("GET", JOB + "/schema", get_schema),
    _route("PUT", JOB + "/schema", put_schema),
    _route("POST", JOB + "/provisionOnDemand", provision_on_demand, budget="provisionOnDemand"),
    _route("PUT", SYNC + "/secrets", put_secrets),
    _route("GET", SYNC + "/secrets", get_secrets),
    _route("GET", "auditLogs/provisioning", provisioning_logs, budget="reports"),
    _route("GET", "users", list_users),
    _route("GET", "users/{user_id}", get_user),
    _route("GET", "groups", list_groups),
    _route("GET", "groups/{group_id}", get_group),
    _route("GET", "groups/{group_id}/members", list_group_members),
]

_ALTERNATE_KEY = re.compile(r"^(servicePrincipals|applications)\(appId='((?:[^']|'')*)'\)(/.*)?$")


def resolve_alternate_key(path: str, state: EmulatorState) -> str:
    """Rewrite ``servicePrincipals(appId='...')`` / ``applications(appId='...')`` to object ids."""
    match = _ALTERNATE_KEY.match(path)
    if not match:
        return path
    collection, app_id, rest = match.group(1), match.group(2).replace("''", "'"), match.group(3) or ""
    if collection == "servicePrincipals":
        object_id = state.directory.sp_by_app_id(app_id)["id"]
    else:
        object_id = state.directory.application_by_app_id(app_id)["id"]
    return f"{collection}/{object_id}{rest}"


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """Find the route; 405 for a known path with another method, 400 like Graph otherwise."""
    path_matched = False
    for route in ROUTES:
        found = route.pattern.match(path)
        if found:
            if route.method == method:
                return route, found.groupdict()
            path_matched = True
    if path_matched:
        raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request uri.")
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{_first_unknown_segment(path)}'.")


def _first_unknown_segment(path: str) -> str:
    """The first path segment no route knows at its position (what Graph's message names)."""
    segments = [s for s in path.split("/") if s] or [""]
    known = 0
    for route in ROUTES:
        template = route.name.split("/")
        depth = 0
        for have, want in zip(segments, template):
            if not (want.startswith("{") or want == have):
                break
            depth += 1
        known = max(known, depth)
    return segments[min(known, len(segments) - 1)]


_IDENTITY_COLLECTIONS = ("applications", "servicePrincipals", "users", "groups")


def resource_units(method: str, route: Route, query: dict[str, str]) -> int | None:
    """The ``x-ms-resource-unit`` cost of an identity-and-access request (reference §5.2), or None.

    Base cost: GET applications / users / servicePrincipals/{id}/appRoleAssignments = 2, other
    GETs 1, writes 1; ``$select`` -1, ``$expand`` +1, ``$top`` under 20 -1; at least 1.
    Synchronization and audit-log paths are not identity-and-access resources.
    """
    name = route.name
    if not name.startswith(_IDENTITY_COLLECTIONS) or "/synchronization" in name:
        return None
    if method != "GET":
        return 1
    costly = name.split("/")[0] in ("applications", "users") or name.endswith("/appRoleAssignments")
    cost = 2 if costly else 1
    options = odata.normalize_query(query)
    if options.get("$select"):
        cost -= 1
    if options.get("$expand"):
        cost += 1
    top = options.get("$top", "")
    if top.isdigit() and int(top) < 20:
        cost -= 1
    return max(cost, 1)


def is_write(method: str) -> bool:
    """Writes for the identity write quota: POST/PATCH/PUT/DELETE on directory and sync paths."""
    return method in ("POST", "PATCH", "PUT", "DELETE")
