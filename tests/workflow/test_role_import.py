"""AWS Single-Account Access (the seed article's example app) through the whole workflow on devhost +
emulator: its job imports the AWS account's IAM roles into the service principal's appRoles and
provisions no users (https://learn.microsoft.com/entra/identity/saas-apps/amazon-web-service-tutorial).
The report counts the imported roles; an assignment naming an AWS role is made after the first cycle.
"""

from __future__ import annotations

import pytest
from support import Stack, load_example

from core import names

pytestmark = pytest.mark.timeout(240)

AWS = {"displayName": "AWS Single-Account Access"}
KEYS = {"ClientSecret": {"keyVaultSecret": "aws-contoso-access-key-id"},
        "SecretToken": {"keyVaultSecret": "aws-contoso-secret-access-key"}}
IMPORTED = {"Admin,WAAD", "Auditors,WAAD", "Developers,WAAD"}


def instance(name: str, assignments: dict | None = None) -> dict:
    body = {"applicationTemplate": AWS, "displayName": name, "credentials": KEYS}
    if assignments:
        body["assignments"] = assignments
    return body


REQUEST = {"requestId": "aws-roles-001", "instances": [
    instance("AWS Roles Admins", {"groups": ["AWS Admins"], "users": ["sean.obrien@contoso-emulator.onmicrosoft.com"],
                                  "appRole": "Admin,WAAD"}),
    instance("AWS Roles Default", {"groups": ["SaaS Pilot"]}),
    instance("AWS Roles Unknown Role", {"groups": ["AWS Admins"], "appRole": "Billing,WAAD"}),
]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # a named role that never appears is looked for again for VISIBILITY_WAIT_SECONDS (replication
    # lag) before the instance fails: 5 s instead of 60 here
    running = Stack(tmp_path_factory.mktemp("workflow-role-import"), time_scale=30.0,
                    env={"VISIBILITY_WAIT_SECONDS": "5"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def report(stack):
    batch_id = stack.submit(REQUEST)
    status = stack.wait(batch_id, timeout=150)
    assert status["runtimeStatus"] == "Completed", status
    return {inst["displayName"]: inst for inst in status["output"]["instances"]}


def app_roles(stack, sp_id: str) -> list[dict]:
    return stack.emulator.state.directory.service_principals[sp_id]["appRoles"]


def assignments(stack, sp_id: str) -> set[tuple[str, str]]:
    """(principal display name, app role display name) of every assignment to the SP."""
    directory = stack.emulator.state.directory
    roles = {r["id"]: r["displayName"] for r in app_roles(stack, sp_id)}
    return {(a["principalDisplayName"], roles.get(a["appRoleId"], a["appRoleId"]))
            for a in directory.assignments.values() if a["resourceId"] == sp_id}


def test_roles_are_imported_and_reported_and_the_named_role_is_assigned_after_the_first_cycle(stack, report):
    admins = report["AWS Roles Admins"]
    assert admins["outcome"] == "steadyState", admins
    assert admins["jobKind"] == "roleImport" and admins["rolesImported"] == 3
    sp_id = admins["ids"]["servicePrincipalId"]
    roles = app_roles(stack, sp_id)
    imported = [r for r in roles if r.get("origin") == "ServicePrincipal"]
    assert {r["displayName"] for r in imported} == IMPORTED
    assert {"User", "msiam_access"} <= {r["displayName"] for r in roles}  # the template's roles stay
    assert assignments(stack, sp_id) == {("AWS Admins", "Admin,WAAD"), ("Sean O'Brien", "Admin,WAAD")}
    # the job never exported a user: its log rows are role imports only
    rows = [r for r in stack.emulator.state.provisioning.provisioning_logs("v1.0") if r["jobId"] == admins["ids"]["jobId"]]
    assert rows and {(r["sourceIdentity"]["identityType"], r["targetIdentity"]["identityType"]) for r in rows} == {("Role", "AppRole")}
    assert {r["sourceIdentity"]["displayName"] for r in rows} == IMPORTED


def test_without_a_named_role_principals_get_the_default_role_at_setup(stack, report):
    default = report["AWS Roles Default"]
    assert default["outcome"] == "steadyState" and default["rolesImported"] == 3
    assert assignments(stack, default["ids"]["servicePrincipalId"]) == {("SaaS Pilot", "User")}


def test_a_role_the_account_does_not_have_fails_the_instance_at_the_assignment(stack, report):
    unknown = report["AWS Roles Unknown Role"]
    assert unknown["outcome"] == "failed" and unknown["rolesImported"] is None
    assert unknown["error"]["step"] == names.ASSIGN_PRINCIPALS and unknown["error"]["code"] == "AppRoleNotFound"
    assert unknown["error"]["kind"] == "permanent"
    assert "imported 3 roles" in unknown["reason"] and "'Admin,WAAD'" in unknown["reason"]
    sp_id = unknown["ids"]["servicePrincipalId"]
    assert {r["displayName"] for r in app_roles(stack, sp_id) if r.get("origin") == "ServicePrincipal"} == IMPORTED
    assert assignments(stack, sp_id) == set()  # nothing half-assigned


def test_summary_shows_the_imported_roles(stack, report):
    summary = stack.summary("aws-roles-001")
    views = {view["displayName"]: view for view in summary["instances"]}
    assert views["AWS Roles Admins"]["rolesImported"] == 3 and views["AWS Roles Admins"]["jobKind"] == "roleImport"
    assert views["AWS Roles Unknown Role"]["outcome"] == "failed"
    assert summary["counts"] == {"total": 3, "steadyState": 2, "steadyWithFailures": 0, "quarantined": 0, "failed": 1, "timedOut": 0}


def test_running_the_instance_again_creates_and_duplicates_nothing(stack, report):
    first = report["AWS Roles Admins"]
    sp_id = first["ids"]["servicePrincipalId"]
    roles_before = [dict(r) for r in app_roles(stack, sp_id)]
    again = stack.wait(stack.submit({"requestId": "aws-roles-002", "instances": [REQUEST["instances"][0]]}), timeout=150)
    (second,) = again["output"]["instances"]
    assert second["outcome"] == "steadyState" and second["rolesImported"] == 3
    assert second["ids"] == first["ids"]
    assert stack.applications_by_name()["AWS Roles Admins"] == 1
    assert app_roles(stack, sp_id) == roles_before  # no role imported twice
    assert assignments(stack, sp_id) == {("AWS Admins", "Admin,WAAD"), ("Sean O'Brien", "Admin,WAAD")}


def test_the_published_example_runs(stack, report):
    status = stack.wait(stack.submit(load_example("aws-single-account-access.json")), timeout=150)
    (inst,) = status["output"]["instances"]
    assert inst["outcome"] == "steadyState" and inst["rolesImported"] == 3, inst
    assert assignments(stack, inst["ids"]["servicePrincipalId"]) == {("AWS Admins", "Admin,WAAD")}
