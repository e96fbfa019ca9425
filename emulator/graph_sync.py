"""Graph handlers for ``/servicePrincipals/{id}/synchronization/...`` and ``/auditLogs/provisioning``.

The behaviour belongs to the provisioning simulation (``emulator.provisioning``); these handlers
add what the HTTP layer owns: the target service principal's existence and replication lag,
permissions (``Synchronization.ReadWrite.All``, ``Synchronization.Read.All`` for reads, or
``Application.ReadWrite.OwnedBy`` on service principals the caller owns; a refusal is 401
``UnknownError`` by default, see ``emulator.permissions``), and the status codes (201 create, 204
actions, 200 on-demand).
"""

from __future__ import annotations

from typing import Callable

from emulator import odata
from emulator.errors import GraphError, not_found
from emulator.graph_request import GraphRequest, Reply

# -- synchronization (delegated to the provisioning simulation) ----------------------------------

def _sync_target(req: GraphRequest, sp_id: str, write: bool) -> None:
    req.directory.get_sp(sp_id)
    req.visible(sp_id, synchronization=True)
    req.require("sync.write" if write else "sync.read", owned_object=sp_id)


def _job_visible(req: GraphRequest, job_id: str) -> None:
    req.visible(job_id, synchronization=True)


def sync_templates(req: GraphRequest, sp_id: str) -> Reply:
    _sync_target(req, sp_id, write=False)
    return req.collection(req.service.list_templates(sp_id), f"servicePrincipals/{sp_id}/synchronization/templates",
                          f"servicePrincipals('{sp_id}')/synchronization/templates")


def sync_template(req: GraphRequest, sp_id: str, template_id: str) -> Reply:
    _sync_target(req, sp_id, write=False)
    template = req.service.get_template(sp_id, template_id)
    return req.entity(template, f"servicePrincipals('{sp_id}')/synchronization/templates")


def _template_schema(req: GraphRequest, template: dict, context: str) -> Reply:
    """A synchronization template's schema (its ``id`` is the template id, as a job schema's is the job id)."""
    schema = template.get("schema") or {"directories": [], "synchronizationRules": []}
    return Reply(200, {"@odata.context": req.context(context), "id": template["id"], **schema})


def sync_template_schema(req: GraphRequest, sp_id: str, template_id: str) -> Reply:
    """``GET .../synchronization/templates/{templateId}/schema``.

    Source: https://learn.microsoft.com/graph/api/synchronization-synchronizationschema-get.
    """
    _sync_target(req, sp_id, write=False)
    template = req.service.get_template(sp_id, template_id)
    return _template_schema(req, template, f"servicePrincipals('{sp_id}')/synchronization/templates('{template_id}')/schema/$entity")


def _application_sp(req: GraphRequest, object_id: str, write: bool) -> dict | None:
    """The service principal behind ``/applications/{id}/synchronization/...`` (None if it has none).

    ``Application.ReadWrite.OwnedBy`` counts for the owner of that service principal (the
    synchronization API's object), as on the service principal's own routes.
    """
    app = req.directory.get_application(object_id)
    req.visible(object_id, synchronization=True)
    sp = req.directory.sp_for_application(app)
    req.require("sync.write" if write else "sync.read", owned_object=sp["id"] if sp is not None else object_id)
    return sp


def application_sync_templates(req: GraphRequest, object_id: str) -> Reply:
    """``/applications/{id}/synchronization/templates``: the same templates, via the application."""
    sp = _application_sp(req, object_id, write=False)
    templates = req.service.list_templates(sp["id"]) if sp is not None else []
    return req.collection(templates, f"applications/{object_id}/synchronization/templates",
                          f"applications('{object_id}')/synchronization/templates")


def _application_template(req: GraphRequest, object_id: str, template_id: str) -> dict:
    sp = _application_sp(req, object_id, write=False)
    if sp is None:
        raise not_found(template_id)
    return req.service.get_template(sp["id"], template_id)


def application_sync_template(req: GraphRequest, object_id: str, template_id: str) -> Reply:
    """``GET /applications/{id}/synchronization/templates/{templateId}``."""
    template = _application_template(req, object_id, template_id)
    return req.entity(template, f"applications('{object_id}')/synchronization/templates")


def application_sync_template_schema(req: GraphRequest, object_id: str, template_id: str) -> Reply:
    """``GET /applications/{id}/synchronization/templates/{templateId}/schema``."""
    template = _application_template(req, object_id, template_id)
    return _template_schema(req, template, f"applications('{object_id}')/synchronization/templates('{template_id}')/schema/$entity")


def application_validate_credentials(req: GraphRequest, object_id: str) -> Reply:
    """``POST /applications/{id}/synchronization/jobs/validateCredentials``.

    Not on Learn; the form is in Graph's API metadata (msgraph-sdk-python's
    ``msgraph/generated/applications/item/synchronization/jobs/validate_credentials``).

    Same body and answers as the service principal's collection-bound form (``templateId`` needed).
    """
    sp = _application_sp(req, object_id, write=True)
    if sp is None:
        raise not_found(object_id)
    req.service.validate_credentials(sp["id"], None, req.json())
    return Reply(204)


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


def job_action(action: str) -> Callable[..., Reply]:
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


def parse_expression_job(req: GraphRequest, sp_id: str, job_id: str) -> Reply:
    """``POST .../jobs/{jobId}/schema/parseExpression`` (200 parseExpressionResponse; permission as a
    write: Synchronization.ReadWrite.All or Application.ReadWrite.OwnedBy,
    https://learn.microsoft.com/graph/api/synchronization-synchronizationschema-parseexpression)."""
    _sync_target(req, sp_id, write=True)
    _job_visible(req, job_id)
    result = req.service.parse_expression(sp_id, job_id, None, req.json())
    return Reply(200, {"@odata.context": req.context("microsoft.graph.parseExpressionResponse"), **result})


def parse_expression_template(req: GraphRequest, sp_id: str, template_id: str) -> Reply:
    """``POST .../templates/{templateId}/schema/parseExpression`` (same answer, before any job exists)."""
    _sync_target(req, sp_id, write=True)
    result = req.service.parse_expression(sp_id, None, template_id, req.json())
    return Reply(200, {"@odata.context": req.context("microsoft.graph.parseExpressionResponse"), **result})


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


# provisioningObjectSummary's properties (https://learn.microsoft.com/graph/api/resources/provisioningobjectsummary), and
# beta's deprecated extras (the same page with ?view=graph-rest-beta).
LOG_PROPERTIES = frozenset({
    "id", "activityDateTime", "tenantId", "jobId", "cycleId", "changeId", "provisioningAction", "durationInMilliseconds",
    "initiatedBy", "servicePrincipal", "sourceSystem", "targetSystem", "sourceIdentity", "targetIdentity",
    "provisioningStatusInfo", "provisioningSteps", "modifiedProperties",
})
BETA_LOG_PROPERTIES = frozenset({"action", "statusInfo"})


def provisioning_logs(req: GraphRequest) -> Reply:
    req.require("auditlogs.read")
    if "$skip" in odata.normalize_query(req.query):
        # DOC (https://learn.microsoft.com/graph/api/provisioningobjectsummary-list): no skip count here; pages
        # come from @odata.nextLink's $skiptoken.
        raise GraphError(400, "BadRequest", "Query option '$skip' is not supported on auditLogs/provisioning; "
                         "use $top and follow @odata.nextLink.")
    rows, written = req.service.provisioning_log_snapshot(req.version)
    known = LOG_PROPERTIES | BETA_LOG_PROPERTIES if req.version == "beta" else LOG_PROPERTIES
    # Rows arrive at the front (newest first) while a client pages: the pages are one snapshot.
    # DOC (same page): filters are case-sensitive; the logFiltersIgnoreCase setting relaxes it.
    return req.collection(rows, "auditLogs/provisioning", "auditLogs/provisioning", max_top=1000, default_top=50,
                          entity=("provisioningObjectSummary", known), snapshot=written,
                          ignore_case=req.service.settings.log_filters_ignore_case)
