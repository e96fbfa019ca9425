"""Secrets, validateCredentials, schema, provisionOnDemand and the log row shapes (service level)."""

from __future__ import annotations

import json

import pytest

from emulator.errors import GraphError
from emulator.provisioning.testing import make_service

SCIM = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
AWS = "8b1025e4-1dd2-430b-a150-2ef79cd700f5"
GOOD = [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"}, {"key": "SecretToken", "value": "demo-scim-token"}]


@pytest.fixture()
def app():
    service, directory, clock = make_service()
    sp = directory.add_service_principal("API app", SCIM)
    service.on_instantiate(SCIM, sp["id"])
    job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    return service, directory, clock, sp["id"], job_id


def test_secrets_are_stored_per_sp_and_masked(app):
    service, _, _, sp_id, _ = app
    notify = '{"Enabled":true,"Recipients":"ops@contoso.test"}'
    service.put_secrets(sp_id, {"value": GOOD + [{"key": "SyncNotificationSettings", "value": notify}, {"key": "SyncAll", "value": "false"}]})
    assert service.get_secrets(sp_id) == {
        "value": [
            {"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"},
            {"key": "SecretToken", "value": "*"},
            {"key": "SyncNotificationSettings", "value": notify},
            {"key": "SyncAll", "value": "false"},
        ]
    }
    assert "demo-scim-token" not in json.dumps(service.to_state()["logs"])
    # merge semantics (default): keys the PUT does not name stay; an empty value removes a key
    service.put_secrets(sp_id, {"credentials": [{"key": "SecretToken", "value": "new"}, {"key": "SyncAll", "value": ""}]})
    assert [s["key"] for s in service.get_secrets(sp_id)["value"]] == ["BaseAddress", "SecretToken",
                                                                       "SyncNotificationSettings"]
    service.put_secrets(sp_id, {"value": [{"key": "BaseAddress", "value": ""}, {"key": "SyncNotificationSettings",
                                                                                 "value": ""}]})
    assert service.get_secrets(sp_id)["value"] == [{"key": "SecretToken", "value": "*"}]


def test_secrets_replace_setting_stores_exactly_the_put():
    service, directory, _ = make_service(settings={"secretsPutMode": "replace"})
    sp = directory.add_service_principal("Replace app", SCIM)
    service.put_secrets(sp["id"], {"value": GOOD + [{"key": "SyncAll", "value": "false"}]})
    service.put_secrets(sp["id"], {"credentials": [{"key": "SecretToken", "value": "new"}, {"key": "SyncAll", "value": ""}]})
    assert service.get_secrets(sp["id"])["value"] == [{"key": "SecretToken", "value": "*"}]


def test_secret_key_casing_and_shape_errors(app):
    service, _, _, sp_id, job_id = app
    with pytest.raises(GraphError) as err:
        service.put_secrets(sp_id, {"value": [{"key": "baseAddress", "value": "https://x"}]})
    assert (err.value.status, err.value.code, err.value.message) == (500, "InternalError", "Requested value 'baseAddress' was not found.")
    with pytest.raises(GraphError) as err:
        service.validate_credentials(sp_id, job_id, {"credentials": [{"key": "secretToken", "value": "x"}]})
    assert err.value.status == 500
    for body in ({}, {"value": "x"}, {"value": [{"value": "x"}]}, {"value": [{"key": "SecretToken", "value": 5}]}, []):
        with pytest.raises(GraphError) as err:
            service.put_secrets(sp_id, body)
        assert err.value.status == 400
    assert service.get_secrets(sp_id) == {"value": []}


def test_secret_settings_400_and_merge():
    service, directory, _ = make_service(settings={"secretKeyErrorStatus": 400, "secretsPutMode": "merge"})
    sp = directory.add_service_principal("Settings app", SCIM)
    with pytest.raises(GraphError) as err:
        service.put_secrets(sp["id"], {"value": [{"key": "baseAddress", "value": "https://x"}]})
    assert err.value.status == 400 and "BaseAddress" in err.value.message
    service.put_secrets(sp["id"], {"value": GOOD})
    service.put_secrets(sp["id"], {"value": [{"key": "SyncAll", "value": "true"}]})
    assert [s["key"] for s in service.get_secrets(sp["id"])["value"]] == ["BaseAddress", "SecretToken", "SyncAll"]


def test_validate_credentials_forms(app):
    service, directory, _, sp_id, job_id = app
    assert service.validate_credentials(sp_id, job_id, {"credentials": GOOD}) is None
    assert service.validate_credentials(sp_id, None, {"templateId": "scim", "credentials": GOOD}) is None
    with pytest.raises(GraphError) as err:
        service.validate_credentials(sp_id, None, {"credentials": GOOD})
    assert err.value.status == 400 and "templateId" in err.value.message
    with pytest.raises(GraphError) as err:
        service.validate_credentials(sp_id, job_id, {"credentials": GOOD[:1]})
    assert err.value.status == 400 and "SecretToken" in err.value.message
    with pytest.raises(GraphError) as err:
        service.validate_credentials(sp_id, job_id, {"useSavedCredentials": True})  # nothing saved yet
    assert err.value.status == 400
    with pytest.raises(GraphError) as err:
        service.validate_credentials(sp_id, "scim.unknown", {"credentials": GOOD})
    assert err.value.status == 404
    # the seed article's AWS example: ClientSecret + SecretToken
    aws = directory.add_service_principal("AWS Contoso", AWS)
    aws_job = service.create_job(aws["id"], {"templateId": "aws"})["id"]
    service.validate_credentials(aws["id"], aws_job, {"credentials": [{"key": "ClientSecret", "value": "AKIAEXAMPLE"}, {"key": "SecretToken", "value": "s3cr3t"}]})
    with pytest.raises(GraphError):
        service.validate_credentials(aws["id"], aws_job, {"credentials": [{"key": "ClientSecret", "value": "invalid-credentials"}, {"key": "SecretToken", "value": "s"}]})


def test_schema_get_and_put(app):
    service, directory, clock, sp_id, job_id = app
    schema = service.get_schema(sp_id, job_id)
    assert schema["id"] == job_id and schema["version"] == "v1.2"
    rule = schema["synchronizationRules"][0]
    assert rule["id"] and rule["name"] and rule["sourceDirectoryName"] == "Azure Active Directory"
    assert {d["name"] for d in schema["directories"]} == {"Azure Active Directory", "customappsso"}
    for body in ({}, {"directories": [], "synchronizationRules": "x"}, {"directories": [1], "synchronizationRules": []}):
        with pytest.raises(GraphError) as err:
            service.put_schema(sp_id, job_id, body)
        assert err.value.status == 400
    service.put_secrets(sp_id, {"value": GOOD})
    directory.assign(sp_id, directory.add_user("Schema user")["id"])
    service.start_job(sp_id, job_id)
    clock.advance(60)
    assert service.get_job(sp_id, job_id)["status"]["code"] == "Active"
    rule["name"] = "USER_TO_USER_CUSTOM"
    service.put_schema(sp_id, job_id, {"directories": schema["directories"], "synchronizationRules": [rule]})
    assert service.get_schema(sp_id, job_id)["synchronizationRules"][0]["name"] == "USER_TO_USER_CUSTOM"
    assert service.get_job(sp_id, job_id)["status"]["code"] == "NotRun"  # a new initial cycle (DOC)
    clock.advance(60)
    assert service.provisioning_logs("v1.0")[0]["provisioningAction"] == "other"


def test_provision_on_demand_shapes_and_errors(app):
    service, directory, _, sp_id, job_id = app
    rule_id = service.get_schema(sp_id, job_id)["synchronizationRules"][0]["id"]
    user = directory.add_user("On Demand")
    other = directory.add_user("Not Assigned")
    directory.assign(sp_id, user["id"])
    body = {"parameters": [{"ruleId": rule_id, "subjects": [{"objectId": user["id"], "objectTypeName": "User"}]}]}
    with pytest.raises(GraphError) as err:
        service.provision_on_demand(sp_id, job_id, body)  # no credentials yet
    assert err.value.status == 400
    service.put_secrets(sp_id, {"value": GOOD})
    result = service.provision_on_demand(sp_id, job_id, body)
    key, value = json.loads(result["key"]), json.loads(result["value"])
    assert key["result"] == "Success" and value["action"] == "Create" and value["statusInfo"]["status"] == "Success"
    assert value["reportableIdentifier"] == "On Demand" and value["provisioningSteps"][0]["provisioningStepType"] == "import"
    again = json.loads(service.provision_on_demand(sp_id, job_id, body)["key"])
    assert again == {"result": "Skipped", "details": {"errorCode": "RedundantExport"}}
    skipped = service.provision_on_demand(sp_id, job_id, {"parameters": [{"ruleId": rule_id, "subjects": [{"objectId": other["id"], "objectTypeName": "User"}]}]})
    assert json.loads(skipped["key"])["details"]["errorCode"] == "NotEffectivelyEntitled"
    both = service.provision_on_demand(sp_id, job_id, {"parameters": [{"ruleId": rule_id, "subjects": [{"objectId": user["id"]}, {"objectId": other["id"]}]}]})
    assert both["key"] == "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo"
    assert len(json.loads(both["value"])) == 2
    for bad in ({}, {"parameters": [{"ruleId": "nope", "subjects": [{"objectId": user["id"]}]}]}, {"parameters": [{"ruleId": rule_id, "subjects": []}]}):
        with pytest.raises(GraphError) as err:
            service.provision_on_demand(sp_id, job_id, bad)
        assert err.value.status == 400
    with pytest.raises(GraphError) as err:
        service.provision_on_demand(sp_id, job_id, {"parameters": [{"ruleId": rule_id, "subjects": [{"objectId": "00000000-0000-0000-0000-00000000dead"}]}]})
    assert err.value.status == 404


def test_log_rows_v1_and_beta_fields(app):
    service, directory, clock, sp_id, job_id = app
    service.put_secrets(sp_id, {"value": [{"key": "BaseAddress", "value": "https://escrow-failures.test/scim"}, {"key": "SecretToken", "value": "t"}]})
    for i in range(3):
        directory.assign(sp_id, directory.add_user(f"Log user {i}")["id"])
    service.start_job(sp_id, job_id)
    clock.advance(120)
    v1 = service.provisioning_logs("v1.0")
    beta = service.provisioning_logs("beta")
    assert len(v1) == len(beta) == 3
    assert [r["activityDateTime"] for r in v1] == sorted((r["activityDateTime"] for r in v1), reverse=True)
    required = {"id", "activityDateTime", "tenantId", "jobId", "cycleId", "changeId", "provisioningAction", "durationInMilliseconds",
                "sourceSystem", "targetSystem", "initiatedBy", "servicePrincipal", "sourceIdentity", "targetIdentity",
                "provisioningStatusInfo", "provisioningSteps", "modifiedProperties"}
    for row in v1:
        assert required <= set(row) and "action" not in row and "statusInfo" not in row
        assert row["servicePrincipal"] == {"id": sp_id, "displayName": "API app"}
        assert row["initiatedBy"]["initiatorType"] == "system" and row["tenantId"] == directory.tenant_id
    failed_v1 = next(r for r in v1 if r["provisioningStatusInfo"]["status"] == "failure")
    failed_beta = next(r for r in beta if r["id"] == failed_v1["id"])
    info = failed_v1["provisioningStatusInfo"]["errorInformation"]
    assert failed_beta["statusInfo"] == {
        "@odata.type": "#microsoft.graph.statusDetails",
        "status": "failure",
        "errorCode": info["errorCode"],
        "reason": info["reason"],
        "additionalDetails": None,
        "errorCategory": "NonServiceFailure",
        "recommendedAction": None,
    }
    assert failed_beta["action"] == "Create" and failed_beta["provisioningAction"] == "create"
    ok_beta = next(r for r in beta if r["provisioningStatusInfo"]["status"] == "success")
    assert ok_beta["statusInfo"] == {"@odata.type": "#microsoft.graph.statusBase", "status": "success"}
    assert ok_beta["provisioningStatusInfo"] == {"status": "success", "errorInformation": None}
    assert failed_v1["targetIdentity"]["id"] == "" and ok_beta["targetIdentity"]["id"]
    assert ok_beta["targetIdentity"]["identityType"] == "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
