"""Pure helpers of the rotation: the sweep's sub-orchestration calls, the canary setting, the Key Vault
event parser, the contracts' field errors (no stack)."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequest
from core.instance_ids import rotation_instance_id
from core.rotation_contracts import RotateSecretInput, parse_canary
from orchestrators.rotate_secret import sweep_rotation_calls
from triggers.eventgrid_rotation import secret_event

V1, V2 = "a" * 32, "b" * 32
GUID = "11111111-2222-3333-4444-555555555555"


def test_the_sweep_starts_one_rotation_per_lagging_secret_version():
    lags = [{"ok": True, "rotations": [{"secretName": "s1", "version": V1}, {"secretName": "s2", "version": V2}]},
            {"ok": True, "rotations": [{"secretName": "s1", "version": V1}]},
            {"ok": False, "error": {"code": "X"}}, None, {"ok": True, "rotations": []}]
    calls = sweep_rotation_calls(lags, {"rotationMaxInFlight": 5}, canary={"objectId": GUID, "objectTypeName": "User"})
    # the id the Event Grid path uses: the event and the sweep never rotate one version twice
    assert [c[0] for c in calls] == [rotation_instance_id("s1", V1), rotation_instance_id("s2", V2)]
    first = RotateSecretInput.from_dict(calls[0][1])
    assert first.source == "sweep" and first.options == {"rotationMaxInFlight": 5} and first.canary["objectId"] == GUID
    assert sweep_rotation_calls([], {}) == []


def test_the_canary_of_an_instance_request_then_instance_then_template_then_default():
    from core.steps.rotation import canary_for

    template = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
    request, own, by_template, default = ({"objectId": g, "objectTypeName": "User"} for g in (
        "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222",
        "33333333-3333-3333-3333-333333333333", "44444444-4444-4444-4444-444444444444"))
    notes = {"canary": {"objectId": own["objectId"], "objectType": "group"}}
    templates = {template: by_template}
    assert canary_for(request, notes, template, templates, default) == (request, "request")
    assert canary_for(None, notes, template, templates, default) == (
        {"objectId": own["objectId"], "objectTypeName": "Group"}, "instance")
    assert canary_for(None, {}, template.upper(), templates, default) == (by_template, "template")
    assert canary_for(None, {"canary": {"objectId": "x", "objectType": "user"}}, "other", templates, default) == (
        default, "default")  # a malformed notes canary is no canary
    assert canary_for(None, None, None, None, None) == (None, None)


def test_the_per_template_canary_setting_parses_or_names_each_field():
    from core.rotation_contracts import parse_canary_by_template

    template = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
    assert parse_canary_by_template("") == {}
    assert parse_canary_by_template(f'{{"{template.upper()}": "group:{GUID}"}}') == {
        template: {"objectId": GUID, "objectTypeName": "Group"}}
    with pytest.raises(InvalidRequest) as caught:
        parse_canary_by_template(f'{{"not-a-template": "User:{GUID}", "{template}": "Device:{GUID}"}}')
    assert [p.path for p in caught.value.problems] == [
        "ROTATION_CANARY_BY_TEMPLATE.not-a-template", f"ROTATION_CANARY_BY_TEMPLATE.{template}"]
    for bad in ("[1]", "{nope"):
        with pytest.raises(InvalidRequest) as caught:
            parse_canary_by_template(bad)
        assert [p.path for p in caught.value.problems] == ["ROTATION_CANARY_BY_TEMPLATE"]


def test_the_canary_setting_parses_or_names_itself():
    assert parse_canary("none") is None and parse_canary("") is None
    assert parse_canary(f"user:{GUID}") == {"objectId": GUID, "objectTypeName": "User"}
    assert parse_canary(f"Group:{GUID}")["objectTypeName"] == "Group"
    for bad in ("User", f"Device:{GUID}", "User:not-a-guid"):
        with pytest.raises(InvalidRequest) as caught:
            parse_canary(bad)
        assert [p.path for p in caught.value.problems] == ["ROTATION_CANARY"]


def test_key_vault_event_data_is_read_leniently():
    # the schema page's own sample: a key with a trailing space, a value with a leading space
    assert secret_event("t", "subj", {"ObjectName ": "name", "Version": f" {V1}"}) == ("name", V1)
    assert secret_event("t", "subj", {"Id": f"https://v.vault.azure.net/secrets/subj/{V2}"}) == ("subj", V2)
    assert secret_event("t", None, None) == (None, None)


def test_an_expiry_event_becomes_one_credential_expiry_line():
    import json
    from datetime import datetime, timezone

    from triggers.eventgrid_rotation import EXPIRED, NEAR_EXPIRY, expiry_line

    now = datetime(2026, 12, 6, tzinfo=timezone.utc)
    exp = int(datetime(2026, 12, 16, 12, tzinfo=timezone.utc).timestamp())
    near = json.loads(expiry_line("e1", NEAR_EXPIRY, "tok", V1, {"EXP ": exp}, now, 3))
    assert near == {"event": "credentialExpiry", "source": "keyVaultEvent", "eventId": "e1", "eventType": NEAR_EXPIRY,
                    "secretName": "tok", "version": V1, "expires": "2026-12-16T12:00:00.000000Z", "daysLeft": 10,
                    "expired": False, "state": "expiring", "instances": 3}
    gone = json.loads(expiry_line("e2", EXPIRED, "tok", V1, {"exp": exp - 20 * 86400}, now, None))
    assert (gone["expired"], gone["state"], gone["daysLeft"], gone["instances"]) == (True, "expired", -10, None)
    for unreadable in ({"EXP": None}, {"EXP": True}, {"EXP": "soon"}, {"EXP": 10 ** 20}, None):
        line = json.loads(expiry_line("e3", NEAR_EXPIRY, "tok", V1, unreadable, now, 0))
        assert line["expires"] is None and line["daysLeft"] is None


def test_rotation_input_errors_name_their_fields():
    with pytest.raises(InvalidRequest) as caught:
        RotateSecretInput.from_dict({"secretName": "bad name", "version": "v", "canary": {"objectId": "x"}})
    assert {p.path for p in caught.value.problems} == {"secretName", "version", "canary"}
    assert rotation_instance_id("My-Secret", V1.upper()) == f"rotation-my-secret-{V1}"
