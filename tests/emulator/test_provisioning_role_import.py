"""Role-import jobs (AWS Single-Account Access): the job reads the AWS account's IAM roles and writes
them into the service principal's appRoles; it never provisions users.

Source: https://learn.microsoft.com/entra/identity/saas-apps/amazon-web-service-tutorial ("The
provisioning service imports roles only from AWS to Microsoft Entra ID"; imported roles are written
to the servicePrincipal's appRoles; eligible roles have exactly one SAML provider and ARNs shorter
than 240 characters together). Log-row direction and identity types are UNCONFIRMED and come from
the catalog's roleImport block (tested here as data).
"""

from __future__ import annotations

import copy
import random
import re

import pytest

from emulator.errors import GraphError
from emulator.provisioning.catalog import load_catalog
from emulator.provisioning.scenarios import load_targets
from emulator.provisioning.service import ProvisioningService
from emulator.provisioning.testing import FrozenClock, MemoryDirectory

AWS = "8b1025e4-1dd2-430b-a150-2ef79cd700f5"
ACCESS_KEY, SECRET_KEY = "AKIAEMULATORCONTOSO1", "emulator-aws-secret-access-key-contoso"
MSIAM = {"allowedMemberTypes": ["User"], "description": "msiam_access", "displayName": "msiam_access",
         "id": "7dfd756e-8c27-4472-b2b7-38c17fc5de5e", "isEnabled": True, "origin": "Application", "value": None}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
EXPECTED = {
    "Admin,WAAD": "arn:aws:iam::123456789012:role/Admin,arn:aws:iam::123456789012:saml-provider/WAAD",
    "Auditors,WAAD": "arn:aws:iam::123456789012:role/Auditors,arn:aws:iam::123456789012:saml-provider/WAAD",
    "Developers,WAAD": "arn:aws:iam::123456789012:role/engineering/Developers,arn:aws:iam::123456789012:saml-provider/WAAD",
}


def build(catalog: dict | None = None, targets: dict | None = None, credentials=(ACCESS_KEY, SECRET_KEY)):
    directory = MemoryDirectory()
    clock = FrozenClock()
    service = ProvisioningService(clock, random.Random(7), directory, catalog or load_catalog(), {}, targets)
    sp = directory.add_service_principal("AWS Contoso", AWS)
    sp["appRoles"] = [dict(MSIAM)]
    service.on_instantiate(AWS, sp["id"])
    job = service.create_job(sp["id"], {"templateId": "aws"})["id"]
    service.put_secrets(sp["id"], {"value": [{"key": "ClientSecret", "value": credentials[0]},
                                             {"key": "SecretToken", "value": credentials[1]}]})
    return service, directory, clock, sp["id"], job


def run(service: ProvisioningService, clock: FrozenClock, seconds: float) -> None:
    """Move simulated time and let the engine catch up (the server does this before every request)."""
    clock.advance(seconds)
    service.advance()


def imported(directory: MemoryDirectory, sp_id: str) -> dict[str, dict]:
    return {r["displayName"]: r for r in directory.service_principals[sp_id]["appRoles"] if r["origin"] == "ServicePrincipal"}


def rows_of(service: ProvisioningService, job_id: str, version: str = "v1.0") -> list[dict]:
    return [r for r in service.provisioning_logs(version) if r["jobId"] == job_id]


def test_initial_cycle_imports_the_eligible_roles_as_app_roles_and_keeps_msiam_access():
    service, directory, clock, sp_id, job_id = build()
    user = directory.add_user("Adele Vance")
    directory.assign(sp_id, user["id"])  # assigned users are not provisioned by a role import
    service.start_job(sp_id, job_id)
    run(service, clock, 120)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Active" and status["lastExecution"]["state"] == "Succeeded"
    assert status["steadyStateFirstAchievedTime"] != "0001-01-01T00:00:00Z"
    assert status["synchronizedEntryCountByType"] == [{"key": "Role to AppRole", "value": 3}]
    roles = directory.service_principals[sp_id]["appRoles"]
    assert roles[0] == MSIAM  # the template's role stays first and unchanged
    got = imported(directory, sp_id)
    # two SAML providers (SharedReadOnly) and a service role without SAML trust are not imported
    assert {name: role["value"] for name, role in got.items()} == EXPECTED
    for name, role in got.items():
        assert GUID.match(role["id"]) and role["id"] != MSIAM["id"]
        assert role["allowedMemberTypes"] == ["User"] and role["isEnabled"] is True
        assert role["description"] == name
    assert len({r["id"] for r in roles}) == len(roles) == 4


def test_role_import_rows_as_data_says_and_never_a_user_export():
    service, directory, clock, sp_id, job_id = build()
    user = directory.add_user("Adele Vance")
    directory.assign(sp_id, user["id"])
    service.start_job(sp_id, job_id)
    run(service, clock, 120)
    rows = rows_of(service, job_id)
    assert len(rows) == 3
    by_role = {r["sourceIdentity"]["displayName"]: r for r in rows}
    assert set(by_role) == set(EXPECTED)
    roles = imported(directory, sp_id)
    for name, row in by_role.items():
        assert row["provisioningAction"] == "create" and row["provisioningStatusInfo"]["status"] == "success"
        assert row["sourceSystem"]["displayName"] == "AWS Contoso" and row["sourceSystem"]["details"]["ServicePrincipalId"] == sp_id
        assert row["targetSystem"]["displayName"] == "Azure Active Directory"
        assert row["sourceIdentity"] == {"id": EXPECTED[name].split(",")[0], "displayName": name, "identityType": "Role", "details": {}}
        assert row["targetIdentity"]["id"] == roles[name]["id"] and row["targetIdentity"]["identityType"] == "AppRole"
        assert [s["provisioningStepType"] for s in row["provisioningSteps"]] == ["import", "matching", "export"]
        assert "from AWS Contoso" in row["provisioningSteps"][0]["description"]
        assert {p["displayName"]: p["newValue"] for p in row["modifiedProperties"]}["value"] == EXPECTED[name]
    assert all(r["sourceIdentity"]["id"] != user["id"] for r in service.provisioning_logs("v1.0"))
    beta = rows_of(service, job_id, "beta")
    assert {r["action"] for r in beta} == {"Create"} and {r["statusInfo"]["status"] for r in beta} == {"success"}


def test_import_is_idempotent_across_cycles_restarts_and_a_dropped_link_store():
    service, directory, clock, sp_id, job_id = build()
    service.start_job(sp_id, job_id)
    run(service, clock, 120)
    first = copy.deepcopy(directory.service_principals[sp_id]["appRoles"])
    rows = len(rows_of(service, job_id))
    run(service, clock, 3 * 2400)  # three incremental cycles: nothing changed in AWS, nothing logged
    assert directory.service_principals[sp_id]["appRoles"] == first and len(rows_of(service, job_id)) == rows
    for reset in ("Watermark", "ConnectorDataStore", "Full"):
        service.restart_job(sp_id, job_id, {"criteria": {"resetScope": reset}})
        run(service, clock, 120)
        assert directory.service_principals[sp_id]["appRoles"] == first, reset  # same ids, no duplicate
        newest = rows_of(service, job_id)[:3]
        assert {r["provisioningAction"] for r in newest} == {"other"}, reset
        assert {r["provisioningStatusInfo"]["status"] for r in newest} == {"skipped"}, reset
    # a second job of the same SP (or a re-created one) matches the roles already there
    service.delete_job(sp_id, job_id)
    again = service.create_job(sp_id, {"templateId": "aws"})["id"]
    service.start_job(sp_id, again)
    run(service, clock, 120)
    assert directory.service_principals[sp_id]["appRoles"] == first
    assert service.get_job(sp_id, again)["status"]["synchronizedEntryCountByType"] == [{"key": "Role to AppRole", "value": 3}]


def test_a_role_that_stops_qualifying_is_disabled_not_deleted_and_comes_back():
    targets = load_targets()
    service, directory, clock, sp_id, job_id = build(targets=targets)
    service.start_job(sp_id, job_id)
    run(service, clock, 120)
    admin = imported(directory, sp_id)["Admin,WAAD"]
    roles = targets["awsAccounts"]["contoso"]["roles"]
    entry = next(r for r in roles if r["roleName"] == "Admin")
    entry["samlProviders"] = ["WAAD", "OktaIdP"]  # a second principal: no longer eligible
    run(service, clock, 2400)
    assert imported(directory, sp_id)["Admin,WAAD"] == {**admin, "isEnabled": False}
    row = rows_of(service, job_id)[0]
    assert row["provisioningAction"] == "disable" and row["sourceIdentity"]["displayName"] == "Admin,WAAD"
    assert service.get_job(sp_id, job_id)["status"]["synchronizedEntryCountByType"] == [{"key": "Role to AppRole", "value": 2}]
    entry["samlProviders"] = ["WAAD"]
    run(service, clock, 2400)
    assert imported(directory, sp_id)["Admin,WAAD"] == admin  # re-enabled, same id
    assert rows_of(service, job_id)[0]["provisioningAction"] == "update"


def test_combined_arn_length_limit_and_new_roles_on_later_cycles():
    targets = load_targets()
    service, directory, clock, sp_id, job_id = build(targets=targets)
    roles = targets["awsAccounts"]["contoso"]["roles"]
    # role ARN 31 + n characters, provider ARN 44: "less than 240" together (DOC)
    roles.append({"roleName": "L" * 164, "samlProviders": ["WAAD"]})  # 239: imported
    roles.append({"roleName": "R" * 165, "samlProviders": ["WAAD"]})  # 240: not imported
    service.start_job(sp_id, job_id)
    run(service, clock, 120)
    assert set(imported(directory, sp_id)) == set(EXPECTED) | {"L" * 164 + ",WAAD"}
    roles.append({"roleName": "Billing", "samlProviders": ["WAAD"]})
    run(service, clock, 2400)
    assert "Billing,WAAD" in imported(directory, sp_id) and len(imported(directory, sp_id)) == 5
    assert [r["provisioningAction"] for r in rows_of(service, job_id)][:1] == ["create"]


def test_wrong_aws_keys_quarantine_and_import_nothing():
    service, directory, clock, sp_id, job_id = build(credentials=(ACCESS_KEY, "not-the-secret-key"))
    with pytest.raises(GraphError) as refused:
        service.validate_credentials(sp_id, job_id, {"useSavedCredentials": True})
    assert refused.value.status == 400
    service.start_job(sp_id, job_id)
    run(service, clock, 120)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Quarantine" and status["quarantine"]["reason"] == "EncounteredQuarantineException"
    assert imported(directory, sp_id) == {}
    assert {r["provisioningStatusInfo"]["status"] for r in rows_of(service, job_id)} == {"failure"}


def test_other_aws_keys_read_the_default_account():
    service, directory, clock, sp_id, job_id = build(credentials=("AKIAANOTHERACCOUNT01", "any-secret"))
    service.start_job(sp_id, job_id)
    run(service, clock, 120)
    assert set(imported(directory, sp_id)) == set(EXPECTED)


def test_provision_on_demand_is_refused_for_a_role_import_job():
    service, directory, _, sp_id, job_id = build()
    user = directory.add_user("Adele Vance")
    body = {"parameters": [{"ruleId": "x", "subjects": [{"objectId": user["id"], "objectTypeName": "User"}]}]}
    with pytest.raises(GraphError) as refused:
        service.provision_on_demand(sp_id, job_id, body)
    assert refused.value.status == 400 and "imports roles" in refused.value.message


def test_template_behaviour_is_data():
    """The same template without jobKind provisions its assigned users; with the roleImport block's
    names changed, rows and counts follow the data."""
    plain = load_catalog()
    aws = next(t for t in plain["applicationTemplates"] if t["id"] == AWS)["synchronizationTemplates"][0]
    del aws["jobKind"]
    service, directory, clock, sp_id, job_id = build(catalog=plain)
    user = directory.add_user("Adele Vance")
    directory.assign(sp_id, user["id"])
    service.start_job(sp_id, job_id)
    run(service, clock, 120)
    assert service.get_job(sp_id, job_id)["status"]["synchronizedEntryCountByType"] == [{"key": "User to User", "value": 1}]
    assert imported(directory, sp_id) == {}

    renamed = load_catalog()
    block = next(t for t in renamed["applicationTemplates"] if t["id"] == AWS)["synchronizationTemplates"][0]["roleImport"]
    block.update({"sourceObjectType": "IamRole", "targetObjectType": "ServicePrincipalAppRole", "entryCountType": "IamRole to AppRole",
                  "displayName": "{roleName} ({accountId})", "logDirection": "outbound"})
    service, directory, clock, sp_id, job_id = build(catalog=renamed)
    service.start_job(sp_id, job_id)
    run(service, clock, 120)
    assert set(imported(directory, sp_id)) == {"Admin (123456789012)", "Auditors (123456789012)", "Developers (123456789012)"}
    rows = rows_of(service, job_id)
    assert {(r["sourceIdentity"]["identityType"], r["targetIdentity"]["identityType"]) for r in rows} == {("IamRole", "ServicePrincipalAppRole")}
    assert {(r["sourceSystem"]["displayName"], r["targetSystem"]["displayName"]) for r in rows} == {("Azure Active Directory", "AWS Contoso")}
    assert service.get_job(sp_id, job_id)["status"]["synchronizedEntryCountByType"] == [{"key": "IamRole to AppRole", "value": 3}]


def test_state_round_trip_keeps_the_links():
    service, directory, clock, sp_id, job_id = build()
    service.start_job(sp_id, job_id)
    run(service, clock, 120)
    first = copy.deepcopy(directory.service_principals[sp_id]["appRoles"])
    state = service.to_state()
    again = ProvisioningService(clock, random.Random(7), directory, load_catalog(), {})
    again.load_state(state)
    run(again, clock, 2400)
    assert directory.service_principals[sp_id]["appRoles"] == first
    assert again.get_job(sp_id, job_id)["status"]["synchronizedEntryCountByType"] == [{"key": "Role to AppRole", "value": 3}]
