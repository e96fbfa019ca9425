"""Graph handlers for directory objects: application templates and instantiate, applications,
service principals, owners, app role assignments, users and groups."""

from __future__ import annotations

import copy
import re

from emulator.errors import bad_request, not_found
from emulator.graph_request import GraphRequest, Reply

# -- applicationTemplates -----------------------------------------------------------------------

# beta's applicationTemplate has these fields besides v1.0's
# (https://learn.microsoft.com/graph/api/resources/applicationtemplate?view=graph-rest-beta) (values are not
# documented for our catalog entries, so empty unless the catalog gives them).
BETA_TEMPLATE_FIELDS = {"configurationUris": [], "deprecationDate": None, "endpoints": []}
# applicationTemplate's v1.0 properties (https://learn.microsoft.com/graph/api/resources/applicationtemplate),
# for the $filter property check.
TEMPLATE_FIELDS = ("id", "displayName", "description", "homePageUrl", "logoUrl", "publisher", "categories",
                   "supportedSingleSignOnModes", "supportedProvisioningTypes")
# $filter on applicationTemplates is limited to displayName and categories ("Optional query
# parameters" of https://learn.microsoft.com/graph/api/applicationtemplate-list).
TEMPLATE_FILTERABLE = frozenset({"displayName", "categories"})


def _for_version(template: dict, version: str) -> dict:
    if version != "beta":
        return template
    return {**template, **{k: template.get(k, v) for k, v in BETA_TEMPLATE_FIELDS.items()}}


def list_templates(req: GraphRequest) -> Reply:
    req.require("templates.read")
    templates = [_for_version(t, req.version) for t in req.state.templates()]
    known = frozenset(TEMPLATE_FIELDS) | (frozenset(BETA_TEMPLATE_FIELDS) if req.version == "beta" else frozenset())
    return req.collection(templates, "applicationTemplates", "applicationTemplates", default_top=999,
                          entity=("applicationTemplate", known), filterable=TEMPLATE_FILTERABLE)


def _template(req: GraphRequest, template_id: str) -> dict:
    template = req.state.find_template(template_id)
    if template is None:
        if req.directory.settings.get("unknownTemplateStatus") == 400:  # UNCONFIRMED code (setting)
            raise bad_request(f"Invalid object identifier '{template_id}': no application template has this id.")
        raise not_found(template_id)
    return template


def get_template(req: GraphRequest, template_id: str) -> Reply:
    req.require("templates.read")
    return req.entity(_for_version(_template(req, template_id), req.version), "applicationTemplates")


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
    template = _template(req, template_id)
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


_GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_APP_ROLE_TEXT = ("description", "displayName", "value", "origin")


def _check_app_roles(roles: list) -> None:
    """400 unless every item is an appRole: a GUID ``id``, ``allowedMemberTypes`` strings, ``isEnabled`` bool."""
    seen: set[str] = set()
    for index, role in enumerate(roles):
        where = f"appRoles[{index}]"
        if not isinstance(role, dict):
            raise bad_request(f"Invalid value for property 'appRoles': {where} must be an appRole object.")
        role_id = role.get("id")
        if not isinstance(role_id, str) or not _GUID_RE.fullmatch(role_id):
            raise bad_request(f"Invalid value for property 'appRoles': {where}.id must be a GUID.")
        if role_id.lower() in seen:
            raise bad_request(f"Invalid value for property 'appRoles': the id '{role_id}' is used more than once.")
        seen.add(role_id.lower())
        members = role.get("allowedMemberTypes", [])
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise bad_request(f"Invalid value for property 'appRoles': {where}.allowedMemberTypes must be a collection of strings.")
        if not isinstance(role.get("isEnabled", True), bool):
            raise bad_request(f"Invalid value for property 'appRoles': {where}.isEnabled must be true or false.")
        for name in _APP_ROLE_TEXT:
            if not isinstance(role.get(name), (str, type(None))):
                raise bad_request(f"Invalid value for property 'appRoles': {where}.{name} must be a string.")


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
        if key == "appRoles":
            _check_app_roles(value)
        if key == "displayName" and not value.strip():
            raise bad_request("Property 'displayName' must be a non-empty string.")
        updates[key] = copy.deepcopy(value)
    obj.update(updates)


def list_applications(req: GraphRequest) -> Reply:
    req.require("apps.read")
    items = req.listed("applications")
    return req.collection(items, "applications", "applications", directory=True)


def _application(req: GraphRequest, object_id: str) -> dict:
    """The application a GET sees on its replica; for a write the live one (recorded for lagging replicas)."""
    if req.method == "GET":
        return req.seen("applications", object_id)
    app = req.directory.get_application(object_id)
    req.visible(object_id)
    req.before_write("applications", app)
    return app


def get_application(req: GraphRequest, object_id: str) -> Reply:
    req.require("apps.read")
    return req.entity(_application(req, object_id), "applications")


def patch_application(req: GraphRequest, object_id: str) -> Reply:
    app = _application(req, object_id)
    req.require("applications.write", owned_object=object_id)
    _patch(app, req.json(), _APP_WRITABLE)
    return Reply(204)


def delete_application(req: GraphRequest, object_id: str) -> Reply:
    _application(req, object_id)
    req.require("applications.write", owned_object=object_id)
    sp_id = req.directory.delete_application(object_id)
    if sp_id and req.state.provisioning is not None:
        req.state.provisioning.on_service_principal_deleted(sp_id)
    return Reply(204)


def list_service_principals(req: GraphRequest) -> Reply:
    req.require("apps.read")
    items = req.listed("service_principals")
    return req.collection(items, "servicePrincipals", "servicePrincipals", directory=True)


def _sp(req: GraphRequest, sp_id: str) -> dict:
    """The service principal a GET sees on its replica; for a write the live one (recorded for lagging replicas)."""
    if req.method == "GET":
        return req.seen("service_principals", sp_id)
    sp = req.directory.get_sp(sp_id)
    req.visible(sp_id)
    req.before_write("service_principals", sp)
    return sp


def get_service_principal(req: GraphRequest, sp_id: str) -> Reply:
    req.require("apps.read")
    return req.entity(_sp(req, sp_id), "servicePrincipals")


def patch_service_principal(req: GraphRequest, sp_id: str) -> Reply:
    sp = _sp(req, sp_id)
    req.require("servicePrincipals.write", owned_object=sp_id)
    _patch(sp, req.json(), _SP_WRITABLE)
    return Reply(204)


def delete_service_principal(req: GraphRequest, sp_id: str) -> Reply:
    _sp(req, sp_id)
    req.require("servicePrincipals.write", owned_object=sp_id)
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


def _add_owner(req: GraphRequest, object_id: str, action: str) -> Reply:
    req.require(action, owned_object=object_id)
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
    return _add_owner(req, sp_id, "servicePrincipals.owners.write")


def add_app_owner(req: GraphRequest, object_id: str) -> Reply:
    _application(req, object_id)
    return _add_owner(req, object_id, "applications.owners.write")


def remove_sp_owner(req: GraphRequest, sp_id: str, owner_id: str) -> Reply:
    _sp(req, sp_id)
    req.require("servicePrincipals.write", owned_object=sp_id)  # serviceprincipal-delete-owners
    owners = req.directory.owners.get(sp_id, [])
    if owner_id not in owners:
        raise not_found(owner_id)
    owners.remove(owner_id)
    return Reply(204)


# -- deleted items ------------------------------------------------------------------------------

_DELETED_TYPES = {"microsoft.graph.application": "#microsoft.graph.application",
                  "microsoft.graph.serviceprincipal": "#microsoft.graph.servicePrincipal"}


def list_deleted(req: GraphRequest, type_name: str) -> Reply:
    req.require("apps.read")
    odata_type = _DELETED_TYPES.get(type_name.lower())
    if odata_type is None:
        raise bad_request(f"Deleted items of type '{type_name}' are not supported; use microsoft.graph.application or microsoft.graph.servicePrincipal.")
    return req.collection(req.directory.deleted_items(odata_type), f"directory/deletedItems/{type_name}",
                          f"directory/deletedItems/{type_name}")


def get_deleted(req: GraphRequest, object_id: str) -> Reply:
    req.require("apps.read")
    return req.entity(req.directory.get_deleted(object_id), "directory/deletedItems")


def deleted_item(req: GraphRequest, item: str) -> Reply:
    """``/directory/deletedItems/microsoft.graph.application`` (a typed list) or ``/{id}`` (one item)."""
    if item.lower().startswith("microsoft.graph."):
        return list_deleted(req, item)
    return get_deleted(req, item)


def _write_action(item: dict) -> str:
    return "servicePrincipals.write" if item.get("@odata.type") == "#microsoft.graph.servicePrincipal" \
        else "applications.write"


def restore_deleted(req: GraphRequest, object_id: str) -> Reply:
    item = req.directory.get_deleted(object_id)
    req.require(_write_action(item), owned_object=object_id)
    restored = req.directory.restore(object_id)
    if restored["@odata.type"] == "#microsoft.graph.servicePrincipal" and req.state.provisioning is not None:
        if restored.get("applicationTemplateId"):
            req.state.provisioning.on_instantiate(restored["applicationTemplateId"], object_id)
    return Reply(200, {"@odata.context": req.context("directoryObjects/$entity"), **restored})


def purge_deleted(req: GraphRequest, object_id: str) -> Reply:
    item = req.directory.get_deleted(object_id)
    req.require(_write_action(item), owned_object=object_id)
    req.directory.purge(object_id)
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
    req.require("users.read")
    return req.collection(list(req.directory.users.values()), "users", "users", directory=True)


def get_user(req: GraphRequest, user_id: str) -> Reply:
    req.require("users.read")
    return req.entity(req.directory.get_user(user_id), "users")


def list_groups(req: GraphRequest) -> Reply:
    req.require("groups.read")
    return req.collection(list(req.directory.groups.values()), "groups", "groups", directory=True)


def get_group(req: GraphRequest, group_id: str) -> Reply:
    req.require("groups.read")
    return req.entity(req.directory.get_group(group_id), "groups")


def list_group_members(req: GraphRequest, group_id: str) -> Reply:
    req.require("groups.read")
    req.directory.get_group(group_id)
    return req.collection(req.directory.group_members(group_id), f"groups/{group_id}/members", "directoryObjects", directory=True)
