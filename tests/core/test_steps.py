"""Each idempotent step against the emulator: happy path, run twice (one object), faults, bad input."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core_support import (CUSTOM_TEMPLATE_ID, HEALTHY_CREDENTIALS, SEEDED_SECRETS, WRONG_CREDENTIALS, creds, graph_requests,
                          new_app)
from core import errors, model, odata, steps
from core.graph import applications as apps
from core.graph import synchronization as sync


def sps_named(ctx, name: str) -> list[dict]:
    return apps.find_service_principals(ctx.graph, odata.eq("displayName", name))


def test_resolve_template_by_name_and_id(ctx, core_env):
    by_name = steps.resolve_template(ctx, model.TemplateRef(display_name="aws single-account access"))
    # AWS Single-Account Access only imports roles (ROLE_IMPORT_TEMPLATE_IDS' default)
    assert by_name == {"templateId": "8b1025e4-1dd2-430b-a150-2ef79cd700f5", "displayName": "AWS Single-Account Access",
                       "jobKind": "roleImport"}
    core_env.admin.clear_requests()
    assert steps.resolve_template(ctx, model.TemplateRef(display_name="AWS Single-Account Access")) == by_name
    assert steps.resolve_template(ctx, model.TemplateRef(id=by_name["templateId"])) == by_name
    assert graph_requests(core_env) == []  # cached per process
    with pytest.raises(errors.NotFound):
        steps.resolve_template(ctx, model.TemplateRef(display_name="No Such App"))
    with pytest.raises(errors.NotFound):
        steps.resolve_template(ctx, model.TemplateRef(id="00000000-0000-0000-0000-00000000abcd"))
    with pytest.raises(errors.NotProvisionable):
        steps.resolve_template(ctx, model.TemplateRef(display_name="Microsoft Entra SAML Toolkit"))
    # template behaviour is a setting: without the id the same template provisions users
    plain = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, role_import_template_ids=""))
    assert steps.resolve_template(plain, model.TemplateRef(id=by_name["templateId"]))["jobKind"] == "userProvisioning"


@pytest.mark.parametrize("name", ["O'Brien's ''quoted'' app", "Zoë Ångström · テスト · Søren"])
def test_ensure_application_twice_gives_one_app(ctx, core_env, name):
    first = new_app(ctx, name, labels={"env": "prod"})
    assert first["created"] is True and first["servicePrincipalId"] and first["applicationId"] and first["appId"]
    assert first["createdHere"] is True  # its own instantiate answer gave the ids
    second = new_app(ctx, name, labels={"env": "prod"})
    assert second == {**{k: v for k, v in first.items() if k != "createdHere"}, "created": False, "tagged": True}
    found = sps_named(ctx, name)
    assert len(found) == 1
    tags = found[0]["tags"]
    assert "entra-provisioning-fleet" in tags and f"entra-provisioning-fleet:key:{model.instance_key(name)}" in tags
    assert "entra-provisioning-fleet:label:env=prod" in tags and "WindowsAzureActiveDirectoryIntegratedApp" in tags


def test_ensure_application_adopts_an_untagged_app_and_finds_a_renamed_one(ctx):
    pair = apps.instantiate(ctx.graph, CUSTOM_TEMPLATE_ID, "Half done app")  # a crash before tagging
    adopted = new_app(ctx, "Half done app")
    assert adopted["created"] is False and adopted["servicePrincipalId"] == pair["servicePrincipal"]["id"]
    apps.set_service_principal_tags(ctx.graph, adopted["servicePrincipalId"],
                                    sps_named(ctx, "Half done app")[0]["tags"])
    ctx.graph.patch(f"/applications/{adopted['applicationId']}", {"displayName": "Renamed in the portal"})
    ctx.graph.patch(f"/servicePrincipals/{adopted['servicePrincipalId']}", {"displayName": "Renamed in the portal"})
    again = new_app(ctx, "Half done app")  # same key: found by tag despite the rename
    assert again["servicePrincipalId"] == adopted["servicePrincipalId"] and again["created"] is False


def test_ensure_application_refuses_to_guess_between_two_untagged_apps(ctx):
    for _ in range(2):
        apps.instantiate(ctx.graph, CUSTOM_TEMPLATE_ID, "Twin")
    with pytest.raises(errors.AmbiguousMatch) as caught:
        new_app(ctx, "Twin")
    assert len(caught.value.ids) == 2 and caught.value.kind == "permanent"


@pytest.mark.parametrize("status", [504, 404])
def test_instantiate_that_fails_but_creates_gives_exactly_one_app(ctx, core_env, status):
    core_env.admin.set_faults(instantiate={"status": status, "count": 1}, replicationLag={"reads": 2})
    result = new_app(ctx, f"Lying instantiate {status}")
    assert result["created"] is True
    assert len(sps_named(ctx, f"Lying instantiate {status}")) == 1
    posts = graph_requests(core_env, method="POST", pathContains="/instantiate")
    assert [p["status"] for p in posts] == [status]  # looked up, never resent
    again = new_app(ctx, f"Lying instantiate {status}")
    assert again["servicePrincipalId"] == result["servicePrincipalId"] and again["created"] is False


def test_instantiate_5xx_with_nothing_created_is_transient(ctx, core_env):
    core_env.admin.set_faults(errors={"next": 1, "statuses": [504]})
    core_env.admin.clear_requests()
    # the 504 hits the tag look-up first (a GET, retried), so fail the instantiate itself instead:
    steps.applications._find_ours(ctx, model.instance_key("x"), "x", CUSTOM_TEMPLATE_ID)
    core_env.admin.set_faults(errors={"next": 1, "statuses": [502]})
    with pytest.raises(errors.GraphTransient):
        steps.ensure_application(ctx, batch_id="b", instance_key="k1", display_name="Nothing made",
                                 template_id="00000000-0000-0000-0000-00000000abcd")


def test_wait_until_visible_waits_out_replication_lag(ctx, core_env):
    app = new_app(ctx, "Visible later")
    needed = ctx.settings.visibility_consecutive_reads
    assert steps.wait_until_visible(ctx, service_principal_id=app["servicePrincipalId"]) == \
        {"visible": True, "reads": needed, "tagged": False}  # no instance key: reads only
    core_env.admin.set_faults(replicationLag={"reads": 0, "flap": True})
    fresh = apps.instantiate(ctx.graph, CUSTOM_TEMPLATE_ID, "Flapping")["servicePrincipal"]["id"]
    seen = steps.wait_until_visible(ctx, service_principal_id=fresh)
    assert seen["visible"] is True and seen["reads"] >= needed + 1  # found, vanished once, then found N in a row
    with pytest.raises(errors.GraphTransient) as caught:
        steps.wait_until_visible(ctx, service_principal_id="00000000-0000-0000-0000-000000000001")
    assert caught.value.code == "NotYetVisible"


def test_ensure_job_twice_gives_one_job(ctx, core_env):
    sp_id = new_app(ctx, "Job app")["servicePrincipalId"]
    core_env.admin.set_faults(replicationLag={"reads": 1})
    first = steps.ensure_job(ctx, service_principal_id=sp_id)
    assert first["created"] is True and first["templateId"] == "scim" and first["jobId"].startswith("scim.")
    assert steps.ensure_job(ctx, service_principal_id=sp_id) == {**first, "created": False}
    assert steps.ensure_job(ctx, service_principal_id=sp_id, synchronization_template_id="scim") == \
        {**first, "created": False}
    assert len(sync.list_jobs(ctx.graph, sp_id)) == 1
    with pytest.raises(errors.ProvisioningError):
        steps.ensure_job(ctx, service_principal_id=sp_id, synchronization_template_id="notATemplate")


def test_credentials_validate_save_and_never_leak(ctx, core_env):
    sp_id = new_app(ctx, "Secret app")["servicePrincipalId"]
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id)["jobId"]
    ok = steps.validate_credentials(ctx, service_principal_id=sp_id, job_id=job_id, credentials=creds(HEALTHY_CREDENTIALS))
    assert set(ok) == {"secretVersions"} and set(ok["secretVersions"]) == {"SecretToken"}
    saved = steps.save_secrets(ctx, service_principal_id=sp_id, credentials=creds(HEALTHY_CREDENTIALS),
                               notification_email="ops@contoso.com")
    assert saved["keys"] == ["BaseAddress", "SecretToken", "SyncAll", "SyncNotificationSettings"]
    assert saved["secretVersions"] == ok["secretVersions"]
    again = steps.save_secrets(ctx, service_principal_id=sp_id, credentials=creds(HEALTHY_CREDENTIALS),
                               notification_email="ops@contoso.com")
    assert again == saved
    stored = sync.get_secret_keys(ctx.graph, sp_id)
    assert json.loads(stored["SyncNotificationSettings"])["Recipients"] == "ops@contoso.com"
    assert stored["SyncAll"] == "false"
    for result in (ok, saved):
        assert not any(v in json.dumps(result) for v in SEEDED_SECRETS.values())

    with pytest.raises(errors.InvalidCredentials) as caught:
        steps.validate_credentials(ctx, service_principal_id=sp_id, job_id=job_id, credentials=creds(WRONG_CREDENTIALS))
    text = str(caught.value) + json.dumps(caught.value.to_dict("validate_credentials"))
    assert "invalid credentials" in text and caught.value.kind == "permanent"
    assert not any(v in text for v in SEEDED_SECRETS.values())


def test_key_vault_problems_name_the_secret_not_the_value(ctx, core_env, make_ctx):
    sp_id = new_app(ctx, "Vault app")["servicePrincipalId"]
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id)["jobId"]
    missing = {"BaseAddress": "https://scim.contoso.test/scim/v2", "SecretToken": {"keyVaultSecret": "no-such-secret"}}
    with pytest.raises(errors.SecretNotFound) as caught:
        steps.validate_credentials(ctx, service_principal_id=sp_id, job_id=job_id, credentials=creds(missing))
    assert caught.value.secret_name == "no-such-secret" and "no-such-secret" in caught.value.message
    core_env.admin.add_client("graph-only", ["Application.ReadWrite.All", "Synchronization.ReadWrite.All"], key_vault="none")
    no_vault = make_ctx("graph-only")
    with pytest.raises(errors.SecretAccessDenied) as denied:
        no_vault.secrets.resolve(creds(HEALTHY_CREDENTIALS))
    assert denied.value.secret_name == "scim-contoso-token" and "Key Vault Secrets User" in denied.value.message
    assert "demo-scim-token" not in str(denied.value)


def test_missing_graph_permission_is_permanent(core_env, make_ctx):
    weak = make_ctx("unprivileged", visibility_wait_seconds=0.2)
    with pytest.raises(errors.PermissionDenied) as caught:
        steps.ensure_application(weak, batch_id="b", instance_key="k", display_name="Nope", template_id=CUSTOM_TEMPLATE_ID)
    assert caught.value.status == 403 and caught.value.code == "Authorization_RequestDenied"
    assert "lacks a Graph permission" in caught.value.message and caught.value.kind == "permanent"


def test_assign_principals_by_upn_and_group_name(ctx, core_env):
    sp_id = new_app(ctx, "Assigned app")["servicePrincipalId"]
    users = ["sean.obrien@contoso-emulator.onmicrosoft.com"]
    first = steps.assign_principals(ctx, service_principal_id=sp_id, users=users, groups=["AWS Admins", "Finance & Legal"])
    assert first == {"assigned": 3, "alreadyAssigned": 0}
    group_id = ctx.graph.get_all("/groups", {"$filter": odata.eq("displayName", "AWS Admins")})[0]["id"]
    again = steps.assign_principals(ctx, service_principal_id=sp_id, users=users, groups=[group_id])
    assert again == {"assigned": 0, "alreadyAssigned": 2}
    assert steps.assign_principals(ctx, service_principal_id=sp_id) == {"assigned": 0, "alreadyAssigned": 0}
    with pytest.raises(errors.NotFound):
        steps.assign_principals(ctx, service_principal_id=sp_id, users=["nobody@contoso-emulator.onmicrosoft.com"])
    with pytest.raises(errors.NotFound):
        steps.assign_principals(ctx, service_principal_id=sp_id, groups=["No such group"])
    with pytest.raises(errors.NotFound):
        steps.assign_principals(ctx, service_principal_id=sp_id, groups=["00000000-0000-0000-0000-000000000123"])


AWS_SINGLE_ACCOUNT = "8b1025e4-1dd2-430b-a150-2ef79cd700f5"
AWS_KEYS = {"ClientSecret": {"keyVaultSecret": "aws-contoso-access-key-id"},
            "SecretToken": {"keyVaultSecret": "aws-contoso-secret-access-key"}}


def test_assign_an_imported_aws_role_after_the_first_cycle_and_count_the_roles(ctx, core_env):
    """AWS Single-Account Access imports the account's IAM roles into the SP's appRoles during its first
    cycle; a role named in assignments exists only then."""
    name = "AWS Role Import"
    key = model.instance_key(name)
    sp_id = steps.ensure_application(ctx, batch_id="b1", instance_key=key, display_name=name,
                                     template_id=AWS_SINGLE_ACCOUNT)["servicePrincipalId"]
    steps.wait_until_visible(ctx, service_principal_id=sp_id, instance_key=key)
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id, application_template_id=AWS_SINGLE_ACCOUNT)["jobId"]
    assert steps.validate_credentials(ctx, service_principal_id=sp_id, job_id=job_id, credentials=creds(AWS_KEYS))
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=creds(AWS_KEYS))
    slept: list[float] = []
    clock = iter(range(10_000))
    quick = dataclasses.replace(ctx, sleep=slept.append, monotonic=lambda: float(next(clock)))
    # before the first cycle: the role is not there, the error says why and what there is
    with pytest.raises(errors.PermanentError) as missing:
        steps.assign_principals(quick, service_principal_id=sp_id, groups=["AWS Admins"], app_role="Admin,WAAD")
    assert missing.value.code == "AppRoleNotFound" and missing.value.kind == "permanent"
    assert "first cycle" in missing.value.message and "'msiam_access'" in missing.value.message
    # nothing imported yet: the count is read again while replication might hide the roles, then 0
    assert steps.assign_principals(quick, service_principal_id=sp_id, count_imported_roles=True) == \
        {"assigned": 0, "alreadyAssigned": 0, "rolesImported": 0}
    assert slept  # it did look again before believing "none"
    started = steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    core_env.admin.advance(3600)
    status = steps.get_job_status(ctx, service_principal_id=sp_id, job_id=job_id, started_at=started["startedAt"])
    assert status["status"]["state"] == "SteadyState"
    first = steps.assign_principals(ctx, service_principal_id=sp_id, groups=["AWS Admins"], app_role="Admin,WAAD",
                                    count_imported_roles=True)
    assert first == {"assigned": 1, "alreadyAssigned": 0, "rolesImported": 3}
    sp = apps.get_service_principal(ctx.graph, sp_id, select="id,appRoles")
    admin = next(r for r in sp["appRoles"] if r["displayName"] == "Admin,WAAD")
    assert admin["value"] == "arn:aws:iam::123456789012:role/Admin,arn:aws:iam::123456789012:saml-provider/WAAD"
    assigned = ctx.graph.get_all(f"/servicePrincipals/{sp_id}/appRoleAssignedTo")
    assert [a["appRoleId"] for a in assigned] == [admin["id"]]
    # idempotent; the role can be named by value too; another role for the same group is a new assignment
    again = steps.assign_principals(ctx, service_principal_id=sp_id, groups=["AWS Admins"], app_role=admin["value"],
                                    count_imported_roles=True)
    assert again == {"assigned": 0, "alreadyAssigned": 1, "rolesImported": 3}
    assert steps.assign_principals(ctx, service_principal_id=sp_id, groups=["AWS Admins"], app_role="Auditors,WAAD") \
        == {"assigned": 1, "alreadyAssigned": 0}
    with pytest.raises(errors.PermanentError) as unknown:
        steps.assign_principals(quick, service_principal_id=sp_id, groups=["AWS Admins"], app_role="Billing,WAAD",
                                count_imported_roles=True)
    assert unknown.value.code == "AppRoleNotFound" and "imported 3 roles" in unknown.value.message
    assert "'Admin,WAAD'" in unknown.value.message


def _configured(ctx, name: str, credentials: dict = HEALTHY_CREDENTIALS) -> tuple[str, str]:
    sp_id = new_app(ctx, name)["servicePrincipalId"]
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id)["jobId"]
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=creds(credentials))
    return sp_id, job_id


def test_start_once_then_status_until_steady(ctx, core_env):
    sp_id, job_id = _configured(ctx, "Started app")
    before = steps.get_job_status(ctx, service_principal_id=sp_id, job_id=job_id, started_at=None)
    assert before["status"]["state"] == "NotStarted"
    started = steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    assert started["started"] is True and started["alreadyRunning"] is False
    core_env.admin.clear_requests()
    again = steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    assert again["started"] is False and again["alreadyRunning"] is True
    assert graph_requests(core_env, method="POST") == []  # no second Start on a running job
    core_env.admin.advance(3 * 3600)
    status = steps.get_job_status(ctx, service_principal_id=sp_id, job_id=None, started_at=started["startedAt"])
    assert status["jobId"] == job_id and status["status"]["state"] == "SteadyState" and status["status"]["settled"]
    lonely = new_app(ctx, "No job yet")["servicePrincipalId"]
    assert steps.get_job_status(ctx, service_principal_id=lonely, job_id=None, started_at=None)["status"]["state"] == \
        steps.MISSING_JOB


def test_provisioning_errors_of_a_quarantined_job(ctx, core_env):
    sp_id, job_id = _configured(ctx, "Quarantined app", WRONG_CREDENTIALS)
    steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    core_env.admin.advance(4 * 3600)
    rows = steps.get_provisioning_errors(ctx, service_principal_id=sp_id, job_id=job_id, since="2000-01-01T00:00:00Z",
                                         top=5)["errors"]
    assert isinstance(rows, list)
    assert all(r["status"] == "failure" for r in rows)


def test_escrow_failures_show_in_provisioning_errors(ctx, core_env):
    wingtip = {"BaseAddress": "https://scim.wingtip.test/scim/v2", "SecretToken": {"keyVaultSecret": "scim-wingtip-token"}}
    sp_id, job_id = _configured(ctx, "Wingtip app", wingtip)
    steps.assign_principals(ctx, service_principal_id=sp_id, groups=["Engineering"])
    started = steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    core_env.admin.advance(2 * 3600)
    rows = steps.get_provisioning_errors(ctx, service_principal_id=sp_id, job_id=job_id,
                                         since=started["startedAt"], top=3)["errors"]
    assert 1 <= len(rows) <= 3
    assert rows[0]["status"] == "failure" and rows[0]["errorCode"] and rows[0]["source"]["displayName"]


def test_non_credential_quarantine_is_left_to_an_operator(ctx, core_env):
    deletes = {"BaseAddress": "https://too-many-deletes.scim.test/scim/v2",
               "SecretToken": {"keyVaultSecret": "scenario-target-token"}}
    sp_id, job_id = _configured(ctx, "Deletes app", deletes)
    steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    core_env.admin.advance(6 * 3600)
    status = steps.get_job_status(ctx, service_principal_id=sp_id, job_id=job_id, started_at=None)["status"]
    if status["state"] != "Quarantined":
        pytest.fail(f"emulator scenario did not quarantine: {status}")
    result = steps.restart_quarantined_job(ctx, service_principal_id=sp_id, job_id=job_id)
    assert result["restarted"] is False and "needs an operator" in result["reason"]


def test_list_managed_instances(ctx):
    new_app(ctx, "Fleet one", labels={"env": "prod"})
    new_app(ctx, "Fleet two")
    apps.instantiate(ctx.graph, CUSTOM_TEMPLATE_ID, "Not ours")
    listed = steps.list_managed_instances(ctx)["instances"]
    assert [i["displayName"] for i in listed] == ["Fleet one", "Fleet two"]
    assert listed[0]["labels"] == {"env": "prod"} and listed[0]["instanceKey"] == model.instance_key("Fleet one")
    assert listed[0]["applicationTemplateId"] == CUSTOM_TEMPLATE_ID


def test_a_client_lacking_one_role_gets_a_permanent_error_naming_the_call(ctx, core_env, make_ctx):
    sp_id, job_id = _configured(ctx, "Log reader app")
    core_env.admin.add_client("no-audit", ["Application.ReadWrite.All", "Synchronization.ReadWrite.All",
                                           "AppRoleAssignment.ReadWrite.All", "Directory.Read.All"], key_vault="read")
    weak = make_ctx("no-audit", visibility_wait_seconds=0.2)
    with pytest.raises(errors.PermissionDenied) as caught:
        steps.get_provisioning_errors(weak, service_principal_id=sp_id, job_id=job_id, since="2026-01-01T00:00:00Z")
    assert "/auditLogs/provisioning" in caught.value.message and caught.value.status == 403


def test_notes_hold_references_once_and_leave_foreign_notes_alone(ctx, core_env):
    sp_id = new_app(ctx, "Noted app", credentials=HEALTHY_CREDENTIALS)["servicePrincipalId"]
    key = model.instance_key("Noted app")
    patches = len(graph_requests(core_env, method="PATCH"))
    again = steps.wait_until_visible(ctx, service_principal_id=sp_id, instance_key=key,
                                     credentials=creds(HEALTHY_CREDENTIALS))
    assert again["tagged"] is True and len(graph_requests(core_env, method="PATCH")) == patches  # nothing to write
    steps.wait_until_visible(ctx, service_principal_id=sp_id, instance_key=key, credentials=creds(WRONG_CREDENTIALS))
    assert len(graph_requests(core_env, method="PATCH")) == patches + 1  # a re-submission with other references
    (listed,) = [i for i in steps.list_managed_instances(ctx)["instances"] if i["servicePrincipalId"] == sp_id]
    assert listed["credentials"] == WRONG_CREDENTIALS

    # An adopted app whose notes an operator wrote: tagged, notes kept, so no references to restart with.
    pair = apps.instantiate(ctx.graph, CUSTOM_TEMPLATE_ID, "Operator notes app")
    foreign = pair["servicePrincipal"]["id"]
    ctx.graph.patch(f"/servicePrincipals/{foreign}", {"notes": "owned by the identity team"})
    new_app(ctx, "Operator notes app", credentials=HEALTHY_CREDENTIALS)
    assert apps.get_service_principal(ctx.graph, foreign, select="id,notes")["notes"] == "owned by the identity team"
    (adopted,) = [i for i in steps.list_managed_instances(ctx)["instances"] if i["servicePrincipalId"] == foreign]
    assert "credentials" not in adopted
