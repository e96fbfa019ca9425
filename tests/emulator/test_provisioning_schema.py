"""The job schema drives the engine: attribute mappings and their expressions decide the exported
values, scoping filters skip users, a removed mapping is not exported, parseExpression, the 400s."""

from __future__ import annotations

import copy

import pytest

from emulator.errors import GraphError
from emulator.provisioning import expressions as ex
from emulator.provisioning.testing import make_service

SCIM = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
GOOD = [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"}, {"key": "SecretToken", "value": "demo-scim-token"}]


@pytest.fixture()
def app():
    service, directory, clock = make_service()
    sp = directory.add_service_principal("Schema app", SCIM)
    service.on_instantiate(SCIM, sp["id"])
    job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    service.put_secrets(sp["id"], {"value": GOOD})
    return service, directory, clock, sp["id"], job_id


def _users_mapping(schema: dict) -> dict:
    return next(m for m in schema["synchronizationRules"][0]["objectMappings"] if m["sourceObjectName"] == "User")


def _put(service, sp_id, job_id, schema):
    body = copy.deepcopy(schema)
    body.pop("id", None)
    service.put_schema(sp_id, job_id, body)


def _rows(service, action=None):
    rows = service.provisioning_logs("v1.0")
    return [r for r in rows if action is None or r["provisioningAction"] == action]


def _exported(row: dict) -> dict:
    return {p["displayName"]: p["newValue"] for p in row["modifiedProperties"]}


def test_exported_values_follow_the_mappings_and_a_changed_expression_updates_them(app):
    service, directory, clock, sp_id, job_id = app
    user = directory.add_user("Ada Lovelace", givenName="Ada", surname="Lovelace", department="Research")
    directory.assign(sp_id, user["id"])
    service.start_job(sp_id, job_id)
    clock.advance(120)
    created = _rows(service, "create")
    assert len(created) == 1
    assert _exported(created[0])["userName"] == "ada.lovelace@contoso.test"  # [userPrincipalName]
    assert _exported(created[0])["active"] == "True"  # Switch([IsSoftDeleted], , "False", "True", ...)

    schema = service.get_schema(sp_id, job_id)
    users = _users_mapping(schema)
    user_name = next(a for a in users["attributeMappings"] if a["targetAttributeName"] == "userName")
    user_name["source"] = {"expression": 'ToLower(Join(".", [givenName], [surname]))', "name": "Join",
                           "parameters": [], "type": "Function"}
    users["attributeMappings"] = [a for a in users["attributeMappings"]
                                  if a["targetAttributeName"] != 'emails[type eq "work"].value']
    _put(service, sp_id, job_id, schema)
    assert service.get_job(sp_id, job_id)["status"]["code"] == "NotRun"  # the next cycle is an initial one
    clock.advance(120)
    updated = _rows(service, "update")
    assert len(updated) == 1
    changed = {p["displayName"]: (p["oldValue"], p["newValue"]) for p in updated[0]["modifiedProperties"]}
    assert changed == {"userName": ("ada.lovelace@contoso.test", "ada.lovelace")}
    # the removed mapping is not exported any more: a new user gets no email
    other = directory.add_user("Alan Turing", givenName="Alan", surname="Turing")
    directory.assign(sp_id, other["id"])
    clock.advance(3600)
    values = _exported(_rows(service, "create")[0])
    assert values["userName"] == "alan.turing"
    assert 'emails[type eq "work"].value' not in values


def test_a_scoping_filter_skips_users_outside_it_with_the_scoping_reason(app):
    service, directory, clock, sp_id, job_id = app
    inside = directory.add_user("In Scope", department="Engineering")
    outside = directory.add_user("Out Of Scope", department="Sales")
    for u in (inside, outside):
        directory.assign(sp_id, u["id"])
    schema = service.get_schema(sp_id, job_id)
    _users_mapping(schema)["scope"] = {"groups": [{"name": "engineering only", "clauses": [
        {"operatorName": "EQUALS", "sourceOperandName": "department", "targetOperand": {"values": ["Engineering"]}}]}]}
    _put(service, sp_id, job_id, schema)
    service.start_job(sp_id, job_id)
    clock.advance(120)
    by_user = {r["sourceIdentity"]["displayName"]: r for r in _rows(service)}
    assert by_user["In Scope"]["provisioningStatusInfo"]["status"] == "success"
    skipped = by_user["Out Of Scope"]
    assert (skipped["provisioningAction"], skipped["provisioningStatusInfo"]["status"]) == ("create", "skipped")
    skip_step = skipped["provisioningSteps"][-1]
    assert skip_step["details"]["SkipReason"] == "NotEffectivelyEntitled"
    assert "scoping filter" in skip_step["description"]
    assert skipped["provisioningSteps"][1]["details"]["Scoping filter evaluation passed"] == "False"
    # leaving the filter deprovisions the user provisioned before
    directory.users[inside["id"]]["department"] = "Sales"
    clock.advance(3600)
    assert [r["sourceIdentity"]["displayName"] for r in _rows(service, "disable")] == ["In Scope"]


def test_an_export_without_a_required_attribute_fails_at_the_target(app):
    service, directory, clock, sp_id, job_id = app
    directory.assign(sp_id, directory.add_user("No Employee Id")["id"])
    schema = service.get_schema(sp_id, job_id)
    user_name = next(a for a in _users_mapping(schema)["attributeMappings"] if a["targetAttributeName"] == "userName")
    user_name["source"]["expression"] = "[employeeId]"  # empty for this user; userName is required
    _put(service, sp_id, job_id, schema)
    service.start_job(sp_id, job_id)
    clock.advance(120)
    [row] = _rows(service, "create")
    assert row["provisioningStatusInfo"]["status"] == "failure"
    assert row["provisioningStatusInfo"]["errorInformation"]["errorCode"] == "SystemForCrossDomainIdentityManagementBadRequest"
    assert service.get_job(sp_id, job_id)["status"]["lastExecution"]["state"] == "EntryLevelErrors"


def test_an_object_mapping_turned_off_is_not_synchronized(app):
    service, directory, clock, sp_id, job_id = app
    user = directory.add_user("Member")
    directory.assign(sp_id, directory.add_group("Team", members=[user["id"]])["id"])
    schema = service.get_schema(sp_id, job_id)
    groups = next(m for m in schema["synchronizationRules"][0]["objectMappings"] if m["sourceObjectName"] == "Group")
    groups["enabled"] = False
    _put(service, sp_id, job_id, schema)
    service.start_job(sp_id, job_id)
    clock.advance(120)
    assert {r["sourceIdentity"]["identityType"] for r in _rows(service)} == {"User"}


@pytest.mark.parametrize("change, named", [
    (lambda m: m["attributeMappings"][0]["source"].update(expression="ToLower([userPrincipalName]"), "attributeMapping 'userName'"),
    (lambda m: m["attributeMappings"][0]["source"].update(expression="Frobnicate([mail])"), "unknown function 'Frobnicate'"),
    (lambda m: m["attributeMappings"][0]["source"].update(expression="[favouriteColour]"), "'favouriteColour' is not an attribute"),
    (lambda m: m["attributeMappings"][0].update(targetAttributeName="shoeSize"), "attributeMapping 'shoeSize'"),
    (lambda m: m.update(scope={"groups": [{"name": "g", "clauses": [{"operatorName": "SOUNDS LIKE", "sourceOperandName": "mail",
                                                                    "targetOperand": {"values": []}}]}]}), "unknown operator"),
])
def test_put_refuses_an_unusable_mapping_with_a_400_naming_it(app, change, named):
    service, _, _, sp_id, job_id = app
    schema = service.get_schema(sp_id, job_id)
    change(_users_mapping(schema))
    with pytest.raises(GraphError) as err:
        _put(service, sp_id, job_id, schema)
    assert err.value.status == 400 and err.value.code == "BadRequest"
    assert "Provision Microsoft Entra ID Users" in err.value.message and named in err.value.message
    assert _users_mapping(service.get_schema(sp_id, job_id))["attributeMappings"][0]["source"]["expression"] == "[userPrincipalName]"


def test_parse_expression(app):
    service, _, _, sp_id, job_id = app
    ok = service.parse_expression(sp_id, job_id, None, {
        "expression": 'Join("@", ToLower([mailNickname]), "contoso.test")',
        "testInputObject": {"definition": None, "properties": [{"key": "mailNickname", "value": "Ada.L"}]}})
    assert ok["parsingSucceeded"] and ok["evaluationSucceeded"] and ok["evaluationResult"] == ["ada.l@contoso.test"]
    parsed = ok["parsedExpression"]
    assert (parsed["type"], parsed["name"]) == ("Function", "Join")
    assert [p["value"]["type"] for p in parsed["parameters"]] == ["Constant", "Function", "Constant"]
    bad = service.parse_expression(sp_id, None, "scim", {"expression": 'Switch([a], "x"'})
    assert not bad["parsingSucceeded"] and "expected ',' or ')'" in bad["error"]["message"]
    with pytest.raises(GraphError) as err:
        service.parse_expression(sp_id, job_id, None, {})
    assert err.value.status == 400


@pytest.mark.parametrize("expression, source, value", [
    ("[mail]", {"mail": "a@b"}, "a@b"),
    ('"constant"', {}, "constant"),
    ('Append([mailNickname], "@contoso.test")', {"mailNickname": "ada"}, "ada@contoso.test"),
    ("Coalesce([mail], [userPrincipalName])", {"userPrincipalName": "u@c"}, "u@c"),
    ('IIF(IsPresent([mail]), "has mail", "no mail")', {"mail": ""}, "no mail"),
    ("Left(ToUpper([givenName]), 3)", {"givenName": "Grace"}, "GRA"),
    ('Switch([department], "other", "Sales", "S", "Research", "R")', {"department": "Research"}, "R"),
    ('Switch([department], "other", "Sales", "S")', {"department": "HR"}, "other"),
    ("Not([accountEnabled])", {"accountEnabled": "True"}, "False"),
    ('Trim(" x ")', {}, "x"),
    ('"quote \\" inside"', {}, 'quote " inside'),
])
def test_expression_language(expression, source, value):
    assert ex.evaluate(ex.parse(expression), source) == value


# ----- over HTTPS, as a client sees it -------------------------------------------------------------

def test_parse_expression_and_the_mapping_400_over_https(graph_as):
    from emulator_graph import GraphClient, assert_graph_error

    graph: GraphClient = graph_as("workflow")
    _, sp = graph.instantiate("Schema over HTTPS")
    base = f"servicePrincipals/{sp['id']}/synchronization"
    job = graph.post(f"{base}/jobs", json={"templateId": "scim"}).json()
    parsed = graph.post(f"{base}/jobs/{job['id']}/schema/parseExpression", json={"expression": "ToUpper([mail])"})
    assert parsed.status_code == 200, parsed.text
    body = parsed.json()
    assert body["@odata.context"].endswith("microsoft.graph.parseExpressionResponse")
    assert body["parsingSucceeded"] is True and body["parsedExpression"]["name"] == "ToUpper"
    template = graph.post(f"{base}/templates/scim/schema/parseExpression", json={"expression": "ToUpper([mail]"}).json()
    assert template["parsingSucceeded"] is False and template["error"]["message"]
    assert_graph_error(graph.post(f"{base}/jobs/{job['id']}/schema/parseExpression", json={}), 400, "BadRequest")

    schema = graph.get(f"{base}/jobs/{job['id']}/schema").json()
    schema.pop("@odata.context", None)
    _users_mapping(schema)["attributeMappings"][0]["source"]["expression"] = "Nope([mail])"
    refused = graph.put(f"{base}/jobs/{job['id']}/schema", json=schema)
    assert_graph_error(refused, 400, "BadRequest")
    assert "attributeMapping 'userName'" in refused.json()["error"]["message"]
