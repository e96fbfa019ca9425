"""core.fleet (docs/fleet-operations.md): selector and action parsing, confirmation rule, action ids, the calls a
dry-run lists, and - on the emulator - that an action never touches a service principal without our
correlation and instance tags."""

from __future__ import annotations

import pytest
from core_support import CUSTOM_TEMPLATE_ID, graph_requests

from activities import BODIES, run
from core import errors, fleet, model, names
from core.instance_ids import action_instance_id
from core.graph import applications as apps


def test_selector_pairs_and_bad_selectors():
    assert fleet.parse_selector("env=prod, team=cloud") == {"env": "prod", "team": "cloud"}
    assert fleet.parse_selector("owner=ops@contoso.test") == {"owner": "ops@contoso.test"}
    for bad in ("", "  ", None, "env", "env=prod,,team=x", "Env=prod", "env=a,env=b", "env=a|b"):
        with pytest.raises(errors.InvalidRequest) as caught:
            fleet.parse_selector(bad)
        assert caught.value.problems[0].path == "selector"


def test_action_bodies_are_checked_field_by_field():
    ok = fleet.parse_action({"action": "restart", "resetScope": "Watermark, Escrows", "confirm": 2,
                             "selector": "env=test"}, by_selector=True)
    assert ok["params"] == {"resetScope": "Watermark,Escrows"} and ok["selector"] == {"env": "test"}
    with pytest.raises(errors.InvalidRequest) as caught:
        fleet.parse_action({"action": "restart", "resetScope": "Everything", "confirm": "2", "dryRun": "yes",
                            "subject": {}, "x": 1}, by_selector=True)
    assert {p.path for p in caught.value.problems} == {"resetScope", "confirm", "dryRun", "subject", "x", "selector"}
    with pytest.raises(errors.InvalidRequest) as caught:
        fleet.parse_action({"action": "provision-on-demand", "subject": {"objectId": "u", "objectTypeName": "Device"}},
                           by_selector=False)
    assert [p.path for p in caught.value.problems] == ["subject"]
    with pytest.raises(errors.InvalidRequest):
        fleet.parse_action({"action": "pause", "selector": "env=test"}, by_selector=False)  # no selector on a key


def test_confirmation_rule_and_action_ids():
    assert fleet.needs_confirm("teardown", 1) and fleet.needs_confirm("restart", 1)
    assert fleet.needs_confirm("pause", 2) and not fleet.needs_confirm("pause", 1)
    assert not fleet.needs_confirm("validate", 50)
    a = [{"servicePrincipalId": "1"}, {"servicePrincipalId": "2"}]
    same = action_instance_id("pause", {}, a, None)
    assert same == action_instance_id("pause", {}, list(reversed(a)), None)
    assert same != action_instance_id("resume", {}, a, None)
    assert action_instance_id("pause", {}, a, "my-id") == "fleet-action:my-id"


def test_dry_run_calls_per_action():
    target = {"servicePrincipalId": "sp", "appId": "app", "job": {"id": "j1", "otherJobs": ["j2"]},
              "credentialReferences": {"SecretToken": {"keyVaultSecret": "tok"}, "BaseAddress": "https://x"}}
    assert fleet.planned_calls(target, "restart", {"resetScope": "Full"}) == [
        "POST /servicePrincipals/sp/synchronization/jobs/j1/restart resetScope=Full"]
    teardown = fleet.planned_calls(target, "teardown", {})
    assert teardown[:4] == ["POST /servicePrincipals/sp/synchronization/jobs/j1/pause",
                            "POST /servicePrincipals/sp/synchronization/jobs/j2/pause",
                            "DELETE /servicePrincipals/sp/synchronization/jobs/j1",
                            "DELETE /servicePrincipals/sp/synchronization/jobs/j2"]
    assert "BaseAddress, SecretToken" in fleet.planned_calls(target, "validate", {})[0]
    for action in fleet.ACTIONS:
        params = {"resetScope": "Watermark", "subject": {"objectId": "u", "objectTypeName": "User"}}
        assert fleet.planned_calls(target, action, params)


def test_an_untagged_or_foreign_service_principal_is_never_touched(ctx, core_env):
    made = apps.instantiate(ctx.graph, CUSTOM_TEMPLATE_ID, "Fleet untagged")
    sp_id = made["servicePrincipal"]["id"]
    key = model.instance_key("Fleet untagged")
    assert all(i["servicePrincipalId"] != sp_id for i in fleet.list_instances(ctx))
    before = len([r for r in graph_requests(core_env) if r["method"] != "GET"])
    for action in ("teardown", "pause", "rejectDeletes"):
        answer = run(names.FLEET_INSTANCE_ACTION, {"action": action, "instanceKey": key, "servicePrincipalId": sp_id},
                     BODIES[names.FLEET_INSTANCE_ACTION], ctx)
        assert answer["ok"] is False and answer["error"]["code"] == "NotOurs", answer
    # our correlation tag but another instance's key: refused too
    apps.update_service_principal(ctx.graph, sp_id, {"tags": [ctx.tag, model.instance_tag(ctx.tag, "0" * 20)]})
    writes = len([r for r in graph_requests(core_env) if r["method"] != "GET"])
    with pytest.raises(errors.PermanentError):
        fleet.perform(ctx, instance_key=key, service_principal_id=sp_id, action="teardown", params={})
    assert len([r for r in graph_requests(core_env) if r["method"] != "GET"]) == writes == before + 1
    assert apps.get_service_principal(ctx.graph, sp_id)["id"] == sp_id


def test_a_repeated_teardown_finds_the_work_done(ctx, core_env):
    """found in review: a retried teardown activity (host crash after the delete) must not report a failure."""
    made = apps.instantiate(ctx.graph, CUSTOM_TEMPLATE_ID, "Fleet teardown twice")
    sp_id = made["servicePrincipal"]["id"]
    key = model.instance_key("Fleet teardown twice")
    apps.update_service_principal(ctx.graph, sp_id, {"tags": [ctx.tag, model.instance_tag(ctx.tag, key)]})
    first = run(names.FLEET_INSTANCE_ACTION, {"action": "teardown", "instanceKey": key, "servicePrincipalId": sp_id},
                BODIES[names.FLEET_INSTANCE_ACTION], ctx)
    assert first["ok"] is True and first["outcome"] == "done", first
    again = run(names.FLEET_INSTANCE_ACTION, {"action": "teardown", "instanceKey": key, "servicePrincipalId": sp_id},
                BODIES[names.FLEET_INSTANCE_ACTION], ctx)
    assert again["ok"] is True and again["outcome"] == "unchanged", again


def test_adopt_refuses_a_display_name_no_filter_can_carry():
    """found in review: a control character in the adopt body's displayName reached odata.literal's
    ValueError (an HTTP 500) instead of a field-level 400."""
    for bad in ("app\x00x", "tab\tname", "line\nbreak"):
        with pytest.raises(errors.InvalidRequest) as caught:
            fleet.parse_adopt({"displayName": bad})
        assert [p.path for p in caught.value.problems] == ["displayName"]
    assert fleet.parse_adopt({"displayName": "O'Brien's app"})["displayName"] == "O'Brien's app"


def test_provision_on_demand_subject_is_an_object_id():
    """found in review: any string passed as subject.objectId (even empty) and only Graph refused it, inside
    the orchestration; a field-level 400 names it before anything starts."""
    for bad in ("", "alice@contoso.test", "../x"):
        with pytest.raises(errors.InvalidRequest) as caught:
            fleet.parse_action({"action": "provision-on-demand", "subject": {"objectId": bad, "objectTypeName": "User"}},
                               by_selector=False)
        assert [p.path for p in caught.value.problems] == ["subject"]
    good = "0b6f4b2c-8d7e-4f3a-9c1b-2a3d4e5f6a7b"
    parsed = fleet.parse_action({"action": "provision-on-demand", "subject": {"objectId": good, "objectTypeName": "User"}},
                                by_selector=False)
    assert parsed["params"]["subject"]["objectId"] == good


def test_object_ids_with_a_trailing_newline_are_refused():
    """found in review: ``^...$`` with re.match let "<guid>\\n" through into a Graph URL path."""
    guid = "0b6f4b2c-8d7e-4f3a-9c1b-2a3d4e5f6a7b"
    with pytest.raises(errors.InvalidRequest) as caught:
        fleet.parse_adopt({"servicePrincipalId": guid + "\n"})
    assert [p.path for p in caught.value.problems] == ["servicePrincipalId"]
    with pytest.raises(errors.InvalidRequest):
        fleet.parse_action({"action": "provision-on-demand", "subject": {"objectId": guid + "\n", "objectTypeName": "User"}},
                           by_selector=False)
    with pytest.raises(errors.InvalidRequest):
        fleet.check_key("0" * 20 + "\n")
