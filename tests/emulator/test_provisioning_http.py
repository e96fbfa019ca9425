"""Provisioning over real HTTPS: the seed article's five steps, every scenario, and log queries.

Plain ``requests`` against the in-process emulator (``emulator_env`` fixture), tokens from its
token endpoint with client credentials. Time moves through the admin clock (``advance``), never by
sleeping, so nothing here depends on wall-clock speed.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests

from emulator.clock import SENTINEL, parse_iso

NON_GALLERY = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
pytestmark = pytest.mark.timeout(120)


class Graph:
    """The smallest Graph client that does the job: bearer token + JSON."""

    def __init__(self, emu, client: str = "workflow", version: str = "v1.0") -> None:
        info = emu.admin.client(client)
        self.emu, self.version, self.ca = emu, version, emu.ca_bundle
        response = requests.post(
            f"{emu.url}/{emu.env['AZURE_TENANT_ID']}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": info["clientId"], "client_secret": info["secret"], "scope": "https://graph.microsoft.com/.default"},
            verify=self.ca,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    def call(self, method: str, path: str, body=None, version: str | None = None) -> requests.Response:
        url = path if path.startswith("https://") else f"{self.emu.url}/{version or self.version}/{path}"
        return requests.request(method, url, json=body, headers=self.headers, verify=self.ca, timeout=30)

    def ok(self, method: str, path: str, body=None, status: int = 200, version: str | None = None):
        response = self.call(method, path, body, version)
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
        assert "request-id" in response.headers
        return response.json() if response.content else None


def provisioned_app(graph: Graph, name: str, secrets: list[dict], users: int = 3, template: str = NON_GALLERY, template_id: str = "scim") -> tuple[str, str, list[str]]:
    """Instantiate, create the job, save secrets, assign ``users`` users; returns (spId, jobId, userIds)."""
    created = graph.ok("POST", f"applicationTemplates/{template}/instantiate", {"displayName": name}, status=201)
    sp = created["servicePrincipal"]
    for _ in range(50):  # replication: poll until found (no lag configured by default)
        if graph.call("GET", f"servicePrincipals/{sp['id']}").status_code == 200:
            break
    job = graph.ok("POST", f"servicePrincipals/{sp['id']}/synchronization/jobs", {"templateId": template_id}, status=201)
    graph.ok("PUT", f"servicePrincipals/{sp['id']}/synchronization/secrets", {"value": secrets}, status=204)
    role = next(r["id"] for r in sp["appRoles"] if r["displayName"] in ("User", "msiam_access"))
    user_ids = [u["id"] for u in graph.ok("GET", f"users?$top={users}")["value"]]
    for user_id in user_ids:
        graph.ok("POST", f"servicePrincipals/{sp['id']}/appRoleAssignedTo", {"principalId": user_id, "resourceId": sp["id"], "appRoleId": role}, status=201)
    return sp["id"], job["id"], user_ids


def scim(address: str, token: str, extra: list | None = None) -> list[dict]:
    return [{"key": "BaseAddress", "value": address}, {"key": "SecretToken", "value": token}] + (extra or [])


def test_seed_article_five_steps_on_beta(emulator_env):
    graph = Graph(emulator_env, version="beta")
    # Step 1: find the gallery template and instantiate it
    name = "AWS Single-Account Access"
    templates = graph.ok("GET", f"applicationTemplates?$filter=displayName eq '{quote(name)}'")["value"]
    assert [t["id"] for t in templates] == ["8b1025e4-1dd2-430b-a150-2ef79cd700f5"]
    assert templates[0]["supportedProvisioningTypes"] == ["sync"]
    created = graph.ok("POST", f"applicationTemplates/{templates[0]['id']}/instantiate", {"displayName": "AWS Contoso"}, status=201)
    sp_id = created["servicePrincipal"]["id"]
    assert created["application"]["applicationTemplateId"] == templates[0]["id"]
    # Step 2: the provisioning connector's template, then the job
    sync_templates = graph.ok("GET", f"servicePrincipals/{sp_id}/synchronization/templates")["value"]
    assert [(t["id"], t["factoryTag"]) for t in sync_templates] == [("aws", "aws")]
    assert set(sync_templates[0]["schema"]) >= {"directories", "synchronizationRules"}
    job = graph.ok("POST", f"servicePrincipals/{sp_id}/synchronization/jobs", {"templateId": "aws"}, status=201)
    assert job["templateId"] == "aws" and job["status"]["code"] == "NotConfigured"
    assert job["schedule"] == {"expiration": None, "interval": "P10675199DT2H48M5.4775807S", "state": "Disabled"}
    assert job["status"]["steadyStateFirstAchievedTime"] == SENTINEL and job["status"]["lastExecution"] is None
    job_id = job["id"]
    # Step 3: test the connection, then save the credentials (ClientSecret + SecretToken, as the article)
    credentials = [{"key": "ClientSecret", "value": "AKIAEMULATOREXAMPLE"}, {"key": "SecretToken", "value": "aws-secret-key"}]
    assert graph.call("POST", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/validateCredentials", {"credentials": credentials}).status_code == 204
    assert graph.call("PUT", f"servicePrincipals/{sp_id}/synchronization/secrets", {"value": credentials}).status_code == 204
    saved = graph.ok("GET", f"servicePrincipals/{sp_id}/synchronization/secrets")["value"]
    assert saved == [{"key": "ClientSecret", "value": "*"}, {"key": "SecretToken", "value": "*"}]
    role = next(r["id"] for r in created["servicePrincipal"]["appRoles"] if r["displayName"] == "msiam_access")
    users = graph.ok("GET", "users?$top=2", version="v1.0")["value"]
    for user in users:
        graph.ok("POST", f"servicePrincipals/{sp_id}/appRoleAssignedTo", {"principalId": user["id"], "resourceId": sp_id, "appRoleId": role}, status=201)
    # Step 4: start
    started = parse_iso(emulator_env.admin.clock()["now"])
    assert graph.call("POST", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/start").status_code == 204
    status = graph.ok("GET", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}")["status"]
    assert status["code"] == "NotRun"
    # Step 5: monitor until steady state, then read the provisioning logs
    emulator_env.admin.advance(60)
    job = graph.ok("GET", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/")
    assert job["schedule"]["state"] == "Active" and job["schedule"]["interval"] == "PT40M"
    assert job["status"]["code"] == "Active"
    assert parse_iso(job["status"]["steadyStateLastAchievedTime"]) > started
    assert job["status"]["lastExecution"]["state"] == "Succeeded"
    # AWS Single-Account Access imports the AWS account's roles into the SP's appRoles; it provisions
    # no users (https://learn.microsoft.com/entra/identity/saas-apps/amazon-web-service-tutorial)
    assert job["status"]["synchronizedEntryCountByType"] == [{"key": "Role to AppRole", "value": 3}]
    roles = graph.ok("GET", f"servicePrincipals/{sp_id}?$select=appRoles")["appRoles"]
    imported = sorted(r["displayName"] for r in roles if r["origin"] == "ServicePrincipal")
    assert imported == ["Admin,WAAD", "Auditors,WAAD", "Developers,WAAD"]
    logs = graph.ok("GET", f"auditLogs/provisioning?$filter=jobId eq '{job_id}'")
    assert logs["@odata.context"].endswith("$metadata#auditLogs/provisioning")
    rows = logs["value"]
    assert len(rows) == 3 and not {r["sourceIdentity"]["id"] for r in rows} & {u["id"] for u in users}
    for row in rows:
        assert row["action"] == "Create" and row["provisioningAction"] == "create"
        assert row["statusInfo"]["status"] == "success" == row["provisioningStatusInfo"]["status"]
        assert row["servicePrincipal"]["id"] == sp_id and row["sourceSystem"]["displayName"] == "AWS Contoso"
        assert row["targetSystem"]["displayName"] == "Azure Active Directory"
        assert (row["sourceIdentity"]["identityType"], row["targetIdentity"]["identityType"]) == ("Role", "AppRole")


@pytest.mark.parametrize(
    ("scenario", "secrets", "validates", "code", "reason"),
    [
        ("healthy", scim("https://scim.contoso.test/scim/v2", "demo-scim-token"), True, "Active", None),
        ("invalidCredentials", scim("https://scim.contoso.test/scim/v2", "not-the-contoso-token"), False, "Quarantine", "EncounteredQuarantineException"),
        ("escrowFailures", scim("https://scim.wingtip.test/scim/v2", "wingtip-token"), True, "Quarantine", "EncounteredEscrowProportionThreshold"),
        ("tooManyDeletes", scim("https://too-many-deletes.scim.test/scim/v2", "t", [{"key": "SyncNotificationSettings", "value": json.dumps({"Enabled": False, "DeleteThresholdEnabled": True, "DeleteThresholdValue": 2})}]), True, "Quarantine", "TooManyDeletes"),
        ("slowInitialCycle", scim("https://scim.slow.test/scim/v2", "any-token"), True, "NotRun", None),
        ("neverSteady", scim("https://scim.test/never-steady", "t"), True, "Active", None),
    ],
)
def test_every_scenario_over_https(emulator_env, scenario, secrets, validates, code, reason):
    graph = Graph(emulator_env)
    if scenario == "escrowFailures":  # escrow quarantine of a small job: only under a low evaluation threshold
        emulator_env.admin.provisioning_settings(escrowQuarantineMinFailures=1)
    sp_id, job_id, _ = provisioned_app(graph, f"Scenario {scenario}", secrets)
    validate = graph.call("POST", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/validateCredentials", {"useSavedCredentials": True})
    if validates:
        assert validate.status_code == 204, validate.text
    else:
        assert validate.status_code == 400
        error = validate.json()["error"]
        assert error["code"] == "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable"
        assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
        assert "not-the-contoso-token" not in validate.text
    assert graph.call("POST", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/start").status_code == 204
    emulator_env.admin.advance(120)  # slowInitialCycle needs 20 s + 3 x 60 s: still running here
    status = graph.ok("GET", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}")["status"]
    assert status["code"] == code
    assert (status["quarantine"] or {}).get("reason") == reason
    steady = status["steadyStateLastAchievedTime"] != SENTINEL
    assert steady == (scenario == "healthy")
    if scenario == "slowInitialCycle":
        assert status["progress"][0]["totalUnits"] == 3
        emulator_env.admin.advance(120)
        assert graph.ok("GET", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}")["status"]["code"] == "Active"
    if reason:
        q = status["quarantine"]
        assert (parse_iso(q["nextAttempt"]) - parse_iso(q["currentBegan"])).total_seconds() == 6 * 3600
        # restart (portal semantics) lifts the quarantine at once
        assert graph.call("POST", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/restart", {"criteria": {"resetScope": "Watermark, Escrows, QuarantineState"}}).status_code == 204
        assert graph.ok("GET", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}")["status"]["quarantine"] is None


def test_secrets_and_job_errors_over_https(emulator_env):
    graph = Graph(emulator_env)
    sp_id, job_id, _ = provisioned_app(graph, "Errors app", scim("https://scim.contoso.test/scim/v2", "demo-scim-token"), users=1)
    wrong = graph.call("PUT", f"servicePrincipals/{sp_id}/synchronization/secrets", {"value": [{"key": "baseAddress", "value": "https://x"}]})
    assert wrong.status_code == 500 and wrong.json()["error"]["code"] == "InternalError"
    assert "Requested value 'baseAddress' was not found." in wrong.json()["error"]["message"]
    missing = graph.call("POST", f"servicePrincipals/{sp_id}/synchronization/jobs", {})
    assert missing.status_code == 400
    unknown = graph.call("GET", f"servicePrincipals/{sp_id}/synchronization/jobs/scim.nope.nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "Request_ResourceNotFound"
    bad_scope = graph.call("POST", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/restart", {"criteria": {"resetScope": "Everything"}})
    assert bad_scope.status_code == 400
    assert graph.call("POST", f"servicePrincipals/{sp_id}/synchronization/jobs/validateCredentials", {"templateId": "scim", "credentials": scim("https://scim.contoso.test/scim/v2", "demo-scim-token")}).status_code == 204
    schema = graph.ok("GET", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/schema")
    assert schema["id"] == job_id and schema["synchronizationRules"]
    assert graph.call("PUT", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/schema", {"directories": schema["directories"], "synchronizationRules": schema["synchronizationRules"]}).status_code == 204
    assert graph.call("DELETE", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}").status_code == 204
    assert graph.call("GET", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}").status_code == 404
    assert len(graph.ok("GET", f"servicePrincipals/{sp_id}/synchronization/secrets")["value"]) == 2  # secrets survive the job


def test_provision_on_demand_over_https(emulator_env):
    graph = Graph(emulator_env, "admin")
    sp_id, job_id, user_ids = provisioned_app(graph, "On demand app", scim("https://scim.contoso.test/scim/v2", "demo-scim-token"), users=1)
    rule_id = graph.ok("GET", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/schema")["synchronizationRules"][0]["id"]
    body = {"parameters": [{"ruleId": rule_id, "subjects": [{"objectId": user_ids[0], "objectTypeName": "User"}]}]}
    result = graph.ok("POST", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/provisionOnDemand", body)
    assert json.loads(result["key"])["result"] == "Success"
    assert json.loads(result["value"])["action"] == "Create"


def test_audit_log_filters_and_paging(emulator_env):
    emulator_env.admin.set_faults(throttling={"reports": {"limit": 1000, "windowSeconds": 10}})
    graph = Graph(emulator_env)
    sp_a, job_a, _ = provisioned_app(graph, "Logs A", scim("https://scim.contoso.test/scim/v2", "demo-scim-token"), users=4)
    sp_b, job_b, _ = provisioned_app(graph, "Logs B", scim("https://scim.wingtip.test/scim/v2", "wingtip-token"), users=5)
    for sp_id, job_id in ((sp_a, job_a), (sp_b, job_b)):
        assert graph.call("POST", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/start").status_code == 204
    emulator_env.admin.advance(120)

    def rows(query: str, version: str = "v1.0") -> list[dict]:
        return graph.ok("GET", f"auditLogs/provisioning?{query}", version=version)["value"]

    everything = rows("$top=100")
    assert len(everything) == 9
    assert {r["jobId"] for r in rows(f"$filter=jobId eq '{job_a}'")} == {job_a}
    assert len(rows(f"$filter=servicePrincipal/id eq '{sp_b}'")) == 5
    failures_v1 = rows("$filter=provisioningStatusInfo/status eq 'failure'")
    failures_beta = rows("$filter=statusInfo/status eq 'failure'", version="beta")
    assert len(failures_v1) == len(failures_beta) == 3  # ceil(0.6 x 5) on the wingtip target
    assert {r["jobId"] for r in failures_v1} == {job_b}
    typed = rows(f"$filter=jobId eq '{job_b}' and provisioningStatusInfo/status eq microsoft.graph.provisioningResult'failure'")
    assert len(typed) == 3
    times = sorted(parse_iso(r["activityDateTime"]) for r in everything)
    middle = times[4].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    later = rows(f"$filter=activityDateTime gt {middle}")
    assert all(parse_iso(r["activityDateTime"]) > times[4] for r in later) and 0 < len(later) < 9
    low, high = (t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for t in (times[1], times[6]))
    window = rows(f"$filter=activityDateTime gt {low} and activityDateTime lt {high}")
    assert len(window) == sum(1 for t in times if times[1] < t < times[6]) > 0
    day = times[0].strftime("%Y-%m-%d")  # Microsoft's own example compares with a bare date
    assert len(rows(f"$filter=activityDateTime gt {day}&$top=100")) == 9
    ordered = rows("$orderby=activityDateTime desc&$top=100")
    assert [r["activityDateTime"] for r in ordered] == sorted((r["activityDateTime"] for r in ordered), reverse=True)
    # paging: $top + @odata.nextLink with $skiptoken until it is absent
    page = graph.ok("GET", "auditLogs/provisioning?$top=4")
    seen = [r["id"] for r in page["value"]]
    while "@odata.nextLink" in page:
        assert "$skiptoken" in page["@odata.nextLink"]
        page = graph.ok("GET", page["@odata.nextLink"])
        seen += [r["id"] for r in page["value"]]
    assert sorted(seen) == sorted(r["id"] for r in everything)
    bad = graph.call("GET", "auditLogs/provisioning?$filter=jobId eqq 'x'")
    assert bad.status_code == 400
    skip = graph.call("GET", "auditLogs/provisioning?$top=4&$skip=4")  # the list page: $skiptoken only, no skip count
    assert skip.status_code == 400 and skip.json()["error"]["code"] == "BadRequest"


def test_steady_with_failures_and_skipped_rows_over_https(emulator_env):
    """Default settings: a small escrowFailures job is steady with its failures logged (escrow quarantine is
    evaluated from 5,000 failures); the seeded disabled user is logged Skipped / NotEffectivelyEntitled."""
    emulator_env.admin.set_faults(throttling={"reports": {"limit": 1000, "windowSeconds": 10}})
    graph = Graph(emulator_env)
    sync_all = [{"key": "SyncAll", "value": "true"}]
    sp_id, job_id, _ = provisioned_app(graph, "Steady failing", scim("https://scim.wingtip.test/scim/v2", "wingtip-token", sync_all), users=1)
    assert graph.call("POST", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}/start").status_code == 204
    emulator_env.admin.advance(600)
    status = graph.ok("GET", f"servicePrincipals/{sp_id}/synchronization/jobs/{job_id}")["status"]
    assert status["code"] == "Active" and status["quarantine"] is None and status["steadyStateLastAchievedTime"] != SENTINEL
    assert status["lastExecution"]["state"] == "EntryLevelErrors" and status["lastExecution"]["countEscrowed"] > 0
    failed = graph.ok("GET", f"auditLogs/provisioning?$filter=jobId eq '{job_id}' and provisioningStatusInfo/status eq 'failure'&$top=500")["value"]
    assert len(failed) == status["lastExecution"]["countEscrowed"]
    skipped = graph.ok("GET", f"auditLogs/provisioning?$filter=jobId eq '{job_id}' and provisioningStatusInfo/status eq 'skipped'", version="beta")["value"]
    disabled = [u for u in graph.ok("GET", "users?$top=999")["value"] if u.get("accountEnabled") is False]
    assert disabled and {r["sourceIdentity"]["id"] for r in skipped} == {u["id"] for u in disabled}
    for row in skipped:
        assert row["provisioningAction"] == "create" and row["action"] == "Create"
        assert row["statusInfo"]["status"] == "skipped" and row["provisioningStatusInfo"]["errorInformation"] is None
        assert row["provisioningSteps"][-1]["details"]["SkipReason"] == "NotEffectivelyEntitled"
        assert row["provisioningSteps"][-1]["details"]["IsActive"] == "False"
