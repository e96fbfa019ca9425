"""The Microsoft Graph application permissions the workflow needs, and which step needs which.

One source for the README, ``docs/deploy.md``, the grant script, the Bicep outputs, the preflight
check and the error message of a refused call. Imports nothing from the rest of the app.

Why these five and not ``Application.ReadWrite.OwnedBy``: an app-only caller that instantiates a
gallery template is made owner of neither the application nor the service principal (users' reports
with a Microsoft reply: https://github.com/microsoftgraph/microsoft-graph-docs/issues/16545,
https://github.com/microsoftgraph/msgraph-sdk-powershell/issues/829), so ``OwnedBy`` covers nothing
after instantiate. PATCH and DELETE of applications and service principals without ownership need
``Application.ReadWrite.All`` (https://learn.microsoft.com/graph/api/serviceprincipal-update,
https://learn.microsoft.com/graph/api/serviceprincipal-delete); the synchronization API's pages list
``Application.ReadWrite.OwnedBy`` (owner only) and ``Synchronization.ReadWrite.All`` (no ownership)
as its application permissions
(https://learn.microsoft.com/graph/api/synchronization-synchronization-post-jobs,
https://learn.microsoft.com/graph/api/synchronization-serviceprincipal-put-synchronization); assignments need
``AppRoleAssignment.ReadWrite.All``
(https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignedto); provisioning logs
need ``AuditLog.Read.All`` and ``Directory.Read.All``
(https://learn.microsoft.com/graph/api/provisioningobjectsummary-list). ``Directory.Read.All`` also
resolves the users and groups named in ``assignments``.
"""

from __future__ import annotations

APPLICATION_READWRITE_ALL = "Application.ReadWrite.All"
SYNCHRONIZATION_READWRITE_ALL = "Synchronization.ReadWrite.All"
APPROLEASSIGNMENT_READWRITE_ALL = "AppRoleAssignment.ReadWrite.All"
AUDITLOG_READ_ALL = "AuditLog.Read.All"
DIRECTORY_READ_ALL = "Directory.Read.All"

# The permission set the app is granted (README, docs/deploy.md, grant script, Bicep outputs and the
# emulator's default client all show exactly this tuple), with the reason for each.
REQUIRED_GRAPH_PERMISSIONS: dict[str, str] = {
    APPLICATION_READWRITE_ALL: "instantiate gallery templates, tag and read the new application and "
    "service principal, and delete an unfinished copy (the caller is not made owner by instantiate)",
    SYNCHRONIZATION_READWRITE_ALL: "every synchronization call: create the job, validateCredentials, "
    "save secrets, start, restart, read the job status",
    APPROLEASSIGNMENT_READWRITE_ALL: "assign users and groups to the enterprise apps (appRoleAssignedTo)",
    AUDITLOG_READ_ALL: "read the provisioning logs for the report (with Directory.Read.All)",
    DIRECTORY_READ_ALL: "read the provisioning logs (with AuditLog.Read.All) and resolve the users and "
    "groups named in assignments",
}

# Activity name (core/names.py) -> the permissions its Graph calls need. Kept as literal names so
# this module imports nothing; tests check every activity is listed.
PERMISSIONS_BY_STEP: dict[str, tuple[str, ...]] = {
    "resolve_application_template": (),
    "ensure_application": (APPLICATION_READWRITE_ALL,),
    "wait_until_visible": (APPLICATION_READWRITE_ALL,),
    "discard_application": (APPLICATION_READWRITE_ALL,),
    "ensure_job": (SYNCHRONIZATION_READWRITE_ALL,),
    "validate_credentials": (SYNCHRONIZATION_READWRITE_ALL,),
    # + the service principal's kv-saved tag when it saved another Key Vault version than recorded
    "save_secrets": (SYNCHRONIZATION_READWRITE_ALL, APPLICATION_READWRITE_ALL),
    "assign_principals": (APPROLEASSIGNMENT_READWRITE_ALL, DIRECTORY_READ_ALL),
    "start_job": (SYNCHRONIZATION_READWRITE_ALL,),
    "get_job_status": (SYNCHRONIZATION_READWRITE_ALL,),
    "get_provisioning_errors": (AUDITLOG_READ_ALL, DIRECTORY_READ_ALL),
    "list_managed_instances": (APPLICATION_READWRITE_ALL,),
    # + the service principal's kv-saved / kv-restarted tags (read, then one PATCH)
    "restart_quarantined_job": (SYNCHRONIZATION_READWRITE_ALL, APPLICATION_READWRITE_ALL),
    # operator actions: the job calls, plus the SP's tags (rejectDeletes) and the application (teardown)
    "fleet_instance_action": (SYNCHRONIZATION_READWRITE_ALL, APPLICATION_READWRITE_ALL),
    # schema profiles: templates/schema, parseExpression, the job schema; apply and drift read the
    # service principal's tags (apply PATCHes its schema-profile tag)
    "plan_schema_profile": (SYNCHRONIZATION_READWRITE_ALL,),
    "apply_schema_profile": (SYNCHRONIZATION_READWRITE_ALL, APPLICATION_READWRITE_ALL),
    "check_instance_drift": (SYNCHRONIZATION_READWRITE_ALL, APPLICATION_READWRITE_ALL, DIRECTORY_READ_ALL),
    "summarize_cycle": (AUDITLOG_READ_ALL, DIRECTORY_READ_ALL),  # provisioning logs, as get_provisioning_errors
    # drift enforce: the schema (as apply), the secret set, the job's start, assignments again
    "enforce_instance_drift": (SYNCHRONIZATION_READWRITE_ALL, APPLICATION_READWRITE_ALL,
                               APPROLEASSIGNMENT_READWRITE_ALL, DIRECTORY_READ_ALL),
    # credential rotation: the registry is Table storage (no Graph); the others read the SP (tags, notes)
    "list_secret_dependents": (),
    "rotate_instance": (SYNCHRONIZATION_READWRITE_ALL, APPLICATION_READWRITE_ALL),
    "rebuild_fleet_registry": (APPLICATION_READWRITE_ALL,),
    "write_batch_report": (),  # blob storage only (the host storage account), no Graph call
    "read_batch_report": (),
    "read_request_part": (),
    # blob storage (the app's own storage account, Storage Blob Data Owner), no Graph permission
    "stage_sweep_report": (),
    "commit_sweep_report": (),
    # the sweep's duties: Key Vault properties, the Durable client, Table storage - no Graph call
    "check_sweep_page_lag": (),
    "start_sweep_rotation": (),
    "record_sweep_results": (),
    "check_credential_expiry": (),
}


def permissions_for(step: str) -> tuple[str, ...]:
    """The Graph permissions ``step`` needs (empty for an unknown step or one needing none)."""
    return PERMISSIONS_BY_STEP.get(step, ())
