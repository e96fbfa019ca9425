"""Identity: the real azure-identity credentials get tokens unchanged; token errors look like Entra's."""

from __future__ import annotations

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, DefaultAzureCredential

from emulator_graph import GraphClient

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
VAULT_SCOPE = "https://vault.azure.net/.default"
# the seeded workflow client holds exactly the app's documented permission set
LEAST_PRIVILEGE = {
    "Application.ReadWrite.All",
    "Synchronization.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "AuditLog.Read.All",
    "Directory.Read.All",
}


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_client_secret_credential_gets_graph_token(emulator_env):
    env = emulator_env.env
    credential = ClientSecretCredential(
        env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
        authority=env["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True,
    )
    token = credential.get_token(GRAPH_SCOPE)
    body = claims(token.token)
    assert body["aud"] == "https://graph.microsoft.com"
    assert body["tid"] == env["AZURE_TENANT_ID"]
    assert body["appid"] == env["AZURE_CLIENT_ID"] == body["azp"]
    assert set(body["roles"]) == LEAST_PRIVILEGE
    assert body["oid"] == emulator_env.admin.client("workflow")["servicePrincipalId"]
    assert body["exp"] > body["iat"]
    # The token is accepted by Graph.
    response = requests.get(f"{env['GRAPH_BASE_URL']}/v1.0/servicePrincipals?$top=1",
                            headers={"Authorization": f"Bearer {token.token}"})
    assert response.status_code == 200, response.text


def test_default_azure_credential_uses_environment(emulator_env):
    # Only the env vars of the emulator's env file (set by the fixture) configure it.
    credential = DefaultAzureCredential(disable_instance_discovery=True)
    token = credential.get_token(VAULT_SCOPE)
    body = claims(token.token)
    assert body["aud"] == "https://vault.azure.net"
    assert body["appid"] == emulator_env.env["AZURE_CLIENT_ID"]


def test_openid_configuration_and_unknown_tenant(emulator_env):
    env = emulator_env.env
    response = requests.get(f"{env['AZURE_AUTHORITY_HOST']}/{env['AZURE_TENANT_ID']}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"] == f"{env['AZURE_AUTHORITY_HOST']}/{env['AZURE_TENANT_ID']}/oauth2/v2.0/token"
    assert config["authorization_endpoint"].startswith(env["AZURE_AUTHORITY_HOST"])
    other = requests.get(f"{env['AZURE_AUTHORITY_HOST']}/00000000-0000-0000-0000-000000000001/v2.0/.well-known/openid-configuration")
    assert other.status_code == 400
    assert "AADSTS90002" in other.json()["error_description"]


def test_tenant_domain_works_like_the_tenant_id(emulator_env):
    """Entra accepts the tenant's domain name in login URLs as well as its GUID."""
    env = emulator_env.env
    domain = "contoso-emulator.onmicrosoft.com"
    config = requests.get(f"{env['AZURE_AUTHORITY_HOST']}/{domain.upper()}/v2.0/.well-known/openid-configuration")
    assert config.status_code == 200
    assert config.json()["token_endpoint"] == f"{env['AZURE_AUTHORITY_HOST']}/{env['AZURE_TENANT_ID']}/oauth2/v2.0/token"
    credential = ClientSecretCredential(domain, env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"],
                                        authority=env["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True)
    assert claims(credential.get_token(GRAPH_SCOPE).token)["tid"] == env["AZURE_TENANT_ID"]
    data = {"grant_type": "client_credentials", "client_id": env["AZURE_CLIENT_ID"],
            "client_secret": env["AZURE_CLIENT_SECRET"], "scope": GRAPH_SCOPE}
    other = requests.post(f"{env['AZURE_AUTHORITY_HOST']}/fabrikam.onmicrosoft.com/oauth2/v2.0/token", data=data)
    assert other.status_code == 400 and other.json()["error_codes"] == [90002]


def _token_request(env: dict, **form: str) -> requests.Response:
    data = {"grant_type": "client_credentials", "client_id": env["AZURE_CLIENT_ID"],
            "client_secret": env["AZURE_CLIENT_SECRET"], "scope": GRAPH_SCOPE}
    data.update(form)
    return requests.post(f"{env['AZURE_AUTHORITY_HOST']}/{env['AZURE_TENANT_ID']}/oauth2/v2.0/token", data=data)


@pytest.mark.parametrize(
    "form, status, error, code",
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_id": "11111111-1111-1111-1111-111111111111"}, 400, "unauthorized_client", 700016),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"scope": "https://graph.microsoft.com/User.Read"}, 400, "invalid_scope", 1002012),
        ({"scope": "https://unknown.example.com/.default"}, 400, "invalid_resource", 500011),
        ({"scope": ""}, 400, "invalid_request", 900144),
        ({"grant_type": ""}, 400, "invalid_request", 900144),
    ],
)
def test_token_endpoint_errors(emulator_env, form, status, error, code):
    response = _token_request(emulator_env.env, **form)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert emulator_env.env["AZURE_CLIENT_SECRET"] not in response.text


def test_undecodable_token_request_is_an_entra_error(emulator_env):
    env = emulator_env.env
    response = requests.post(f"{env['AZURE_AUTHORITY_HOST']}/{env['AZURE_TENANT_ID']}/oauth2/v2.0/token", data=b"\xff\xfe=\xff",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request" and response.json()["error_codes"] == [900144]


def test_wrong_secret_makes_azure_identity_fail(emulator_env):
    env = emulator_env.env
    credential = ClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], "not-the-secret",
                                        authority=env["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError):
        credential.get_token(GRAPH_SCOPE)


def test_basic_auth_client_credentials(emulator_env):
    env = emulator_env.env
    response = requests.post(
        f"{env['AZURE_AUTHORITY_HOST']}/{env['AZURE_TENANT_ID']}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": GRAPH_SCOPE},
        auth=(env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"]),
    )
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"
    assert response.json()["expires_in"] > 0


def test_granted_app_role_appears_in_next_token(emulator_env, graph_as):
    """The permission-grant flow: admin assigns a Graph app role to the managed identity's SP."""
    admin = graph_as("admin")
    identity = graph_as("managed-identity")
    assert claims(identity.token)["roles"] == []
    graph_sp = admin.get("servicePrincipals(appId='00000003-0000-0000-c000-000000000000')").json()
    role = next(r for r in graph_sp["appRoles"] if r["value"] == "Synchronization.ReadWrite.All")
    assert role["id"] == "9b50c33d-700f-43b1-b2eb-87e89b703581"
    response = admin.post(
        f"servicePrincipals/{identity.sp_id}/appRoleAssignments",
        json={"principalId": identity.sp_id, "resourceId": graph_sp["id"], "appRoleId": role["id"]},
    )
    assert response.status_code == 201, response.text
    assignment = response.json()
    assert assignment["principalType"] == "ServicePrincipal"
    assert assignment["resourceDisplayName"] == "Microsoft Graph"
    assert len(assignment["id"]) == 43
    # The old token still has no roles; the next one carries the grant.
    assert claims(identity.token)["roles"] == []
    assert claims(identity.fetch_token())["roles"] == ["Synchronization.ReadWrite.All"]
    # The same grant again is refused as Graph does.
    again = admin.post(
        f"servicePrincipals/{graph_sp['id']}/appRoleAssignedTo",
        json={"principalId": identity.sp_id, "resourceId": graph_sp["id"], "appRoleId": role["id"]},
    )
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "Request_BadRequest"
    # Listing from both sides shows it; deleting revokes it for the next token.
    listed = admin.get(f"servicePrincipals/{identity.sp_id}/appRoleAssignments").json()["value"]
    assert [a["id"] for a in listed] == [assignment["id"]]
    by_resource = admin.get(f"servicePrincipals/{graph_sp['id']}/appRoleAssignedTo",
                            params={"$filter": f"principalId eq {identity.sp_id}"}).json()["value"]
    assert [a["id"] for a in by_resource] == [assignment["id"]]
    deleted = admin.delete(f"servicePrincipals/{graph_sp['id']}/appRoleAssignedTo/{assignment['id']}")
    assert deleted.status_code == 204
    assert claims(identity.fetch_token())["roles"] == []


def test_graph_sp_found_by_app_id_filter(graph: GraphClient):
    body = graph.get("servicePrincipals", params={"$filter": "appId eq '00000003-0000-0000-c000-000000000000'"}).json()
    assert [sp["displayName"] for sp in body["value"]] == ["Microsoft Graph"]
    values = {r["value"]: r["id"] for r in body["value"][0]["appRoles"]}
    assert values["Application.ReadWrite.OwnedBy"] == "18a4783c-866b-4cc7-a460-3d5e5662c884"
    assert values["AuditLog.Read.All"] == "b0afded3-3588-46d8-8b3d-9842eff778da"


def test_admin_can_register_a_client(emulator_env):
    client = emulator_env.admin.add_client("reporting", ["AuditLog.Read.All", "Directory.Read.All"], key_vault="read")
    env = dict(emulator_env.env, AZURE_CLIENT_ID=client["clientId"], AZURE_CLIENT_SECRET=client["secret"])
    response = _token_request(env)
    assert response.status_code == 200
    assert set(claims(response.json()["access_token"])["roles"]) == {"AuditLog.Read.All", "Directory.Read.All"}


def test_managed_identity_endpoint(emulator_env, monkeypatch):
    """App Service-style managed identity: only AZURE_CLIENT_ID, as the function app runs in Azure."""
    from azure.identity import ManagedIdentityCredential

    env = emulator_env.env
    monkeypatch.setenv("IDENTITY_ENDPOINT", env["EMULATOR_IDENTITY_ENDPOINT"])
    monkeypatch.setenv("IDENTITY_HEADER", env["EMULATOR_IDENTITY_HEADER"])
    monkeypatch.delenv("AZURE_CLIENT_SECRET")
    monkeypatch.setenv("AZURE_CLIENT_ID", env["EMULATOR_MANAGED_IDENTITY_CLIENT_ID"])
    token = ManagedIdentityCredential(client_id=env["EMULATOR_MANAGED_IDENTITY_CLIENT_ID"]).get_token(GRAPH_SCOPE)
    body = claims(token.token)
    assert body["appid"] == env["EMULATOR_MANAGED_IDENTITY_CLIENT_ID"] and body["aud"] == "https://graph.microsoft.com"
    vault_token = DefaultAzureCredential(disable_instance_discovery=True).get_token(VAULT_SCOPE)
    assert claims(vault_token.token)["aud"] == "https://vault.azure.net"
    wrong = requests.get(env["EMULATOR_IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
                         headers={"X-IDENTITY-HEADER": "wrong"})
    assert wrong.status_code == 400


def test_scope_built_from_the_emulator_url(emulator_env):
    env = emulator_env.env
    graph = _token_request(env, scope=f"{env['GRAPH_BASE_URL']}/.default")
    assert claims(graph.json()["access_token"])["aud"] == "https://graph.microsoft.com"
    vault = _token_request(env, scope="https://myvault.vault.azure.net/.default")
    assert claims(vault.json()["access_token"])["aud"] == "https://vault.azure.net"
