"""Key Vault: the real SecretClient (verify_challenge_resource=False) against the emulator's vault."""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient


def secret_client(emu, client: str = "workflow") -> SecretClient:
    env = emu.env
    info = emu.admin.client(client)
    credential = ClientSecretCredential(env["AZURE_TENANT_ID"], info["clientId"], info["secret"],
                                        authority=env["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True)
    return SecretClient(env["KEY_VAULT_URL"], credential, verify_challenge_resource=False)


def test_reads_seeded_demo_token(emulator_env):
    client = secret_client(emulator_env)
    secret = client.get_secret("scim-contoso-token")
    assert secret.value == "demo-scim-token"
    assert secret.properties.content_type == "text/plain"
    assert secret.properties.tags["scenario"] == "healthy"
    assert len(secret.properties.version) == 32
    assert secret.id == f"{emulator_env.env['KEY_VAULT_URL']}/secrets/scim-contoso-token/{secret.properties.version}"


def test_versions_are_kept(emulator_env):
    client = secret_client(emulator_env)
    first = client.set_secret("rotating-token", "v1", tags={"owner": "tests"})
    second = client.set_secret("rotating-token", "v2")
    assert first.properties.version != second.properties.version
    assert client.get_secret("rotating-token").value == "v2"
    assert client.get_secret("rotating-token", first.properties.version).value == "v1"
    versions = [p.version for p in client.list_properties_of_secret_versions("rotating-token")]
    assert versions == [first.properties.version, second.properties.version]
    names = {p.name for p in client.list_properties_of_secrets()}
    assert {"rotating-token", "scim-contoso-token", "github-emu-token"} <= names


def test_secret_names_are_case_insensitive(emulator_env):
    """Key Vault object names compare case-insensitively (DOC); a secret keeps its first spelling."""
    client = secret_client(emulator_env)
    assert client.get_secret("SCIM-Contoso-Token").value == "demo-scim-token"
    first = client.set_secret("Mixed-Case", "v1")
    second = client.set_secret("mixed-case", "v2")  # a new version of the same secret, not a second secret
    assert second.name == "Mixed-Case"
    assert client.get_secret("MIXED-CASE").value == "v2"
    assert client.get_secret("mixed-CASE", first.properties.version).value == "v1"
    assert [p.version for p in client.list_properties_of_secret_versions("mixed-case")] == [
        first.properties.version, second.properties.version]
    assert [p.name for p in client.list_properties_of_secrets() if p.name.lower() == "mixed-case"] == ["Mixed-Case"]


def test_missing_secret_and_version(emulator_env):
    client = secret_client(emulator_env)
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_secret("no-such-secret")
    assert missing.value.error.code == "SecretNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("scim-contoso-token", "0" * 32)


def test_challenge_without_token(emulator_env):
    env = emulator_env.env
    response = requests.get(f"{env['KEY_VAULT_URL']}/secrets/scim-contoso-token", params={"api-version": "7.6"})
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge == (
        f'Bearer authorization="{env["AZURE_AUTHORITY_HOST"]}/{env["AZURE_TENANT_ID"]}", resource="https://vault.azure.net"'
    )
    assert response.json()["error"]["code"] == "Unauthorized"


def test_graph_token_is_refused_by_the_vault(emulator_env):
    env = emulator_env.env
    graph_token = emulator_env.admin.token("workflow", audience="graph")
    response = requests.get(f"{env['KEY_VAULT_URL']}/secrets/scim-contoso-token", params={"api-version": "7.6"},
                            headers={"Authorization": f"Bearer {graph_token}"})
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers


def test_api_version_is_required(emulator_env):
    env = emulator_env.env
    token = emulator_env.admin.token("workflow", audience="vault")
    response = requests.get(f"{env['KEY_VAULT_URL']}/secrets/scim-contoso-token", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadParameter"


def test_client_without_vault_access_is_forbidden(emulator_env):
    client = secret_client(emulator_env, "unprivileged")
    with pytest.raises(HttpResponseError) as denied:
        client.get_secret("scim-contoso-token")
    assert denied.value.status_code == 403
    assert denied.value.error.code == "Forbidden"


def test_read_only_client_cannot_write(emulator_env):
    emulator_env.admin.add_client("reader", [], key_vault="read")
    client = secret_client(emulator_env, "reader")
    assert client.get_secret("github-emu-token").value == "ghp_demo_emu_token"
    with pytest.raises(HttpResponseError) as denied:
        client.set_secret("github-emu-token", "overwritten")
    assert denied.value.status_code == 403
    assert secret_client(emulator_env).get_secret("github-emu-token").value == "ghp_demo_emu_token"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"value": 5}', b'{"value": "x", "tags": []}'])
def test_bad_set_bodies(emulator_env, body):
    env = emulator_env.env
    token = emulator_env.admin.token("workflow", audience="vault")
    response = requests.put(f"{env['KEY_VAULT_URL']}/secrets/some-name", params={"api-version": "7.6"}, data=body,
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadParameter"


def test_invalid_secret_name(emulator_env):
    client = secret_client(emulator_env)
    with pytest.raises(HttpResponseError) as bad:
        client.set_secret("bad_name_with_underscores", "x")
    assert bad.value.status_code == 400
