"""The workflow under the emulator's default authorization model (Graph's, pessimistic): the
``workflow`` client holds exactly the documented permissions (core.permissions), instantiate makes
it owner of nothing, and every instance reaches steady state. With one permission removed (through
Graph, as an admin would) the instance fails at the step that needs it, and the reason names that
permission - under both refusals of the synchronization API (401 ``UnknownError``, the default,
and 403, a setting) and a 403 of the directory API. Tokens are cached about an hour by
azure-identity, so devhost is restarted (a fresh process, a fresh token) after each removal.
"""

from __future__ import annotations

import jwt
import pytest
import requests
from support import Stack, make_batch

from core import names
from core.permissions import REQUIRED_GRAPH_PERMISSIONS

pytestmark = pytest.mark.timeout(240)

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # a 403 right after a create is waited out as replication lag for VISIBILITY_WAIT_SECONDS: keep it short
    running = Stack(tmp_path_factory.mktemp("workflow-permissions"), time_scale=30.0,
                    env={"VISIBILITY_WAIT_SECONDS": "2"})
    yield running
    running.stop()


class AdminGraph:
    """The emulator's admin client over real Graph calls (what a tenant admin would do)."""

    def __init__(self, stack: Stack) -> None:
        emu = stack.emulator
        admin = emu.admin.client("admin")
        token = requests.post(f"{emu.url}/{emu.env['AZURE_TENANT_ID']}/oauth2/v2.0/token",
                              data={"grant_type": "client_credentials", "client_id": admin["clientId"],
                                    "client_secret": admin["secret"], "scope": "https://graph.microsoft.com/.default"},
                              verify=emu.ca_bundle, timeout=10).json()["access_token"]
        self.base = f"{emu.url}/v1.0"
        self.ca = emu.ca_bundle
        self.headers = {"Authorization": f"Bearer {token}"}
        self.workflow_sp = emu.admin.client("workflow")["servicePrincipalId"]

    def get(self, path: str) -> dict:
        response = requests.get(f"{self.base}/{path}", headers=self.headers, verify=self.ca, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def revoke(self, permission: str) -> None:
        graph_sp = self.get(f"servicePrincipals(appId='{GRAPH_APP_ID}')")
        role_id = {r["value"]: r["id"] for r in graph_sp["appRoles"]}[permission]
        (assignment,) = [a for a in self.get(f"servicePrincipals/{self.workflow_sp}/appRoleAssignments")["value"]
                         if a["appRoleId"] == role_id]
        response = requests.delete(f"{self.base}/servicePrincipals/{self.workflow_sp}/appRoleAssignments/{assignment['id']}",
                                   headers=self.headers, verify=self.ca, timeout=30)
        assert response.status_code == 204, response.text

    def granted(self) -> list[str]:
        graph_sp = self.get(f"servicePrincipals(appId='{GRAPH_APP_ID}')")
        names_by_id = {r["id"]: r["value"] for r in graph_sp["appRoles"]}
        return sorted(names_by_id[a["appRoleId"]]
                      for a in self.get(f"servicePrincipals/{self.workflow_sp}/appRoleAssignments")["value"])


def _run_one(stack: Stack, request_id: str, name: str) -> dict:
    batch_id = stack.submit({**make_batch(request_id, 1, prefix=name)})
    status = stack.wait(batch_id, timeout=150)
    assert status["runtimeStatus"] == "Completed", status
    (instance,) = status["output"]["instances"]
    return instance


def _workflow_roles_seen_by_graph(stack: Stack) -> set[str]:
    """The roles of the token the workflow client presents (every call it made carries the same)."""
    directory = stack.emulator.state.directory
    return set(directory.roles_of(directory.client_by_name("workflow")["servicePrincipalId"]))


def test_documented_permissions_alone_reach_steady_state_without_ownership(stack):
    settings = stack.emulator.admin.settings()["directory"]
    assert settings["instantiateOwnsApplication"] is False and settings["instantiateOwnsServicePrincipal"] is False
    assert settings["synchronizationDeniedStatus"] == 401
    assert AdminGraph(stack).granted() == sorted(REQUIRED_GRAPH_PERMISSIONS)
    token = stack.emulator.admin.token("workflow")
    assert sorted(jwt.decode(token, options={"verify_signature": False})["roles"]) == sorted(REQUIRED_GRAPH_PERMISSIONS)

    batch_id = stack.submit(make_batch("perm-all-001", 3, prefix="Perm Steady"))
    status = stack.wait(batch_id, timeout=150)
    report = status["output"]
    assert report["counts"]["steadyState"] == 3, [(i["displayName"], i["outcome"], i["reason"]) for i in report["instances"]]
    assert [r for r in stack.graph_requests(kind="graph") if r["status"] in (401, 403)] == []
    owners = stack.emulator.state.directory.owners
    for instance in report["instances"]:
        ids = instance["ids"]
        assert owners.get(ids["servicePrincipalId"], []) == [] and owners.get(ids["applicationId"], []) == []


@pytest.mark.parametrize("sync_status", [401, 403])
def test_without_synchronization_permission_the_instance_fails_at_ensure_job_naming_it(stack, sync_status):
    admin = AdminGraph(stack)
    if "Synchronization.ReadWrite.All" in admin.granted():
        admin.revoke("Synchronization.ReadWrite.All")
        stack.host.restart()  # a fresh process: a fresh token without the permission
    assert "Synchronization.ReadWrite.All" not in _workflow_roles_seen_by_graph(stack)
    stack.emulator.admin.settings(synchronizationDeniedStatus=sync_status)

    name = f"Perm NoSync {sync_status}"
    instance = _run_one(stack, f"perm-nosync-{sync_status}", name)
    assert instance["outcome"] == "failed"
    error = instance["error"]
    assert error["step"] == names.ENSURE_JOB and error["kind"] == "permanent"
    assert error["status"] == sync_status
    assert error["code"] == ("UnknownError" if sync_status == 401 else "Authorization_RequestDenied")
    assert error["missingPermissions"] == ["Synchronization.ReadWrite.All"]
    assert instance["reason"].startswith("ensure_job: ensure_job needs the Graph application permission(s) "
                                         "Synchronization.ReadWrite.All")
    # one application, tagged (the steps before ran with Application.ReadWrite.All), no job
    (sp,) = stack.service_principals_by_name()[f"{name} 001"]
    assert stack.applications_by_name()[f"{name} 001"] == 1
    assert stack.jobs_of(sp["id"]) == []
    refused = [r for r in stack.graph_requests(pathContains=sp["id"]) if r["status"] >= 400]
    assert refused and {r["status"] for r in refused} == {sync_status}
    assert all("/synchronization/" in r["path"] for r in refused)
    if sync_status == 401:
        assert len(refused) == 2  # one refusal, one repeat with a new token: never waited out as lag


def test_without_app_role_assignment_permission_the_instance_fails_at_assign_principals(stack):
    admin = AdminGraph(stack)
    graph_sp = admin.get(f"servicePrincipals(appId='{GRAPH_APP_ID}')")
    role_ids = {r["value"]: r["id"] for r in graph_sp["appRoles"]}
    # put Synchronization.ReadWrite.All back and take AppRoleAssignment.ReadWrite.All away
    response = requests.post(f"{admin.base}/servicePrincipals/{admin.workflow_sp}/appRoleAssignments",
                             json={"principalId": admin.workflow_sp, "resourceId": graph_sp["id"],
                                   "appRoleId": role_ids["Synchronization.ReadWrite.All"]},
                             headers=admin.headers, verify=admin.ca, timeout=30)
    assert response.status_code == 201, response.text
    admin.revoke("AppRoleAssignment.ReadWrite.All")
    stack.host.restart()

    instance = _run_one(stack, "perm-noassign-001", "Perm NoAssign")
    assert instance["outcome"] == "failed"
    error = instance["error"]
    assert error["step"] == names.ASSIGN_PRINCIPALS and error["status"] == 403
    assert error["code"] == "Authorization_RequestDenied"
    assert error["missingPermissions"] == ["AppRoleAssignment.ReadWrite.All"]
    assert "assign_principals needs the Graph application permission(s) AppRoleAssignment.ReadWrite.All" in instance["reason"]
    (sp,) = stack.service_principals_by_name()["Perm NoAssign 001"]
    assert len(stack.jobs_of(sp["id"])) == 1  # the synchronization steps before it ran
