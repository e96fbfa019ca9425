"""Inputs that used to be accepted and then ended in a 500 or a stranded job (found in review):
they are refused with a 400 up front, and the simulation survives whatever it was given."""

from __future__ import annotations

import pytest

from emulator_graph import GraphClient, assert_graph_error

SCIM_CREDS = [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"},
              {"key": "SecretToken", "value": "demo-scim-token"}]
ROLE_ID = "4bd2a9c3-8f1e-4c7a-9a55-3f0a1c2d7e11"


@pytest.fixture
def admin_graph(graph_as) -> GraphClient:
    return graph_as("admin")


@pytest.mark.parametrize(
    "roles",
    [
        [{"displayName": "no id"}],
        [{"id": "not-a-guid", "allowedMemberTypes": ["User"]}],
        [{"id": ["x"]}],
        ["msiam_access"],
        [{"id": ROLE_ID, "allowedMemberTypes": "User"}],
        [{"id": ROLE_ID, "isEnabled": "yes"}],
        [{"id": ROLE_ID, "displayName": 7}],
        [{"id": ROLE_ID}, {"id": ROLE_ID.upper()}],
    ],
)
@pytest.mark.parametrize("collection", ["servicePrincipals", "applications"])
def test_malformed_app_roles_are_refused(admin_graph: GraphClient, roles, collection):
    app, sp = admin_graph.instantiate("App roles")
    target = sp if collection == "servicePrincipals" else app
    response = admin_graph.patch(f"{collection}/{target['id']}", json={"appRoles": roles})
    error = assert_graph_error(response, 400, "Request_BadRequest")
    assert "appRoles" in error["message"]
    user = admin_graph.get("users", params={"$top": "1"}).json()["value"][0]["id"]
    msiam = next(r["id"] for r in sp["appRoles"] if r["displayName"] == "msiam_access")
    assigned = admin_graph.post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo",
                                json={"principalId": user, "resourceId": sp["id"], "appRoleId": msiam})
    assert assigned.status_code == 201, assigned.text  # the roles were left as they were


def test_patched_app_roles_are_assignable(admin_graph: GraphClient):
    _, sp = admin_graph.instantiate("App roles")
    roles = [{"id": ROLE_ID.upper(), "allowedMemberTypes": ["User"], "displayName": "Reader", "isEnabled": True,
              "description": None, "value": "reader"}]
    assert admin_graph.patch(f"servicePrincipals/{sp['id']}", json={"appRoles": roles}).status_code == 204
    user = admin_graph.get("users", params={"$top": "1"}).json()["value"][0]["id"]
    body = {"principalId": user, "resourceId": sp["id"], "appRoleId": ROLE_ID}
    assert admin_graph.post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo", json=body).status_code == 201
    body["appRoleId"] = "00000000-0000-0000-0000-000000000000"  # not one of the SP's roles any more
    assert_graph_error(admin_graph.post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo", json=body), 400, "Request_BadRequest")
