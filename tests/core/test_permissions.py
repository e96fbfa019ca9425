"""A refused Graph call becomes a permanent PermissionDenied that names the step and the missing
permission(s), whatever the status: 401 ``UnknownError`` (the synchronization API's refusal, the
emulator's default) or 403 ``Authorization_RequestDenied``; a refused *token* is not reported as a
missing permission. Every client here gets its token from the emulator's real token endpoint."""

from __future__ import annotations

import pytest

import activities
from core import errors, model, names, steps
from core.permissions import PERMISSIONS_BY_STEP, REQUIRED_GRAPH_PERMISSIONS, permissions_for
from core_support import CUSTOM_TEMPLATE_ID, HEALTHY_CREDENTIALS, graph_requests

WITHOUT_SYNC = [p for p in REQUIRED_GRAPH_PERMISSIONS if p != "Synchronization.ReadWrite.All"]


def test_every_activity_has_its_permissions_listed():
    assert set(PERMISSIONS_BY_STEP) == set(names.ACTIVITIES)
    assert all(set(perms) <= set(REQUIRED_GRAPH_PERMISSIONS) for perms in PERMISSIONS_BY_STEP.values())
    used = {p for perms in PERMISSIONS_BY_STEP.values() for p in perms}
    assert used == set(REQUIRED_GRAPH_PERMISSIONS)  # each documented permission is needed by some step


def _app(ctx) -> str:
    return steps.ensure_application(ctx, batch_id="b", instance_key="perm", display_name="Permission app",
                                    template_id=CUSTOM_TEMPLATE_ID)["servicePrincipalId"]


@pytest.mark.parametrize("status", [401, 403])
def test_missing_synchronization_permission_names_step_and_permission(ctx, core_env, make_ctx, status):
    sp_id = _app(ctx)
    if status == 403:
        core_env.admin.settings(synchronizationDeniedStatus=403)
    core_env.admin.add_client("no-sync", WITHOUT_SYNC, key_vault="read")
    weak = make_ctx("no-sync", visibility_wait_seconds=0.3)
    core_env.admin.clear_requests()
    result = activities.run(names.ENSURE_JOB, {"servicePrincipalId": sp_id, "applicationTemplateId": CUSTOM_TEMPLATE_ID},
                            activities.BODIES[names.ENSURE_JOB], context=weak)
    assert result["ok"] is False
    error = result["error"]
    assert error["kind"] == "permanent" and error["step"] == names.ENSURE_JOB and error["status"] == status
    assert error["code"] == ("UnknownError" if status == 401 else "Authorization_RequestDenied")
    assert error["missingPermissions"] == ["Synchronization.ReadWrite.All"]
    assert error["message"].startswith("ensure_job needs the Graph application permission(s) "
                                       "Synchronization.ReadWrite.All, which the function app's identity lacks")
    assert "/synchronization/jobs" in error["message"]
    calls = graph_requests(core_env, pathContains="/synchronization/")
    if status == 401:
        # never waited out as replication lag: one refusal, one repeat with a fresh token, done
        assert [c["status"] for c in calls] == [401, 401]
    else:
        # a 403 right after a create may be lag (Terraform retries it), but this token lacks the
        # step's permission: not waited out (a lag 403 with every permission held still is, below)
        assert [c["status"] for c in calls] == [403]
    assert ctx.graph.get(f"/servicePrincipals/{sp_id}/synchronization/jobs")["value"] == []  # nothing created


def test_a_403_is_not_waited_out_when_the_token_lacks_the_steps_permission(ctx, core_env, make_ctx):
    """Found in review: with synchronizationDeniedStatus 403 a missing permission looked like replication
    lag and was retried for all of VISIBILITY_WAIT_SECONDS, although the token shows it missing."""
    sp_id = _app(ctx)
    core_env.admin.settings(synchronizationDeniedStatus=403)
    core_env.admin.add_client("no-sync", WITHOUT_SYNC, key_vault="read")
    weak = make_ctx("no-sync", visibility_wait_seconds=20)
    core_env.admin.clear_requests()
    result = activities.run(names.ENSURE_JOB, {"servicePrincipalId": sp_id, "applicationTemplateId": CUSTOM_TEMPLATE_ID},
                            activities.BODIES[names.ENSURE_JOB], context=weak)
    assert result["error"]["missingPermissions"] == ["Synchronization.ReadWrite.All"]
    assert [c["status"] for c in graph_requests(core_env, pathContains="/synchronization/")] == [403]


def test_a_lag_403_is_still_waited_out_when_the_token_holds_the_steps_permissions(ctx, core_env):
    """The replication-lag 403 Terraform retries (replicationLag.syncStatus) with every permission held."""
    sp_id = _app(ctx)
    core_env.admin.set_faults(replicationLag={"reads": 2, "syncStatus": 403})
    core_env.admin.clear_requests()
    result = activities.run(names.ENSURE_JOB, {"servicePrincipalId": sp_id, "applicationTemplateId": CUSTOM_TEMPLATE_ID},
                            activities.BODIES[names.ENSURE_JOB], context=ctx)
    assert result["ok"] is True, result
    statuses = [c["status"] for c in graph_requests(core_env, pathContains="/synchronization/")]
    assert statuses[:2] == [403, 403] and 201 in statuses


def test_missing_permission_of_a_two_permission_step_is_named_alone(ctx, core_env, make_ctx):
    sp_id = _app(ctx)
    core_env.admin.add_client("no-assign", [p for p in REQUIRED_GRAPH_PERMISSIONS
                                            if p != "AppRoleAssignment.ReadWrite.All"], key_vault="read")
    weak = make_ctx("no-assign", visibility_wait_seconds=0.2)
    result = activities.run(names.ASSIGN_PRINCIPALS, {"servicePrincipalId": sp_id, "groups": ["AWS Admins"]},
                            activities.BODIES[names.ASSIGN_PRINCIPALS], context=weak)
    error = result["error"]
    assert error["status"] == 403 and error["missingPermissions"] == ["AppRoleAssignment.ReadWrite.All"]
    assert "assign_principals needs the Graph application permission(s) AppRoleAssignment.ReadWrite.All" in error["message"]
    assert "Directory.Read.All" not in error["message"].split(". Graph:")[0]


def test_refusal_with_every_permission_held_names_the_step_but_no_missing_permission(core_env):
    """Found in review: a token that carries every permission of the step was reported with those very
    permissions as ``missingPermissions`` and told to grant them (and blamed a cached token, which
    would carry fewer roles, not more)."""
    refused = errors.PermissionDenied("PATCH /servicePrincipals/{id}: Graph refused the call", code="Authorization_RequestDenied",
                                      status=403, granted_roles=tuple(REQUIRED_GRAPH_PERMISSIONS))
    named = refused.for_step(names.WAIT_UNTIL_VISIBLE)
    assert permissions_for(names.WAIT_UNTIL_VISIBLE) == ("Application.ReadWrite.All",)
    assert named.missing == () and "missingPermissions" not in named.to_dict(names.WAIT_UNTIL_VISIBLE)
    assert named.message.startswith("wait_until_visible needs the Graph application permission(s) "
                                    "Application.ReadWrite.All, which the function app's token carries")
    assert "grant_graph_permissions" not in named.message and named.kind == "permanent" and named.status == 403
    # a token whose roles cannot be read: every permission of the step is named, with the grant advice
    unknown = errors.PermissionDenied("x", code="UnknownError", status=401).for_step(names.START_JOB)
    assert unknown.missing == ("Synchronization.ReadWrite.All",) and unknown.status == 401
    assert "grant_graph_permissions" in unknown.message and "cannot be read" in unknown.message
    # a restart gets a new token, but Azure caches a managed identity's tokens: new roles can take hours
    assert "restart the function app" in unknown.message and "can take hours" in unknown.message


def test_a_refused_token_is_not_reported_as_a_missing_permission(core_env):
    """401 InvalidAuthenticationToken twice (a fresh token is fetched once): the token, not a permission."""
    import os

    from core.graph.transport import GraphClient
    from core.settings import Settings

    class WrongAudience:
        """Always a token for Key Vault, which Graph refuses (401 InvalidAuthenticationToken)."""

        def __init__(self) -> None:
            self.calls = 0

        def get_token(self, *scopes, **kwargs):
            from azure.core.credentials import AccessToken
            self.calls += 1
            return AccessToken(core_env.admin.token("workflow", audience="vault"), 4102444800)

    credential = WrongAudience()
    client = GraphClient(Settings.from_env(os.environ), credential)
    with pytest.raises(errors.PermissionDenied) as caught:
        client.get("/servicePrincipals")
    exc = caught.value
    assert credential.calls == 2 and exc.status == 401 and exc.code == "InvalidAuthenticationToken"
    assert exc.token_refused and "refused the function app's access token" in exc.message
    assert exc.for_step(names.LIST_MANAGED_INSTANCES) is exc  # no permission named
    result = activities.run(names.LIST_MANAGED_INSTANCES, {}, activities.BODIES[names.LIST_MANAGED_INSTANCES],
                            context=steps.StepContext(graph=client, settings=client.settings))
    assert "missingPermissions" not in result["error"] and "permission(s)" not in result["error"]["message"]


def test_default_workflow_client_runs_every_step_without_ownership(ctx, core_env):
    """The documented five permissions suffice with instantiate owning nothing (the emulator's default)."""
    assert core_env.admin.settings()["directory"]["instantiateOwnsServicePrincipal"] is False
    sp_id = _app(ctx)
    assert ctx.graph.get(f"/servicePrincipals/{sp_id}/owners")["value"] == []
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id)["jobId"]
    credentials = model.parse_credentials(HEALTHY_CREDENTIALS)
    steps.validate_credentials(ctx, service_principal_id=sp_id, job_id=job_id, credentials=credentials)
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=credentials)
    assert steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    assert steps.assign_principals(ctx, service_principal_id=sp_id, groups=["AWS Admins"])["assigned"] == 1
    app_id = ctx.graph.get(f"/servicePrincipals/{sp_id}")["appId"]
    application = ctx.graph.get_all("/applications", {"$filter": f"appId eq '{app_id}'"})[0]
    steps.discard_application(ctx, application_id=application["id"], service_principal_id=sp_id, instance_key="other")
    assert ctx.graph.get_all("/applications", {"$filter": f"appId eq '{app_id}'"}) == []


def test_owned_by_runs_every_step_when_instantiate_makes_it_owner(core_env, make_ctx):
    """The experiments setting: with ownership on instantiate, Application.ReadWrite.OwnedBy (plus the
    assignment and log permissions, no Application.ReadWrite.All nor Synchronization.ReadWrite.All)
    reaches every step, discard included - so the default's refusals come from ownership alone."""
    core_env.admin.settings(instantiateOwnsApplication=True, instantiateOwnsServicePrincipal=True)
    core_env.admin.add_client("owned-by", ["Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All",
                                           "AuditLog.Read.All", "Directory.Read.All"], key_vault="read")
    ctx = make_ctx("owned-by")
    made = steps.ensure_application(ctx, batch_id="b", instance_key="owned", display_name="Owned app",
                                    template_id=CUSTOM_TEMPLATE_ID)
    sp_id = made["servicePrincipalId"]
    steps.wait_until_visible(ctx, service_principal_id=sp_id, application_id=made["applicationId"],
                             instance_key="owned", created=True)
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id)["jobId"]
    credentials = model.parse_credentials(HEALTHY_CREDENTIALS)
    steps.validate_credentials(ctx, service_principal_id=sp_id, job_id=job_id, credentials=credentials)
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=credentials)
    assert steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    assert steps.get_job_status(ctx, service_principal_id=sp_id, job_id=job_id, started_at=None)["jobId"] == job_id
    assert steps.assign_principals(ctx, service_principal_id=sp_id, groups=["AWS Admins"])["assigned"] == 1
    assert [r for r in graph_requests(core_env) if r["status"] in (401, 403)] == []
    steps.discard_application(ctx, application_id=made["applicationId"], service_principal_id=sp_id,
                              instance_key="other")
    assert ctx.graph.get_all("/applications", {"$filter": f"appId eq '{made['appId']}'"}) == []

