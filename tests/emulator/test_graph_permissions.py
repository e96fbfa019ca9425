"""Graph authentication (401) and authorization per Graph's permission tables (links in
``emulator/permissions.py``): 403 on directory routes, 401 ``UnknownError`` (or 403, a setting) on
synchronization routes; instantiate makes the caller owner of nothing unless a setting says so."""

from __future__ import annotations

import pytest

from emulator_graph import NON_GALLERY, GraphClient, assert_graph_error, assert_refused


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


def test_workflow_client_holds_exactly_the_documented_permission_set(graph: GraphClient):
    """The seeded client is the app's README set, no more: emulator and core agree, in order."""
    import jwt

    from core.permissions import REQUIRED_GRAPH_PERMISSIONS
    from emulator.permissions import LEAST_PRIVILEGE_ROLES

    assert LEAST_PRIVILEGE_ROLES == list(REQUIRED_GRAPH_PERMISSIONS)
    roles = jwt.decode(graph.token, options={"verify_signature": False})["roles"]
    assert sorted(roles) == sorted(REQUIRED_GRAPH_PERMISSIONS)


def _sync_calls(sp_id: str, job_id: str = "scim.0000.0000") -> list[tuple[str, str, dict]]:
    base = f"servicePrincipals/{sp_id}/synchronization"
    creds = {"credentials": [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"}]}
    return [
        ("GET", f"{base}/templates", {}),
        ("GET", f"{base}/jobs", {}),
        ("POST", f"{base}/jobs", {"json": {"templateId": "scim"}}),
        ("GET", f"{base}/jobs/{job_id}", {}),
        ("POST", f"{base}/jobs/{job_id}/validateCredentials", {"json": creds}),
        ("POST", f"{base}/jobs/{job_id}/start", {}),
        ("POST", f"{base}/jobs/{job_id}/restart", {"json": {"criteria": {"resetScope": "Full"}}}),
        ("PUT", f"{base}/secrets", {"json": {"value": creds["credentials"]}}),
    ]


@pytest.mark.parametrize("status", [401, 403])
def test_synchronization_refusal_is_401_unknown_error_or_403_by_setting(emulator_env, graph_as, status):
    """Users report 401 UnknownError with an empty message (docs-contrib #8800); 403 is the setting."""
    admin = graph_as("admin")
    app, sp = admin.instantiate("Sync refusal target")
    job_id = admin.post(f"servicePrincipals/{sp['id']}/synchronization/jobs", json={"templateId": "scim"}).json()["id"]
    if status == 403:
        emulator_env.admin.settings(synchronizationDeniedStatus=403)
    assert emulator_env.admin.settings()["directory"]["synchronizationDeniedStatus"] == status
    # every documented permission but the synchronization one, plus the directory-wide ones
    emulator_env.admin.add_client("no-sync", ["Application.ReadWrite.All", "Directory.ReadWrite.All",
                                              "AppRoleAssignment.ReadWrite.All", "AuditLog.Read.All",
                                              "Directory.Read.All"])
    no_sync = graph_as("no-sync")
    for method, path, kwargs in _sync_calls(sp["id"], job_id):
        assert_refused(no_sync.request(method, path, **kwargs), status)
    assert_refused(no_sync.get(f"applications/{app['id']}/synchronization/templates"), status)
    # nothing changed: the admin still sees one job, not started
    jobs = admin.get(f"servicePrincipals/{sp['id']}/synchronization/jobs").json()["value"]
    assert [(j["id"], j["schedule"]["state"]) for j in jobs] == [(job_id, "Disabled")]
    # the same client's directory calls work, and a directory refusal stays a 403 whatever the setting
    assert no_sync.patch(f"servicePrincipals/{sp['id']}", json={"tags": ["x"]}).status_code == 204
    emulator_env.admin.add_client("reader", ["Application.Read.All"])
    assert_graph_error(graph_as("reader").patch(f"servicePrincipals/{sp['id']}", json={"tags": ["y"]}),
                       403, "Authorization_RequestDenied")


def test_synchronization_readwrite_all_needs_no_ownership(emulator_env, graph_as):
    """Synchronization.ReadWrite.All covers every synchronization call on any service principal, and nothing else."""
    _, sp = graph_as("admin").instantiate("Someone else's app")
    emulator_env.admin.add_client("sync-only", ["Synchronization.ReadWrite.All"])
    sync = graph_as("sync-only")
    base = f"servicePrincipals/{sp['id']}/synchronization"
    created = sync.post(f"{base}/jobs", json={"templateId": "scim"})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert sync.get(f"{base}/jobs/{job_id}").status_code == 200
    assert sync.put(f"{base}/secrets", json={"value": [{"key": "BaseAddress", "value": "https://x.test"}]}).status_code == 204
    assert_graph_error(sync.patch(f"servicePrincipals/{sp['id']}", json={"tags": ["x"]}), 403, "Authorization_RequestDenied")
    assert_graph_error(sync.get("servicePrincipals"), 403, "Authorization_RequestDenied")


def test_instantiate_makes_the_caller_owner_of_neither_object(emulator_env, graph_as):
    """Default: OwnedBy covers nothing after instantiate (microsoft-graph-docs #16545, msgraph-sdk-powershell #829)."""
    assert {k: v for k, v in emulator_env.admin.settings()["directory"].items() if k.startswith("instantiateOwns")} == \
        {"instantiateOwnsApplication": False, "instantiateOwnsServicePrincipal": False}
    emulator_env.admin.add_client("owned-by", ["Application.ReadWrite.OwnedBy", "Directory.Read.All"])
    owned_by = graph_as("owned-by")
    app, sp = owned_by.instantiate("Nobody's app")
    admin = graph_as("admin")
    assert admin.get(f"servicePrincipals/{sp['id']}/owners").json()["value"] == []
    assert admin.get(f"applications/{app['id']}/owners").json()["value"] == []
    # the tag PATCH, the synchronization calls and the discard DELETE all fail
    assert_graph_error(owned_by.patch(f"servicePrincipals/{sp['id']}", json={"tags": ["x"]}), 403, "Authorization_RequestDenied")
    assert_graph_error(owned_by.patch(f"applications/{app['id']}", json={"notes": "x"}), 403, "Authorization_RequestDenied")
    for method, path, kwargs in _sync_calls(sp["id"])[:3]:
        assert_refused(owned_by.request(method, path, **kwargs), 401)
    assert_graph_error(owned_by.delete(f"applications/{app['id']}"), 403, "Authorization_RequestDenied")
    # and OwnedBy cannot make itself owner (application-post-owners: it "will not be sufficient")
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{owned_by.sp_id}"}
    assert_graph_error(owned_by.post(f"applications/{app['id']}/owners/$ref", json=ref), 403, "Authorization_RequestDenied")
    assert_graph_error(owned_by.post(f"servicePrincipals/{sp['id']}/owners/$ref", json=ref), 403, "Authorization_RequestDenied")
    # Application.ReadWrite.All (the app's permission) needs no ownership for the directory calls
    workflow = graph_as("workflow")
    assert workflow.patch(f"servicePrincipals/{sp['id']}", json={"tags": ["x"]}).status_code == 204
    assert workflow.delete(f"applications/{app['id']}").status_code == 204
    assert_graph_error(workflow.get(f"servicePrincipals/{sp['id']}"), 404, "Request_ResourceNotFound")


@pytest.mark.parametrize("owns_app,owns_sp", [(True, False), (False, True), (True, True)])
def test_ownership_on_instantiate_is_a_setting(emulator_env, graph_as, owns_app, owns_sp):
    """The settings make the caller owner of that object; OwnedBy then works on exactly that object."""
    emulator_env.admin.settings(instantiateOwnsApplication=owns_app, instantiateOwnsServicePrincipal=owns_sp)
    emulator_env.admin.add_client("owned-by", ["Application.ReadWrite.OwnedBy"])
    owned_by = graph_as("owned-by")
    app, sp = owned_by.instantiate("Owned by setting")
    admin = graph_as("admin")
    assert [o["id"] for o in admin.get(f"applications/{app['id']}/owners").json()["value"]] == ([owned_by.sp_id] if owns_app else [])
    sp_owners = admin.get(f"servicePrincipals/{sp['id']}/owners").json()["value"]
    assert [o["id"] for o in sp_owners] == ([owned_by.sp_id] if owns_sp else [])
    assert all(o["@odata.type"] == "#microsoft.graph.servicePrincipal" for o in sp_owners)
    patch_app = owned_by.patch(f"applications/{app['id']}", json={"notes": "mine?"})
    patch_sp = owned_by.patch(f"servicePrincipals/{sp['id']}", json={"tags": ["x"]})
    jobs = owned_by.get(f"servicePrincipals/{sp['id']}/synchronization/jobs")
    assert patch_app.status_code == (204 if owns_app else 403), patch_app.text
    assert patch_sp.status_code == (204 if owns_sp else 403), patch_sp.text
    if owns_sp:
        assert jobs.status_code == 200, jobs.text
    else:
        assert_refused(jobs, 401)
    # ownership of the application alone does not reach the synchronization API
    via_app = owned_by.get(f"applications/{app['id']}/synchronization/templates")
    assert via_app.status_code == (200 if owns_sp else 401), via_app.text


def test_owned_by_works_on_service_principals_an_admin_made_it_owner_of(graph_as, emulator_env):
    emulator_env.admin.add_client("owned-by", ["Application.ReadWrite.OwnedBy"])
    owned_by = graph_as("owned-by")
    admin = graph_as("admin")
    _, sp = admin.instantiate("Owned by admin")
    # Listing everything is allowed with ...OwnedBy (DOC).
    names = {s["displayName"] for s in owned_by.get("servicePrincipals", params={"$top": "999"}).json()["value"]}
    assert "Owned by admin" in names
    assert_graph_error(owned_by.patch(f"servicePrincipals/{sp['id']}", json={"tags": ["x"]}), 403, "Authorization_RequestDenied")
    assert_refused(owned_by.get(f"servicePrincipals/{sp['id']}/synchronization/jobs"), 401)
    # Adding an owner needs Application.ReadWrite.All and Directory.Read.All (the admin has both).
    added = admin.post(f"servicePrincipals/{sp['id']}/owners/$ref",
                       json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{owned_by.sp_id}"})
    assert added.status_code == 204
    assert owned_by.patch(f"servicePrincipals/{sp['id']}", json={"tags": ["x"]}).status_code == 204
    assert owned_by.get(f"servicePrincipals/{sp['id']}/synchronization/jobs").status_code == 200
    removed = admin.delete(f"servicePrincipals/{sp['id']}/owners/{owned_by.sp_id}/$ref")
    assert removed.status_code == 204
    assert_refused(owned_by.get(f"servicePrincipals/{sp['id']}/synchronization/jobs"), 401)


def test_adding_an_owner_needs_application_readwrite_all(emulator_env, graph_as):
    """application-post-owners / serviceprincipal-post-owners: Application.ReadWrite.All and Directory.Read.All."""
    _, sp = graph_as("admin").instantiate("Owner grant")
    emulator_env.admin.add_client("app-rw-only", ["Application.ReadWrite.All"])
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{graph_as('workflow').sp_id}"}
    assert_graph_error(graph_as("app-rw-only").post(f"servicePrincipals/{sp['id']}/owners/$ref", json=ref),
                       403, "Authorization_RequestDenied")
    assert graph_as("workflow").post(f"servicePrincipals/{sp['id']}/owners/$ref", json=ref).status_code == 204


def test_synchronization_read_all_can_read_but_not_write(emulator_env, graph_as):
    admin = graph_as("admin")
    _, sp = admin.instantiate("Sync reader target")
    emulator_env.admin.add_client("sync-reader", ["Synchronization.Read.All"])
    reader = graph_as("sync-reader")
    assert reader.get(f"servicePrincipals/{sp['id']}/synchronization/templates").status_code == 200
    assert_refused(reader.post(f"servicePrincipals/{sp['id']}/synchronization/jobs", json={"templateId": "scim"}), 401)


@pytest.mark.parametrize("value", [400, 404, "401", True, None])
def test_bad_synchronization_denied_status_is_refused(emulator_env, value):
    import requests

    response = requests.patch(f"{emulator_env.env['EMULATOR_URL']}/settings",
                              json={"directory": {"synchronizationDeniedStatus": value}},
                              verify=emulator_env.ca_bundle, timeout=10)
    assert response.status_code == 400, response.text
    response = requests.patch(f"{emulator_env.env['EMULATOR_URL']}/settings",
                              json={"directory": {"instantiateOwnsApplication": "yes"}},
                              verify=emulator_env.ca_bundle, timeout=10)
    assert response.status_code == 400, response.text


def test_users_and_groups_need_their_own_read_permission(emulator_env, graph_as):
    """user-list: User.Read.All (or Directory.*); group-list-members: GroupMember.Read.All, Group.Read.All (or Directory.*)."""
    emulator_env.admin.add_client("groups-only", ["Group.Read.All"])
    emulator_env.admin.add_client("users-only", ["User.Read.All"])
    groups_only, users_only = graph_as("groups-only"), graph_as("users-only")
    group = groups_only.get("groups", params={"$top": "1"}).json()["value"][0]
    assert groups_only.get(f"groups/{group['id']}/members").status_code == 200
    assert_graph_error(groups_only.get("users"), 403, "Authorization_RequestDenied")
    assert users_only.get("users").status_code == 200
    assert_graph_error(users_only.get("groups"), 403, "Authorization_RequestDenied")
    workflow = graph_as("workflow")  # Directory.Read.All reads both
    assert workflow.get("users").status_code == 200 and workflow.get("groups").status_code == 200
