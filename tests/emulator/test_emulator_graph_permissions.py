"""Graph authentication (401) and authorization (403) per the reference's permission table."""

from __future__ import annotations

import pytest

from emulator_graph import NON_GALLERY, GraphClient, assert_graph_error


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Basic abc", "Bearer not-a-jwt", "Bearer a.b.c"],
)
def test_missing_or_malformed_token(graph: GraphClient, header):
    headers = {"Authorization": header} if header else {}
    response = graph.get("servicePrincipals", token=None, headers=headers)
    assert_graph_error(response, 401, "InvalidAuthenticationToken")
    assert "WWW-Authenticate" in response.headers


def test_expired_token(graph: GraphClient, emulator_env):
    expired = emulator_env.admin.token("workflow", lifetime_seconds=-60)
    error = assert_graph_error(graph.get("servicePrincipals", token=expired), 401, "InvalidAuthenticationToken")
    assert "expired" in error["message"]


def test_vault_token_is_refused_by_graph(graph: GraphClient, emulator_env):
    vault = emulator_env.admin.token("workflow", audience="vault")
    error = assert_graph_error(graph.get("servicePrincipals", token=vault), 401, "InvalidAuthenticationToken")
    assert "audience" in error["message"]


def test_token_signed_with_another_key(graph: GraphClient):
    import jwt

    forged = jwt.encode({"aud": "https://graph.microsoft.com", "exp": 4102444800}, "another-key-that-is-long-enough-for-hs256", algorithm="HS256")
    assert_graph_error(graph.get("servicePrincipals", token=forged), 401, "InvalidAuthenticationToken")


def test_client_request_id_is_echoed(graph: GraphClient):
    response = graph.get("servicePrincipals/00000000-0000-0000-0000-0000000000aa", headers={"client-request-id": "my-corr-id"})
    error = assert_graph_error(response, 404, "Request_ResourceNotFound")
    assert error["innerError"]["client-request-id"] == "my-corr-id"
    assert response.headers["client-request-id"] == "my-corr-id"
    assert response.headers["request-id"] != "my-corr-id"


def test_templates_need_only_a_valid_token(graph_as):
    nobody = graph_as("unprivileged")
    assert nobody.get("applicationTemplates").status_code == 200
    assert_graph_error(nobody.post(f"applicationTemplates/{NON_GALLERY}/instantiate", json={"displayName": "x"}),
                       403, "Authorization_RequestDenied")
    assert_graph_error(nobody.get("servicePrincipals"), 403, "Authorization_RequestDenied")
    assert_graph_error(nobody.get("users"), 403, "Authorization_RequestDenied")
    assert_graph_error(nobody.get("auditLogs/provisioning"), 403, "Authorization_RequestDenied")


def test_audit_logs_need_both_permissions(emulator_env, graph_as):
    emulator_env.admin.add_client("audit-only", ["AuditLog.Read.All"])
    emulator_env.admin.add_client("audit-and-directory", ["AuditLog.Read.All", "Directory.Read.All"])
    assert_graph_error(graph_as("audit-only").get("auditLogs/provisioning"), 403, "Authorization_RequestDenied")
    assert graph_as("audit-and-directory").get("auditLogs/provisioning").status_code == 200


def test_assignment_needs_role_and_read_permission(emulator_env, graph_as):
    admin = graph_as("admin")
    _, sp = admin.instantiate("Assignment permission app")
    user = admin.get("users", params={"$top": "1"}).json()["value"][0]
    body = {"principalId": user["id"], "resourceId": sp["id"], "appRoleId": sp["appRoles"][0]["id"]}
    emulator_env.admin.add_client("assign-only", ["AppRoleAssignment.ReadWrite.All"])
    assert_graph_error(graph_as("assign-only").post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo", json=body),
                       403, "Authorization_RequestDenied")
    assert graph_as("workflow").post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo", json=body).status_code == 201


def test_owned_by_allows_own_objects_only(graph_as):
    workflow = graph_as("workflow")
    admin = graph_as("admin")
    app, own_sp = workflow.instantiate("Owned by workflow")
    _, foreign_sp = admin.instantiate("Owned by admin")
    # Listing everything is allowed with ...OwnedBy (DOC).
    names = {sp["displayName"] for sp in workflow.get("servicePrincipals", params={"$top": "999"}).json()["value"]}
    assert {"Owned by workflow", "Owned by admin"} <= names
    # Instantiate made the caller owner of both objects.
    owners = workflow.get(f"servicePrincipals/{own_sp['id']}/owners").json()["value"]
    assert [o["id"] for o in owners] == [workflow.sp_id]
    assert owners[0]["@odata.type"] == "#microsoft.graph.servicePrincipal"
    assert [o["id"] for o in workflow.get(f"applications/{app['id']}/owners").json()["value"]] == [workflow.sp_id]
    # Writes and synchronization on own objects work, on others' objects they are denied.
    assert workflow.patch(f"servicePrincipals/{own_sp['id']}", json={"tags": ["x"]}).status_code == 204
    assert workflow.get(f"servicePrincipals/{own_sp['id']}/synchronization/jobs").status_code == 200
    assert_graph_error(workflow.patch(f"servicePrincipals/{foreign_sp['id']}", json={"tags": ["x"]}),
                       403, "Authorization_RequestDenied")
    assert_graph_error(workflow.get(f"servicePrincipals/{foreign_sp['id']}/synchronization/jobs"),
                       403, "Authorization_RequestDenied")
    assert_graph_error(workflow.put(f"servicePrincipals/{foreign_sp['id']}/synchronization/secrets", json={"value": []}),
                       403, "Authorization_RequestDenied")
    # Once the admin adds the workflow app as owner, the same call is allowed.
    added = admin.post(f"servicePrincipals/{foreign_sp['id']}/owners/$ref",
                       json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{workflow.sp_id}"})
    assert added.status_code == 204
    assert workflow.get(f"servicePrincipals/{foreign_sp['id']}/synchronization/jobs").status_code == 200
    removed = admin.delete(f"servicePrincipals/{foreign_sp['id']}/owners/{workflow.sp_id}/$ref")
    assert removed.status_code == 204
    assert_graph_error(workflow.get(f"servicePrincipals/{foreign_sp['id']}/synchronization/jobs"),
                       403, "Authorization_RequestDenied")


def test_sp_ownership_on_instantiate_is_a_setting(emulator_env, graph_as):
    emulator_env.admin.settings(instantiateOwnsServicePrincipal=False)
    workflow = graph_as("workflow")
    app, sp = workflow.instantiate("App owner only")
    assert workflow.get(f"servicePrincipals/{sp['id']}/owners").json()["value"] == []
    assert_graph_error(workflow.get(f"servicePrincipals/{sp['id']}/synchronization/templates"),
                       403, "Authorization_RequestDenied")
    assert workflow.patch(f"applications/{app['id']}", json={"notes": "still mine"}).status_code == 204
    # Deleting the application (owned) is allowed and takes the SP with it.
    assert workflow.delete(f"applications/{app['id']}").status_code == 204
    assert_graph_error(workflow.get(f"servicePrincipals/{sp['id']}"), 404, "Request_ResourceNotFound")


def test_synchronization_read_all_can_read_but_not_write(emulator_env, graph_as):
    admin = graph_as("admin")
    _, sp = admin.instantiate("Sync reader target")
    emulator_env.admin.add_client("sync-reader", ["Synchronization.Read.All"])
    reader = graph_as("sync-reader")
    assert reader.get(f"servicePrincipals/{sp['id']}/synchronization/templates").status_code == 200
    assert_graph_error(reader.post(f"servicePrincipals/{sp['id']}/synchronization/jobs", json={"templateId": "scim"}),
                       403, "Authorization_RequestDenied")
