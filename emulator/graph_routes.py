"""The Graph route table (``/v1.0`` and ``/beta`` share it) and routing helpers.

Handlers live in ``graph_directory`` (directory objects) and ``graph_sync`` (synchronization and
provisioning logs); each is synchronous and works on in-memory state. The server does the async
parts (authentication, throttling, latency, body reading) before calling the matched handler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from emulator import odata
from emulator.errors import GraphError
from emulator.graph_directory import (
    add_app_owner, add_assigned_to, add_assignment, add_sp_owner, delete_application, delete_service_principal,
    get_application, get_group, get_service_principal, get_template, get_user, instantiate, list_app_owners,
    list_applications, list_assigned_to, list_assignments, list_group_members, list_groups, list_service_principals,
    list_sp_owners, list_templates, list_users, patch_application, patch_service_principal, remove_assigned_to,
    remove_assignment, remove_sp_owner, deleted_item, restore_deleted, purge_deleted,
)
from emulator.graph_request import GraphRequest, Reply
from emulator.graph_sync import (
    application_sync_template, application_sync_template_schema, application_sync_templates, application_validate_credentials,
    create_job, delete_job, get_job, get_schema, get_secrets, job_action, list_jobs, provision_on_demand, provisioning_logs,
    parse_expression_job, parse_expression_template, put_schema, put_secrets, sync_template, sync_template_schema, sync_templates, validate_without_job,
)
from emulator.state import EmulatorState

__all__ = ["GraphRequest", "Reply", "Route", "ROUTES", "match_route", "resolve_alternate_key", "resource_units", "is_write"]

GUIDISH = r"[^/()]+"

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
    _route("GET", "applications/{object_id}/synchronization/templates", application_sync_templates),
    _route("GET", "applications/{object_id}/synchronization/templates/{template_id}", application_sync_template),
    _route("GET", "applications/{object_id}/synchronization/templates/{template_id}/schema", application_sync_template_schema),
    _route("POST", "applications/{object_id}/synchronization/jobs/validateCredentials", application_validate_credentials),
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
    _route("GET", SYNC + "/templates/{template_id}/schema", sync_template_schema),
    _route("GET", SYNC + "/jobs", list_jobs),
    _route("POST", SYNC + "/jobs", create_job),
    _route("POST", SYNC + "/jobs/validateCredentials", validate_without_job),
    _route("GET", JOB, get_job),
    _route("DELETE", JOB, delete_job),
    _route("POST", JOB + "/start", job_action("start")),
    _route("POST", JOB + "/pause", job_action("pause")),
    _route("POST", JOB + "/restart", job_action("restart")),
    _route("POST", JOB + "/validateCredentials", job_action("validateCredentials")),
    _route("GET", JOB + "/schema", get_schema),
    _route("PUT", JOB + "/schema", put_schema),
    _route("POST", JOB + "/schema/parseExpression", parse_expression_job),
    _route("POST", SYNC + "/templates/{template_id}/schema/parseExpression", parse_expression_template),
    _route("POST", JOB + "/provisionOnDemand", provision_on_demand, budget="provisionOnDemand"),
    _route("PUT", SYNC + "/secrets", put_secrets),
    _route("GET", SYNC + "/secrets", get_secrets),
    _route("GET", "auditLogs/provisioning", provisioning_logs, budget="reports"),
    _route("GET", "directory/deletedItems/{item}", deleted_item),
    _route("POST", "directory/deletedItems/{object_id}/restore", restore_deleted),
    _route("DELETE", "directory/deletedItems/{object_id}", purge_deleted),
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
    """The ``x-ms-resource-unit`` cost of an identity-and-access request, or None.

    Costs as in the resource-unit table of
    https://learn.microsoft.com/graph/throttling-limits#identity-and-access-service-limits.

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
