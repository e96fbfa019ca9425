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


def test_rotation_input_errors_name_their_fields():
    with pytest.raises(InvalidRequest) as caught:
        RotateSecretInput.from_dict({"secretName": "bad name", "version": "v", "canary": {"objectId": "x"}})
    assert {p.path for p in caught.value.problems} == {"secretName", "version", "canary"}
    assert rotation_instance_id("My-Secret", V1.upper()) == f"rotation-my-secret-{V1}"
