"""Schema profiles: the shipped files, validation naming the mapping, plan/apply/diff round trip, the
emulator's engine exporting what the profile says, drift after a portal-style change and enforce."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import mini_jsonschema
from core_support import CUSTOM_TEMPLATE_ID, HEALTHY_CREDENTIALS, REPO, creds, new_app
from core import errors, model, steps
from core import schema_profiles as profiles
from core.graph import synchronization as sync
from core.graph import assignments as assign_graph
from core.steps import profiles as profile_steps

SCHEMA = json.loads((REPO / "schemas/schema-profile.schema.json").read_text())
SHIPPED = sorted((REPO / "profiles").glob("*.json"))
ENGINEER, SALES = "johanna.lorenz@contoso-emulator.onmicrosoft.com", "christie.cline@contoso-emulator.onmicrosoft.com"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_profiles_are_valid(path: Path):
    doc = json.loads(path.read_text())
    assert mini_jsonschema.errors(doc, SCHEMA) == []
    assert profiles.load(path.stem)["name"] == doc["name"] and path.stem == profiles.ref(doc)


def test_three_profiles_ship():
    assert {p.stem for p in SHIPPED} >= {"aws-identity-center.v1", "github-emu.v1", "custom-scim.v1"}


@pytest.mark.parametrize("change, path", [
    ({"version": "1"}, "version"),
    ({"objectMappings": {"User": {"attributeMappings": {"userName": {}}}}}, "objectMappings.User.attributeMappings.userName.expression"),
    ({"objectMappings": {"User": {"attributeMappings": {"userName": {"expression": "[mail]", "flowType": "Sometimes"}}}}},
     "objectMappings.User.attributeMappings.userName.flowType"),
    ({"objectMappings": {"User": {"scope": {"groups": [{"name": "x", "clauses": [{"operatorName": "EQUALS"}]}]}}}},
     "objectMappings.User.scope.groups[0].clauses[0]"),
    ({"objectMappings": {"User": {"enabeld": True}}}, "objectMappings.User.enabeld"),
])
def test_shape_problems_name_the_field(change, path):
    doc = {"name": "p", "version": 1, "synchronizationTemplateId": "scim", "objectMappings": {"User": {}}, **change}
    problems = profiles.shape_problems(doc)
    assert path in [p.path for p in problems]
    assert mini_jsonschema.errors(doc, SCHEMA) != []  # the JSON Schema refuses it too


@pytest.fixture
def profile_dir(tmp_path, monkeypatch):
    for path in SHIPPED:
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(profiles, "PROFILES_DIR", tmp_path)
    return tmp_path


def _instance(ctx, name: str) -> tuple[str, str]:
    sp_id = new_app(ctx, name, credentials=HEALTHY_CREDENTIALS)["servicePrincipalId"]
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id, application_template_id=CUSTOM_TEMPLATE_ID)["jobId"]
    return sp_id, job_id


def _started(ctx, name: str, users: list[str]) -> tuple[str, str]:
    sp_id, job_id = _instance(ctx, name)
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=creds(HEALTHY_CREDENTIALS))
    steps.assign_principals(ctx, service_principal_id=sp_id, users=users)
    steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    return sp_id, job_id


def test_validation_errors_name_the_mapping(ctx, profile_dir):
    sp_id, _ = _instance(ctx, "Profile validation app")
    bad = json.loads((profile_dir / "custom-scim.v1.json").read_text())
    bad["version"] = 9
    bad["objectMappings"]["User"]["attributeMappings"].update({
        "shoeSize": {"expression": "[mail]"},
        "displayName": {"expression": "Frobnicate([displayName])"},
        "name.givenName": {"expression": "[favouriteColour]"},
    })
    bad["objectMappings"]["Device"] = {"enabled": True}
    (profile_dir / "custom-scim.v9.json").write_text(json.dumps(bad))
    with pytest.raises(errors.InvalidRequest) as caught:
        profile_steps.plan(ctx, service_principal_id=sp_id, profile="custom-scim.v9")
    by_path = {p.path: p.message for p in caught.value.problems}
    assert "'shoeSize' is not an attribute" in by_path["objectMappings.User.attributeMappings.shoeSize"]
    assert "object mapping 'Provision Microsoft Entra ID Users'" in by_path["objectMappings.User.attributeMappings.shoeSize"]
    # the expression Graph's parseExpression refuses, named with its mapping
    message = by_path["objectMappings.User.attributeMappings.displayName.expression"]
    assert "attribute mapping 'displayName'" in message and "Frobnicate" in message
    assert "'favouriteColour' is not an attribute of User" in by_path["objectMappings.User.attributeMappings.name.givenName.expression"]
    assert "no object mapping for 'Device'" in by_path["objectMappings.Device"]
    with pytest.raises(errors.InvalidRequest) as caught:
        profile_steps.plan(ctx, service_principal_id=sp_id, profile="custom-scim")
    assert [p.path for p in caught.value.problems] == ["schemaProfile"]


def test_apply_and_diff_round_trip_and_the_engine_exports_what_the_profile_says(ctx, core_env, profile_dir):
    sp_id, job_id = _started(ctx, "Profile apply app", [ENGINEER, SALES])
    core_env.admin.advance(3600)  # the initial cycle provisions both under the template's mappings
    planned = profile_steps.plan(ctx, service_principal_id=sp_id, profile="custom-scim.v1")
    assert "_desired" not in planned and "desired" not in planned  # the schema itself never leaves the step
    changes = {(c["field"], c.get("targetAttributeName"), c["change"]) for c in planned["changes"]}
    assert ("attributeMapping", "userName", "change") in changes
    assert ("attributeMapping", 'emails[type eq "work"].value', "remove") in changes
    assert ("attributeMapping", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "add") in changes
    assert ("scope", None, "change") in changes and ("enabled", None, "change") in changes
    before = sync.get_schema(ctx.graph, sp_id, job_id)
    initial = sync.get_job(ctx.graph, sp_id, job_id)["status"]["lastExecution"]

    dry = profile_steps.apply_profile(ctx, service_principal_id=sp_id, profile="custom-scim.v1", dry_run=True)
    assert dry["applied"] is False and dry["recorded"] is False
    assert profiles.fingerprint(sync.get_schema(ctx.graph, sp_id, job_id)) == profiles.fingerprint(before)

    applied = profile_steps.apply_profile(ctx, service_principal_id=sp_id, profile="custom-scim.v1")
    assert applied["applied"] is True and applied["restarted"] is True and applied["recorded"] is True
    after = profile_steps.plan(ctx, service_principal_id=sp_id, profile="custom-scim.v1")
    assert after["changes"] == [] and after["fingerprint"]["actual"] == after["fingerprint"]["desired"]
    again = profile_steps.apply_profile(ctx, service_principal_id=sp_id, profile="custom-scim.v1")
    assert (again["applied"], again["restarted"], again["recorded"]) == (False, False, True)  # a retry writes nothing
    tags = ctx.graph.get(f"/servicePrincipals/{sp_id}", {"$select": "tags"})["tags"]
    assert f"{ctx.tag}:schema-profile:custom-scim=1" in tags

    core_env.admin.advance(3600)
    rows = [r for r in ctx.graph.get_all("/auditLogs/provisioning", {"$filter": f"jobId eq '{job_id}'"})
            if r["sourceIdentity"]["identityType"] == "User"]  # newest first
    engineer = [r for r in rows if r["sourceIdentity"]["displayName"] == "Johanna Lorenz"]
    assert [r["provisioningAction"] for r in engineer] == ["update", "create"]
    created = {p["displayName"]: p["newValue"] for p in engineer[1]["modifiedProperties"]}
    assert created["userName"] == ENGINEER and created['emails[type eq "work"].value'] == ENGINEER
    values = {p["displayName"]: (p["oldValue"], p["newValue"]) for p in engineer[0]["modifiedProperties"]}
    assert values["userName"] == (ENGINEER, "johanna.lorenz")  # ToLower(Join(".", [givenName], [surname]))
    assert values["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"] == (None, "Engineering")
    assert 'emails[type eq "work"].value' not in values  # the removed mapping is not exported
    # Sales is outside the profile's scoping filter: the user provisioned before is disabled
    sales = [r["provisioningAction"] for r in rows if r["sourceIdentity"]["displayName"] == "Christie Cline"]
    assert "disable" in sales
    # the rollout's signals: the cycles before created both and took nothing away; the cycles after the
    # change disabled the one the filter scopes out (and updated the other)
    first, later = profile_steps.cycle_summary(ctx, service_principal_id=sp_id, job_id=job_id, windows=[
        {"since": "2000-01-01T00:00:00Z", "until": initial["timeEnded"]}, {"since": initial["timeEnded"]}])["cycles"]
    assert (first["failedObjects"], first["removedObjects"], first["scopedOutObjects"]) == (0, 0, 0)
    assert first["rows"] >= 2
    assert (later["failedObjects"], later["removedObjects"]) == (0, 1)
    alone = profile_steps.cycle_summary(ctx, service_principal_id=sp_id, job_id=job_id,
                                        windows=[{"since": initial["timeEnded"]}])
    assert alone["cycles"][0]["removedObjects"] == 1 and alone["complete"] is True
    # found in review: the rollout's windows are a cycle's times as the job status gives them (core.status:
    # to the second, the fraction cut off) while rows carry their own fraction, so a row in the cycle's last
    # second (here the disable, the cycle's last row) fell after ``until`` and was not counted
    from core import status as job_status
    from core.times import iso_seconds
    disable = next(r for r in rows if r["provisioningAction"] == "disable")
    cycle = [job_status.parse_time(r["activityDateTime"]) for r in rows if r["cycleId"] == disable["cycleId"]]
    [window] = profile_steps.cycle_summary(ctx, service_principal_id=sp_id, job_id=job_id, windows=[
        {"since": iso_seconds(min(cycle)), "until": iso_seconds(max(cycle))}])["cycles"]
    assert window["removedObjects"] == 1, window


def test_the_canary_recorded_in_the_notes_is_read_and_checked(ctx):
    sp_id, _ = _instance(ctx, "Profile canary notes app")
    assert profile_steps.recorded_canary(ctx, sp_id) is None
    user = "11111111-2222-3333-4444-555555555555"
    notes = json.loads(ctx.graph.get(f"/servicePrincipals/{sp_id}", {"$select": "notes"})["notes"])
    ctx.graph.patch(f"/servicePrincipals/{sp_id}", {"notes": json.dumps({**notes, "canary": {"objectId": user, "objectType": "User"}})})
    assert profile_steps.recorded_canary(ctx, sp_id) == {"objectId": user, "objectTypeName": "User"}
    ctx.graph.patch(f"/servicePrincipals/{sp_id}", {"notes": json.dumps({**notes, "canary": {"objectId": "x"}})})
    assert profile_steps.recorded_canary(ctx, sp_id) is None  # not a subject: no test user, not a bad call


def test_scoping_skips_are_told_from_other_skips():
    """The emulator's rows (emulator/provisioning/logs.py): a user a scoping filter refuses, a disabled user
    (also NotEffectivelyEntitled, but in scope), a redundant export."""
    from emulator.provisioning import logs as logrows

    def row(status, steps):
        return {"provisioningStatusInfo": {"status": status}, "provisioningSteps": steps}

    assert profile_steps.out_of_scope(row("skipped", logrows.scoped_out_steps("User", "A", "engineering")))
    assert not profile_steps.out_of_scope(row("skipped", logrows.skipped_steps("User", "A")))
    assert not profile_steps.out_of_scope(row("skipped", logrows.steps_for("other", "User", "A", "app", "skipped", True)))
    assert not profile_steps.out_of_scope(row("success", logrows.scoped_out_steps("User", "A", "engineering")))
    beta = {"statusInfo": {"status": "Skipped"}, "provisioningSteps": [
        {"description": "... This object did not pass a scoping filter. ...", "details": {}}]}
    assert profile_steps.out_of_scope(beta)


def test_a_portal_change_shows_as_drift_and_enforce_puts_it_back(ctx, core_env, profile_dir):
    sp_id, job_id = _started(ctx, "Profile drift app", [ENGINEER])
    profile_steps.apply_profile(ctx, service_principal_id=sp_id, profile="custom-scim.v1")
    clean = profile_steps.drift(ctx, service_principal_id=sp_id)
    assert clean["drifted"] is False and clean["profile"] == "custom-scim.v1" and clean["parts"] == []

    # someone edits the userName mapping in the portal (a Graph PUT of the whole schema)
    schema = sync.get_schema(ctx.graph, sp_id, job_id)
    schema.pop("@odata.context", None)
    users = next(m for m in schema["synchronizationRules"][0]["objectMappings"] if m["sourceObjectName"] == "User")
    user_name = next(a for a in users["attributeMappings"] if a["targetAttributeName"] == "userName")
    user_name["source"] = {"expression": "[mail]", "name": "mail", "parameters": [], "type": "Attribute"}
    sync.put_schema(ctx.graph, sp_id, job_id, schema)

    drifted = profile_steps.drift(ctx, service_principal_id=sp_id)
    assert drifted["drifted"] is True and drifted["parts"] == ["schema"]
    [change] = drifted["schema"]["changes"]
    assert (change["field"], change["targetAttributeName"], change["change"]) == ("attributeMapping", "userName", "change")
    assert change["before"]["expression"] == "[mail]"
    assert change["after"]["expression"] == 'ToLower(Join(".", [givenName], [surname]))'

    enforced = profile_steps.apply_profile(ctx, service_principal_id=sp_id, profile=drifted["profile"])
    assert enforced["applied"] is True
    assert profile_steps.drift(ctx, service_principal_id=sp_id)["drifted"] is False
    # a paused job is drift of the schedule state
    sync.pause_job(ctx.graph, sp_id, job_id)
    paused = profile_steps.drift(ctx, service_principal_id=sp_id)
    assert paused["parts"] == ["schedule"] and paused["schedule"]["actual"] != "Active"


def test_instances_are_found_by_key_and_only_ours_are_touched(ctx, profile_dir):
    sp_id, _ = _instance(ctx, "Profile lookup app")
    assert profile_steps.find_instance(ctx, model.instance_key("Profile lookup app"))["id"] == sp_id
    with pytest.raises(errors.NotFound):
        profile_steps.find_instance(ctx, "0" * 20)
    with pytest.raises(errors.InvalidRequest):
        profile_steps.find_instance(ctx, "x' or true")
    ctx.graph.patch(f"/servicePrincipals/{sp_id}", {"tags": ["someone-else"]})
    with pytest.raises(errors.PermanentError) as caught:
        profile_steps.apply_profile(ctx, service_principal_id=sp_id, profile="custom-scim.v1")
    assert caught.value.code == "NotManaged"


def test_a_profile_reference_with_a_trailing_newline_is_refused():
    """found in review: ``PROFILE_REF`` ended in ``$``, so "custom-scim.v1\\n" loaded custom-scim.v1 while the
    raw text went on into the apply orchestration's id."""
    with pytest.raises(errors.InvalidRequest) as caught:
        profiles.parse_ref("custom-scim.v1\n", path="profile")
    assert [p.path for p in caught.value.problems] == ["profile"]
    assert profiles.parse_ref("custom-scim.v1") == ("custom-scim", 1)


def test_settings_schedule_and_secret_drift_and_enforce_per_part(ctx, core_env, profile_dir):
    """Portal-style changes through Graph: the notification e-mail set, the job paused, a credential key
    cleared. Drift names each part; enforce's dry run plans and writes nothing; enforce puts each back
    (the secret set saved again from Key Vault, the job started) and a second enforce finds nothing to do."""
    sp_id, job_id = _started(ctx, "Profile settings drift app", [ENGINEER])
    assert profile_steps.drift(ctx, service_principal_id=sp_id)["parts"] == []
    settings = json.dumps({"Enabled": True, "Recipients": "someone@contoso.test", "DeleteThresholdEnabled": True,
                           "DeleteThresholdValue": 25})  # the portal's threshold lowered from the default 500
    sync.put_secrets(ctx.graph, sp_id, {"SyncNotificationSettings": settings, "SecretToken": ""}, [])
    sync.pause_job(ctx.graph, sp_id, job_id)

    drifted = profile_steps.drift(ctx, service_principal_id=sp_id)
    assert drifted["parts"] == ["secretKeys", "provisioningSettings", "schedule"], drifted
    assert drifted["secretKeys"]["missing"] == ["SecretToken"]
    part = drifted["provisioningSettings"]
    assert part["valueCompared"] is True
    assert {d["field"]: (d["expected"], d["actual"]) for d in part["differences"]} == {
        "SyncNotificationSettings.Recipients": (None, "someone@contoso.test"),
        "SyncNotificationSettings.Enabled": (False, True),
        "SyncNotificationSettings.DeleteThreshold": ({"enabled": True, "count": 500}, {"enabled": True, "count": 25})}
    assert drifted["assignments"]["compared"] is False  # this instance's notes record no assignments
    assert "someone@contoso.test" not in json.dumps(drifted["secretKeys"])  # names only

    planned = profile_steps.enforce_drift(ctx, service_principal_id=sp_id)  # dry run by default
    assert planned["dryRun"] is True and {a["outcome"] for a in planned["actions"]} == {"planned"}
    assert [a["part"] for a in planned["actions"]] == ["secretKeys+provisioningSettings", "schedule"]
    assert profile_steps.drift(ctx, service_principal_id=sp_id)["parts"] == drifted["parts"]  # nothing written

    done = profile_steps.enforce_drift(ctx, service_principal_id=sp_id, dry_run=False)
    assert [(a["part"], a["outcome"]) for a in done["actions"]] == [("secretKeys+provisioningSettings", "done"),
                                                                  ("schedule", "done")], done
    assert profile_steps.drift(ctx, service_principal_id=sp_id)["parts"] == []
    again = profile_steps.enforce_drift(ctx, service_principal_id=sp_id, dry_run=False)
    assert again["drifted"] is False and again["actions"] == []


def test_threshold_and_assignment_drift_against_the_request_kept_in_the_notes(ctx, core_env, profile_dir):
    """The request's deletion threshold (off) and assignments are kept in the notes; a portal-style change
    of either is drift naming it, and enforce saves the request's threshold (not the default) and assigns
    the removed principal again."""
    sp_id = new_app(ctx, "Profile threshold drift app", credentials=HEALTHY_CREDENTIALS,
                    deletion_threshold={"enabled": False}, assignments={"users": [ENGINEER], "groups": []})["servicePrincipalId"]
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id, application_template_id=CUSTOM_TEMPLATE_ID)["jobId"]
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=creds(HEALTHY_CREDENTIALS),
                       deletion_threshold={"enabled": False})
    steps.assign_principals(ctx, service_principal_id=sp_id, users=[ENGINEER])
    steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    clean = profile_steps.drift(ctx, service_principal_id=sp_id)
    assert clean["parts"] == [], clean
    assert clean["assignments"]["compared"] is True and clean["assignments"]["missing"] == []
    assert clean["provisioningSettings"]["deletionThreshold"]["expected"] == {"enabled": False, "count": None}

    # portal-style: prevention turned on with 500, and the user's assignment removed
    stored = {"Enabled": False, "Recipients": "", "DeleteThresholdEnabled": True, "DeleteThresholdValue": 500}
    sync.put_secrets(ctx.graph, sp_id, {"SyncNotificationSettings": json.dumps(stored)}, [])
    for assignment in assign_graph.list_assigned(ctx.graph, sp_id):
        ctx.graph.delete(f"/servicePrincipals/{sp_id}/appRoleAssignedTo/{assignment['id']}")
    drifted = profile_steps.drift(ctx, service_principal_id=sp_id)
    assert drifted["parts"] == ["provisioningSettings", "assignments"], drifted
    assert drifted["assignments"]["missing"] == [ENGINEER]
    (difference,) = drifted["provisioningSettings"]["differences"]
    assert difference == {"field": "SyncNotificationSettings.DeleteThreshold", "expected": {"enabled": False, "count": None},
                          "actual": {"enabled": True, "count": 500}}

    done = profile_steps.enforce_drift(ctx, service_principal_id=sp_id, dry_run=False)
    assert {a["part"]: a["outcome"] for a in done["actions"]} == {"provisioningSettings": "done", "assignments": "done"}
    assert json.loads(sync.get_secret_keys(ctx.graph, sp_id)["SyncNotificationSettings"])["DeleteThresholdEnabled"] is False
    assert profile_steps.drift(ctx, service_principal_id=sp_id)["parts"] == []


def test_enforce_assigns_again_with_the_role_the_request_named(ctx, core_env, profile_dir):
    """found in review: the notes kept the request's users and groups but not its ``appRole``, so enforce
    assigned a removed principal the default role and drift counted any role as the request's."""
    approver = {"id": "6b2a3c1e-0d4f-4e5a-9b8c-7d6e5f4a3b2c", "value": "Approver", "displayName": "Approver",
                "allowedMemberTypes": ["User"], "isEnabled": True, "description": "approves", "origin": "ServicePrincipal"}
    sp_id = new_app(ctx, "Profile role drift app", credentials=HEALTHY_CREDENTIALS,
                    assignments={"users": [ENGINEER], "groups": [], "appRole": "Approver"})["servicePrincipalId"]
    roles = ctx.graph.get(f"/servicePrincipals/{sp_id}", {"$select": "appRoles"})["appRoles"]
    ctx.graph.patch(f"/servicePrincipals/{sp_id}", {"appRoles": roles + [approver]})
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id, application_template_id=CUSTOM_TEMPLATE_ID)["jobId"]
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=creds(HEALTHY_CREDENTIALS))
    steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    steps.assign_principals(ctx, service_principal_id=sp_id, users=[ENGINEER])  # the default role, not the request's
    drifted = profile_steps.drift(ctx, service_principal_id=sp_id)
    assert drifted["parts"] == ["assignments"] and drifted["assignments"]["missing"] == [ENGINEER], drifted
    done = profile_steps.enforce_drift(ctx, service_principal_id=sp_id, dry_run=False)
    assert [(a["part"], a["outcome"]) for a in done["actions"]] == [("assignments", "done")], done
    held = {a["appRoleId"] for a in assign_graph.list_assigned(ctx.graph, sp_id)}
    assert approver["id"] in held
    assert profile_steps.drift(ctx, service_principal_id=sp_id)["parts"] == []


def test_a_principal_enforce_cannot_assign_does_not_stop_the_other_parts(ctx, core_env, profile_dir):
    """found in review: a user the request named and the directory no longer holds (drift: missing) made
    enforce raise UserNotFound, so the parts after it (the paused job's start) were never put back."""
    gone = "left.the.company@contoso-emulator.onmicrosoft.com"
    sp_id = new_app(ctx, "Profile gone user app", credentials=HEALTHY_CREDENTIALS,
                    assignments={"users": [ENGINEER, gone], "groups": []})["servicePrincipalId"]
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id, application_template_id=CUSTOM_TEMPLATE_ID)["jobId"]
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=creds(HEALTHY_CREDENTIALS))
    steps.assign_principals(ctx, service_principal_id=sp_id, users=[ENGINEER])
    steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    sync.pause_job(ctx.graph, sp_id, job_id)
    drifted = profile_steps.drift(ctx, service_principal_id=sp_id)
    assert drifted["parts"] == ["assignments", "schedule"] and drifted["assignments"]["missing"] == [gone], drifted
    done = profile_steps.enforce_drift(ctx, service_principal_id=sp_id, dry_run=False)
    outcomes = {a["part"]: a["outcome"] for a in done["actions"]}
    assert outcomes == {"assignments": "error", "schedule": "done"}, done
    assert "UserNotFound" in next(a["detail"] for a in done["actions"] if a["part"] == "assignments")
    assert profile_steps.drift(ctx, service_principal_id=sp_id)["parts"] == ["assignments"]


def test_the_schedule_drift_follows_the_operators_last_pause_or_resume():
    pause = {"lastAction": {"actionId": "a1", "action": "pause", "outcome": "done", "at": "2026-12-06T10:00:00Z"}}
    assert profile_steps.expected_schedule("sp", "Paused", row=pause)["expected"] == "Paused"
    unchanged = {"lastAction": {**pause["lastAction"], "outcome": "unchanged"}}
    assert profile_steps.expected_schedule("sp", "Paused", row=unchanged)["expected"] == "Paused"
    for row in ({"lastAction": {**pause["lastAction"], "action": "resume"}},
                {"lastAction": {**pause["lastAction"], "outcome": "failed"}}, {"lastAction": None}, {}):
        assert profile_steps.expected_schedule("sp", "Paused", row=row) == {"expected": "Active", "actual": "Paused"}
