"""Graph directory objects: templates, instantiate, applications, service principals, people,
groups and app role assignments, shaped as Graph's v1.0/beta pages show them (links in emulator/README.md)."""

from __future__ import annotations

import re

import pytest

from emulator_graph import AWS_SINGLE_ACCOUNT, NON_GALLERY, GraphClient, assert_graph_error

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_template_list_filters_and_get(graph: GraphClient):
    all_templates = graph.get("applicationTemplates").json()
    assert all_templates["@odata.context"].endswith("/v1.0/$metadata#applicationTemplates")
    assert len(all_templates["value"]) >= 9
    names = {t["displayName"] for t in all_templates["value"]}
    for expected in ("AWS Single-Account Access", "ServiceNow", "Slack", "Box", "Zoom"):
        assert any(expected in name for name in names), expected
    exact = graph.get("applicationTemplates", params={"$filter": "displayName eq 'AWS Single-Account Access'"}).json()["value"]
    assert [t["id"] for t in exact] == [AWS_SINGLE_ACCOUNT]
    assert set(exact[0]) >= {"id", "displayName", "homePageUrl", "supportedSingleSignOnModes",
                             "supportedProvisioningTypes", "logoUrl", "categories", "publisher", "description"}
    starts = graph.get("applicationTemplates", params={"$filter": "startswith(displayName,'aws')"}).json()["value"]
    assert len(starts) >= 2 and all(t["displayName"].lower().startswith("aws") for t in starts)
    contains = graph.get("applicationTemplates", params={"$filter": "contains(displayName,'Single-Account')"}).json()["value"]
    assert [t["id"] for t in contains] == [AWS_SINGLE_ACCOUNT]
    one = graph.get(f"applicationTemplates/{NON_GALLERY}")
    assert one.status_code == 200 and one.json()["id"] == NON_GALLERY
    assert_graph_error(graph.get("applicationTemplates/00000000-0000-0000-0000-000000000123"), 404, "Request_ResourceNotFound")


def test_template_paging(graph: GraphClient):
    first = graph.get("applicationTemplates", params={"$top": "3"}).json()
    assert len(first["value"]) == 3 and "$skiptoken=" in first["@odata.nextLink"]
    everything = graph.all_pages("applicationTemplates", **{"$top": "3"})
    assert len(everything) == len(graph.get("applicationTemplates").json()["value"])
    assert len({t["id"] for t in everything}) == len(everything)


@pytest.mark.parametrize("version", ["v1.0", "beta"])
def test_instantiate_shape(graph_as, version):
    client = graph_as("workflow", version)
    response = client.post(f"applicationTemplates/{AWS_SINGLE_ACCOUNT}/instantiate", json={"displayName": "AWS Contoso"})
    assert response.status_code == 201
    body = response.json()
    assert body["@odata.context"].endswith(f"/{version}/$metadata#microsoft.graph.applicationServicePrincipal")
    app, sp = body["application"], body["servicePrincipal"]
    assert GUID.match(app["id"]) and GUID.match(app["appId"]) and GUID.match(sp["id"])
    assert app["appId"] == sp["appId"]
    assert app["applicationTemplateId"] == sp["applicationTemplateId"] == AWS_SINGLE_ACCOUNT
    assert app["displayName"] == sp["displayName"] == sp["appDisplayName"] == "AWS Contoso"
    assert app["signInAudience"] == "AzureADMyOrg"
    assert {r["displayName"] for r in app["appRoles"]} >= {"msiam_access", "User"}
    assert sp["tags"] == ["WindowsAzureActiveDirectoryIntegratedApp"]
    assert sp["appRoleAssignmentRequired"] is True
    assert sp["servicePrincipalType"] == "Application"
    assert sp["servicePrincipalNames"] == [app["appId"]]
    assert sp["accountEnabled"] is True and sp["preferredSingleSignOnMode"] is None
    assert sp["appRoles"] == app["appRoles"]
    assert app["deletedDateTime"] is None and app["createdDateTime"].endswith("Z")


def test_non_gallery_instance_is_tagged_custom(graph: GraphClient):
    _, sp = graph.instantiate("Custom SCIM app")
    assert sp["tags"] == ["WindowsAzureActiveDirectoryIntegratedApp", "WindowsAzureActiveDirectoryCustomSingleSignOnApplication"]


def test_instantiate_is_not_idempotent(graph: GraphClient):
    first_app, _ = graph.instantiate("Same name")
    second_app, _ = graph.instantiate("Same name")
    assert first_app["id"] != second_app["id"]
    found = graph.get("applications", params={"$filter": "displayName eq 'Same name'"}).json()["value"]
    assert {a["id"] for a in found} == {first_app["id"], second_app["id"]}


def test_quotes_and_unicode_round_trip(graph: GraphClient):
    _, sp = graph.instantiate("O'Brien's Zoë app ✓")
    by_eq = graph.get("servicePrincipals", params={"$filter": "displayName eq 'O''Brien''s Zoë app ✓'"}).json()["value"]
    assert [s["id"] for s in by_eq] == [sp["id"]]
    assert by_eq[0]["displayName"] == "O'Brien's Zoë app ✓"
    by_prefix = graph.get("servicePrincipals", params={"$filter": "startswith(displayName,'o''brien')"}).json()["value"]
    assert [s["id"] for s in by_prefix] == [sp["id"]]
    user = graph.get("users", params={"$filter": "surname eq 'O''Brien'"}).json()["value"]
    assert [u["displayName"] for u in user] == ["Sean O'Brien"]
    unicode_user = graph.get("users", params={"$filter": "startswith(displayName,'Zoë')"}).json()["value"]
    assert [u["surname"] for u in unicode_user] == ["Ångström"]


def test_find_by_template_tags_and_app_id(graph: GraphClient):
    app, sp = graph.instantiate("Finder app", AWS_SINGLE_ACCOUNT)
    graph.instantiate("Other app")
    by_template = graph.get("servicePrincipals", params={"$filter": f"applicationTemplateId eq '{AWS_SINGLE_ACCOUNT}'"}).json()["value"]
    assert [s["id"] for s in by_template] == [sp["id"]]
    apps_by_template = graph.get("applications", params={"$filter": f"applicationTemplateId eq '{AWS_SINGLE_ACCOUNT}'"}).json()["value"]
    assert [a["id"] for a in apps_by_template] == [app["id"]]
    assert graph.patch(f"servicePrincipals/{sp['id']}",
                       json={"tags": ["WindowsAzureActiveDirectoryIntegratedApp", "entra-provisioning-fleet"]}).status_code == 204
    tagged = graph.get("servicePrincipals", params={"$filter": "tags/any(t:t eq 'entra-provisioning-fleet')",
                                                      "$select": "id,displayName,tags"}).json()
    assert [s["id"] for s in tagged["value"]] == [sp["id"]]
    assert set(tagged["value"][0]) == {"id", "displayName", "tags"}
    by_app_id = graph.get("servicePrincipals", params={"$filter": f"appId eq '{app['appId']}'"}).json()["value"]
    assert [s["id"] for s in by_app_id] == [sp["id"]]
    alt = graph.get(f"servicePrincipals(appId='{app['appId']}')")
    assert alt.status_code == 200 and alt.json()["id"] == sp["id"]
    alt_app = graph.get(f"applications(appId='{app['appId']}')")
    assert alt_app.status_code == 200 and alt_app.json()["id"] == app["id"]
    assert_graph_error(graph.get("servicePrincipals(appId='00000000-0000-0000-0000-00000000dead')"), 404, "Request_ResourceNotFound")


def test_patch_tags_replaces_the_collection(graph: GraphClient):
    app, sp = graph.instantiate("Patch me")
    assert graph.patch(f"servicePrincipals/{sp['id']}", json={"tags": ["a", "b"], "notes": "n"}).status_code == 204
    fetched = graph.get(f"servicePrincipals/{sp['id']}").json()
    assert fetched["tags"] == ["a", "b"] and fetched["notes"] == "n"
    assert fetched["@odata.context"].endswith("$metadata#servicePrincipals/$entity")
    assert graph.patch(f"applications/{app['id']}", json={"tags": ["x"]}).status_code == 204
    assert graph.get(f"applications/{app['id']}").json()["tags"] == ["x"]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"appId": "00000000-0000-0000-0000-000000000000"}, "read-only"),
        ({"servicePrincipalType": "Legacy"}, "read-only"),
        ({"noSuchProperty": 1}, "does not exist"),
        ({"tags": "not-a-list"}, "tags"),
        ({"tags": [1, 2]}, "tags"),
        ({"accountEnabled": "yes"}, "accountEnabled"),
        ({"displayName": "  "}, "displayName"),
    ],
)
def test_patch_rejects_bad_fields(graph: GraphClient, body, fragment):
    _, sp = graph.instantiate("Bad patch target")
    error = assert_graph_error(graph.patch(f"servicePrincipals/{sp['id']}", json=body), 400, "Request_BadRequest")
    assert fragment in error["message"]


def test_delete_application_removes_sp_and_jobs(graph: GraphClient):
    app, sp = graph.instantiate("Delete me")
    job = graph.post(f"servicePrincipals/{sp['id']}/synchronization/jobs", json={"templateId": "scim"})
    assert job.status_code == 201, job.text
    assert graph.delete(f"applications/{app['id']}").status_code == 204
    assert_graph_error(graph.get(f"applications/{app['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(graph.get(f"servicePrincipals/{sp['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(graph.get(f"servicePrincipals/{sp['id']}/synchronization/jobs"), 404, "Request_ResourceNotFound")
    assert_graph_error(graph.delete(f"applications/{app['id']}"), 404, "Request_ResourceNotFound")


def test_delete_service_principal_keeps_application(graph_as):
    admin = graph_as("admin")
    app, sp = admin.instantiate("SP only")
    assert admin.delete(f"servicePrincipals/{sp['id']}").status_code == 204
    assert admin.get(f"applications/{app['id']}").status_code == 200
    assert_graph_error(admin.get(f"servicePrincipals/{sp['id']}"), 404, "Request_ResourceNotFound")


def test_users_groups_members(graph: GraphClient):
    users = graph.all_pages("users", **{"$top": "7"})
    assert len(users) >= 30
    assert len({u["id"] for u in users}) == len(users)
    assert all(u["userPrincipalName"].endswith(".onmicrosoft.com") for u in users)
    first = graph.get(f"users/{users[0]['id']}").json()
    assert first["id"] == users[0]["id"]
    by_upn = graph.get(f"users/{users[0]['userPrincipalName']}").json()
    assert by_upn["id"] == users[0]["id"]
    groups = graph.get("groups").json()["value"]
    engineering = next(g for g in groups if g["displayName"] == "Engineering")
    members = graph.all_pages(f"groups/{engineering['id']}/members", **{"$top": "2"})
    assert len(members) >= 5 and all(m["@odata.type"] == "#microsoft.graph.user" for m in members)
    nested = next(g for g in groups if g["displayName"] == "All Staff (nested)")
    nested_members = graph.get(f"groups/{nested['id']}/members").json()["value"]
    assert {m["@odata.type"] for m in nested_members} == {"#microsoft.graph.group"}
    enabled = graph.get("users", params={"$filter": "accountEnabled eq false"}).json()["value"]
    assert [u["displayName"] for u in enabled] == ["Disabled Account"]
    assert_graph_error(graph.get("users/00000000-0000-0000-0000-00000000beef"), 404, "Request_ResourceNotFound")
    assert_graph_error(graph.get("groups/00000000-0000-0000-0000-00000000beef/members"), 404, "Request_ResourceNotFound")


def test_assign_users_and_groups(emulator_env, graph: GraphClient):
    _, sp = graph.instantiate("Assignments app", AWS_SINGLE_ACCOUNT)
    user = graph.get("users", params={"$filter": "department eq 'IT'", "$top": "1"}).json()["value"][0]
    group = graph.get("groups", params={"$filter": "displayName eq 'Sales'"}).json()["value"][0]
    role_id = next(r["id"] for r in sp["appRoles"] if r["displayName"] == "User")
    created = []
    for principal in (user, group):
        response = graph.post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo",
                              json={"principalId": principal["id"], "resourceId": sp["id"], "appRoleId": role_id})
        assert response.status_code == 201, response.text
        created.append(response.json())
    assert created[0]["principalType"] == "User" and created[1]["principalType"] == "Group"
    assert created[0]["resourceDisplayName"] == "Assignments app"
    assert all(len(a["id"]) == 43 and re.fullmatch(r"[A-Za-z0-9_-]+", a["id"]) for a in created)
    listed = graph.get(f"servicePrincipals/{sp['id']}/appRoleAssignedTo").json()["value"]
    assert {a["principalId"] for a in listed} == {user["id"], group["id"]}
    duplicate = graph.post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo",
                           json={"principalId": user["id"], "resourceId": sp["id"], "appRoleId": role_id})
    error = assert_graph_error(duplicate, 400, "Request_BadRequest")
    assert "already exists" in error["message"]
    emulator_env.admin.settings(duplicateAssignmentStatus=409)
    assert_graph_error(graph.post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo",
                                  json={"principalId": user["id"], "resourceId": sp["id"], "appRoleId": role_id}),
                       409, "Request_MultipleObjectsWithSameKeyValue")
    assert graph.delete(f"servicePrincipals/{sp['id']}/appRoleAssignedTo/{created[0]['id']}").status_code == 204
    assert_graph_error(graph.delete(f"servicePrincipals/{sp['id']}/appRoleAssignedTo/{created[0]['id']}"),
                       404, "Request_ResourceNotFound")


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"principalId": "USER", "resourceId": "SP", "appRoleId": "00000000-0000-0000-0000-0000000000ff"}, 400, "Request_BadRequest"),
        ({"principalId": "00000000-0000-0000-0000-0000000000ee", "resourceId": "SP", "appRoleId": "ROLE"}, 404, "Request_ResourceNotFound"),
        ({"principalId": "USER", "resourceId": "00000000-0000-0000-0000-0000000000dd", "appRoleId": "ROLE"}, 400, "Request_BadRequest"),
        ({"resourceId": "SP", "appRoleId": "ROLE"}, 400, "Request_BadRequest"),
        ({"principalId": "not-a-guid", "resourceId": "SP", "appRoleId": "ROLE"}, 400, "Request_BadRequest"),
    ],
)
def test_bad_assignments(graph: GraphClient, body, status, code):
    _, sp = graph.instantiate("Bad assignment app")
    user = graph.get("users", params={"$top": "1"}).json()["value"][0]
    values = {"USER": user["id"], "SP": sp["id"], "ROLE": sp["appRoles"][0]["id"]}
    resolved = {k: values.get(v, v) for k, v in body.items()}
    assert_graph_error(graph.post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo", json=resolved), status, code)


def test_advanced_queries_need_consistency_level(graph: GraphClient):
    graph.instantiate("Advanced alpha")
    graph.instantiate("Advanced beta")
    params = {"$filter": "startswith(displayName,'Advanced')", "$orderby": "displayName desc", "$count": "true"}
    assert_graph_error(graph.get("servicePrincipals", params=params), 400, "Request_UnsupportedQuery")
    assert_graph_error(graph.get("users", params={"$count": "true"}), 400, "Request_UnsupportedQuery")
    assert_graph_error(graph.get("users", params={"$search": '"displayName:sean"'}), 400, "Request_UnsupportedQuery")
    body = graph.get("servicePrincipals", params=params, headers={"ConsistencyLevel": "eventual"}).json()
    assert body["@odata.count"] == 2
    assert [s["displayName"] for s in body["value"]] == ["Advanced beta", "Advanced alpha"]
    found = graph.get("users", params={"$search": '"displayName:sean"'}, headers={"ConsistencyLevel": "eventual"}).json()
    assert [u["displayName"] for u in found["value"]] == ["Sean O'Brien"]


@pytest.mark.parametrize(
    "path, params, cost",
    [("applications", {}, "2"), ("applications", {"$select": "id"}, "1"), ("users", {"$top": "5"}, "1"),
     ("servicePrincipals", {}, "1"), ("groups", {"$top": "50"}, "1")],
)
def test_resource_unit_header(graph: GraphClient, path, params, cost):
    response = graph.get(path, params=params)
    assert response.headers["x-ms-resource-unit"] == cost


def test_no_resource_units_outside_identity_resources(graph: GraphClient):
    assert "x-ms-resource-unit" not in graph.get("applicationTemplates").headers


def test_soft_delete_restore_and_purge(graph: GraphClient):
    app, sp = graph.instantiate("Soft deleted")
    assert graph.delete(f"applications/{app['id']}").status_code == 204
    deleted_apps = graph.get("directory/deletedItems/microsoft.graph.application").json()["value"]
    assert [a["id"] for a in deleted_apps] == [app["id"]]
    assert deleted_apps[0]["deletedDateTime"].endswith("Z")
    deleted_sps = graph.get("directory/deletedItems/microsoft.graph.servicePrincipal").json()["value"]
    assert [s["id"] for s in deleted_sps] == [sp["id"]]
    assert graph.get(f"directory/deletedItems/{app['id']}").json()["displayName"] == "Soft deleted"
    # The owner (Application.ReadWrite.OwnedBy) can restore what it owned.
    restored = graph.post(f"directory/deletedItems/{app['id']}/restore")
    assert restored.status_code == 200 and restored.json()["deletedDateTime"] is None
    assert graph.get(f"applications/{app['id']}").status_code == 200
    restored_sp = graph.post(f"directory/deletedItems/{sp['id']}/restore")
    assert restored_sp.status_code == 200
    assert graph.get(f"servicePrincipals/{sp['id']}/synchronization/templates").status_code == 200
    # Delete again and purge: gone for good.
    assert graph.delete(f"applications/{app['id']}").status_code == 204
    assert graph.delete(f"directory/deletedItems/{app['id']}").status_code == 204
    assert_graph_error(graph.get(f"directory/deletedItems/{app['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(graph.post(f"directory/deletedItems/{app['id']}/restore"), 404, "Request_ResourceNotFound")
    assert_graph_error(graph.get("directory/deletedItems/microsoft.graph.user"), 400, "Request_BadRequest")


def test_deleted_items_are_purged_after_30_days(emulator_env, graph: GraphClient):
    app, _ = graph.instantiate("Old deletion")
    assert graph.delete(f"applications/{app['id']}").status_code == 204
    emulator_env.admin.advance(31 * 86400)
    assert graph.get("directory/deletedItems/microsoft.graph.application").json()["value"] == []


def test_sync_templates_via_the_application(graph: GraphClient):
    app, sp = graph.instantiate("Templates via app", AWS_SINGLE_ACCOUNT)
    via_app = graph.get(f"applications/{app['id']}/synchronization/templates").json()["value"]
    via_sp = graph.get(f"servicePrincipals/{sp['id']}/synchronization/templates").json()["value"]
    assert [t["id"] for t in via_app] == [t["id"] for t in via_sp] == ["aws"]


def test_template_by_id_and_template_schemas(graph: GraphClient):
    """Templates and template schemas, under the service principal and the application."""
    app, sp = graph.instantiate("Template schemas", AWS_SINGLE_ACCOUNT)
    listed = graph.get(f"servicePrincipals/{sp['id']}/synchronization/templates").json()["value"][0]
    for base in (f"servicePrincipals/{sp['id']}", f"applications/{app['id']}"):
        one = graph.get(f"{base}/synchronization/templates/aws")
        assert one.status_code == 200, one.text
        assert {k: v for k, v in one.json().items() if k != "@odata.context"} == listed
        schema = graph.get(f"{base}/synchronization/templates/aws/schema")
        assert schema.status_code == 200, schema.text
        body = schema.json()
        assert body["id"] == "aws" and body["synchronizationRules"] == listed["schema"]["synchronizationRules"]
        assert body["directories"] == listed["schema"]["directories"]
        assert_graph_error(graph.get(f"{base}/synchronization/templates/nope/schema"), 404, "Request_ResourceNotFound")


def test_validate_credentials_through_the_application(graph: GraphClient):
    """The collection-bound form also exists under ``/applications/{id}`` (in Graph's API metadata)."""
    app, _ = graph.instantiate("Validate via app")
    good = [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"}, {"key": "SecretToken", "value": "demo-scim-token"}]
    path = f"applications/{app['id']}/synchronization/jobs/validateCredentials"
    assert graph.post(path, json={"templateId": "scim", "credentials": good}).status_code == 204
    bad = [good[0], {"key": "SecretToken", "value": "wrong"}]
    assert graph.post(path, json={"templateId": "scim", "credentials": bad}).status_code == 400
    assert_graph_error(graph.post(path, json={"credentials": good}), 400, "BadRequest")  # templateId is needed here


def test_beta_templates_have_the_beta_only_fields(graph_as):
    """applicationTemplate: beta adds configurationUris, deprecationDate and endpoints; v1.0 has none of them."""
    beta_only = {"configurationUris", "deprecationDate", "endpoints"}
    beta = graph_as("workflow", "beta").get(f"applicationTemplates/{AWS_SINGLE_ACCOUNT}").json()
    assert beta_only <= set(beta) and beta["deprecationDate"] is None
    listed = graph_as("workflow", "beta").get("applicationTemplates").json()["value"]
    assert all(beta_only <= set(t) for t in listed)
    v1 = graph_as("workflow", "v1.0").get(f"applicationTemplates/{AWS_SINGLE_ACCOUNT}").json()
    assert not beta_only & set(v1)
