"""The seed article's five steps on v1.0 the way this project does them: Graph tokens from the
real ``DefaultAzureCredential``, the target's token read from Key Vault with the real
``SecretClient``, then the request log counts the Graph calls. (The plain-``requests`` walk on
beta is in ``test_provisioning_http.py``.)"""

from __future__ import annotations

import pytest
import requests
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

from emulator.clock import parse_iso

pytestmark = pytest.mark.timeout(120)
NON_GALLERY = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"


def test_seed_article_with_sdk_clients(emulator_env):
    env = emulator_env.env
    credential = DefaultAzureCredential(disable_instance_discovery=True)
    session = requests.Session()
    session.headers["Authorization"] = "Bearer " + credential.get_token(env.get("GRAPH_SCOPE", "https://graph.microsoft.com/.default")).token
    graph = f"{env['GRAPH_BASE_URL']}/v1.0"
    vault = SecretClient(env["KEY_VAULT_URL"], credential, verify_challenge_resource=False)
    emulator_env.admin.clear_requests()

    # Step 1: template and instance.
    templates = session.get(f"{graph}/applicationTemplates", params={"$filter": "displayName eq 'Non-gallery application'"}).json()["value"]
    template_id = templates[0]["id"] if templates else NON_GALLERY
    created = session.post(f"{graph}/applicationTemplates/{template_id}/instantiate", json={"displayName": "Contoso SCIM"})
    assert created.status_code == 201
    sp = created.json()["servicePrincipal"]
    assert session.get(f"{graph}/servicePrincipals/{sp['id']}").status_code == 200
    fleet_tags = sp["tags"] + ["entra-provisioning-fleet"]
    assert session.patch(f"{graph}/servicePrincipals/{sp['id']}", json={"tags": fleet_tags}).status_code == 204

    # Step 2: synchronization template and job.
    sync_templates = session.get(f"{graph}/servicePrincipals/{sp['id']}/synchronization/templates").json()["value"]
    job = session.post(f"{graph}/servicePrincipals/{sp['id']}/synchronization/jobs", json={"templateId": sync_templates[0]["id"]})
    assert job.status_code == 201
    job_id = job.json()["id"]
    assert job_id.startswith(f"{sync_templates[0]['id']}.{env['AZURE_TENANT_ID'].replace('-', '')}.")

    # Step 3: the token comes from Key Vault (a reference, never a literal in the request).
    token = vault.get_secret("scim-contoso-token")
    credentials = [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"},
                   {"key": "SecretToken", "value": token.value}]
    validated = session.post(f"{graph}/servicePrincipals/{sp['id']}/synchronization/jobs/{job_id}/validateCredentials",
                             json={"credentials": credentials})
    assert validated.status_code == 204, validated.text
    assert session.put(f"{graph}/servicePrincipals/{sp['id']}/synchronization/secrets",
                       json={"value": credentials + [{"key": "SyncAll", "value": "false"}]}).status_code == 204
    group = session.get(f"{graph}/groups", params={"$filter": "displayName eq 'AWS Admins'"}).json()["value"][0]
    role = next(r["id"] for r in sp["appRoles"] if r["displayName"] == "User")
    assigned = session.post(f"{graph}/servicePrincipals/{sp['id']}/appRoleAssignedTo",
                            json={"principalId": group["id"], "resourceId": sp["id"], "appRoleId": role})
    assert assigned.status_code == 201

    # Step 4: start.
    started = parse_iso(emulator_env.admin.clock()["now"])
    assert session.post(f"{graph}/servicePrincipals/{sp['id']}/synchronization/jobs/{job_id}/start").status_code == 204

    # Step 5: monitor (simulated time moves through the admin clock) and read the logs.
    emulator_env.admin.advance(3600)
    status = session.get(f"{graph}/servicePrincipals/{sp['id']}/synchronization/jobs/{job_id}").json()["status"]
    assert status["code"] == "Active"
    assert parse_iso(status["steadyStateLastAchievedTime"]) > started
    members = session.get(f"{graph}/groups/{group['id']}/members").json()["value"]
    logs = session.get(f"{graph}/auditLogs/provisioning",
                       params={"$filter": f"jobId eq '{job_id}' and provisioningStatusInfo/status eq 'success'", "$top": "500"}).json()
    provisioned = {row["sourceIdentity"]["id"] for row in logs["value"]}
    assert {m["id"] for m in members} <= provisioned
    assert all(row["servicePrincipal"]["id"] == sp["id"] for row in logs["value"])

    # The request log counts the Graph calls of this instance.
    log = emulator_env.admin.requests(kind="graph", pathContains=sp["id"])
    assert log["count"] == log["counts"]["byStatus"].get("200", 0) + log["counts"]["byStatus"].get("201", 0) + log["counts"]["byStatus"].get("204", 0)
    assert log["counts"]["byRoute"]["POST /v1.0/servicePrincipals/{sp_id}/synchronization/jobs"] == 1
    assert set(log["counts"]["byCaller"]) == {env["AZURE_CLIENT_ID"]}
    everything = emulator_env.admin.requests()
    assert everything["counts"]["byKind"]["keyvault"] >= 1  # the read (the challenge is cached per process)
    assert everything["counts"]["byKind"]["identity"] >= 1


def test_admin_state_clock_seed_and_request_log(emulator_env):
    admin = emulator_env.admin
    state = admin.state()
    assert state["tenantId"] == emulator_env.env["AZURE_TENANT_ID"]
    assert {c["name"] for c in state["clients"]} >= {"workflow", "admin", "unprivileged", "managed-identity"}
    assert state["counts"]["users"] >= 30 and state["provisioningAvailable"] is True
    before = parse_iso(admin.clock()["now"])
    after = parse_iso(admin.advance(7200)["now"])
    assert (after - before).total_seconds() >= 7200
    assert admin.set_scale(60)["scale"] == 60
    created = admin.seed(users=[{"displayName": "Temp Worker"}], secrets={"extra-token": "abc"})
    assert created["users"][0]["displayName"] == "Temp Worker"
    assert created["secrets"][0]["name"] == "extra-token"
    group = admin.seed(groups=[{"displayName": "Temps", "members": [created["users"][0]["id"]]}])["groups"][0]
    assert admin.state()["counts"]["groups"] == state["counts"]["groups"] + 1
    admin.clear_requests()
    env = emulator_env.env
    requests.get(f"{env['GRAPH_BASE_URL']}/v1.0/users")  # 401: no token
    log = admin.requests()
    assert log["count"] == 1 and log["value"][0]["status"] == 401 and log["value"][0]["caller"] is None
    assert log["value"][0]["route"] == "/v1.0/users" or log["value"][0]["path"] == "/v1.0/users"
    admin.reset()
    assert admin.clock()["scale"] == 1.0
    assert group["id"] not in {g["id"] for g in emulator_env.state.directory.all_groups()}
