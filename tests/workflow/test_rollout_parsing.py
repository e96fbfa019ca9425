"""parse_rollout (triggers/http_rollouts.py) is pure: every field-level 400 of POST /api/rollouts and the
parsed selection, canaries and defaults, without a stack."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequest
from triggers.http_rollouts import parse_rollout, rollout_instance_id

GOOD = "custom-scim.v1"
A, B, C = "a" * 20, "b" * 20, "c" * 20
MANAGED = [
    {"instanceKey": A, "servicePrincipalId": "sp-a", "labels": {"env": "prod"}},
    {"instanceKey": B, "servicePrincipalId": "sp-b", "labels": {"env": "test"}},
    {"instanceKey": C, "servicePrincipalId": "sp-c", "labels": {"env": "prod", "team": "web"}},
    {"servicePrincipalId": "sp-unkeyed"},  # not one of ours: never selected
]


def _paths(body) -> list[str]:
    with pytest.raises(InvalidRequest) as caught:
        parse_rollout(body, MANAGED)
    return [p.path for p in caught.value.problems]


def test_defaults_and_the_instance_ids():
    parsed = parse_rollout({"rolloutId": "r.1_x-y", "profile": GOOD, "selector": {"instances": [B, A]}}, MANAGED)
    assert parsed.rollout_id == "r.1_x-y" and parsed.profile == GOOD
    # the selection follows the sorted instance keys, not the request's order; one canary by default
    assert parsed.instances == [{"key": A, "servicePrincipalId": "sp-a"}, {"key": B, "servicePrincipalId": "sp-b"}]
    assert parsed.canaries == [A]
    assert (parsed.wave_size, parsed.pause_seconds, parsed.max_checks, parsed.dry_run) == (5, 60, 10, False)
    assert rollout_instance_id("r.1_x-y") == "rollout-r.1_x-y"


def test_labels_select_and_narrow_the_instances():
    by_label = parse_rollout({"rolloutId": "r", "profile": GOOD, "selector": {"labels": {"env": "prod"}},
                              "canaries": 0, "waveSize": 500, "pauseSeconds": 86400, "maxChecks": 100,
                              "dryRun": True}, MANAGED)
    assert [i["key"] for i in by_label.instances] == [A, C] and by_label.canaries == []
    assert (by_label.wave_size, by_label.pause_seconds, by_label.max_checks, by_label.dry_run) == (500, 86400, 100, True)
    both = parse_rollout({"rolloutId": "r", "profile": GOOD, "canaries": [C],
                          "selector": {"instances": [A, C], "labels": {"team": "web"}}}, MANAGED)
    assert [i["key"] for i in both.instances] == [C] and both.canaries == [C]
    counted = parse_rollout({"rolloutId": "r", "profile": GOOD, "selector": {"labels": {}, "instances": [A, B, C]},
                             "canaries": 2}, MANAGED)
    assert counted.canaries == [A, B]


def test_not_an_object_and_unknown_fields():
    assert _paths([1, 2]) == ["$"]
    assert "extra" in _paths({"rolloutId": "r", "profile": GOOD, "selector": {"instances": [A]}, "extra": 1})


@pytest.mark.parametrize("field,value", [
    ("waveSize", 0), ("waveSize", 501), ("waveSize", True), ("waveSize", "5"),
    ("pauseSeconds", 0), ("pauseSeconds", 86401), ("maxChecks", 101), ("maxChecks", 1.5),
])
def test_bounded_integers_are_named(field, value):
    assert _paths({"rolloutId": "r", "profile": GOOD, "selector": {"instances": [A]}, field: value}) == [field]


@pytest.mark.parametrize("rollout_id", [None, "", "-starts-with-dash", "x" * 65, "has space", 7])
def test_bad_rollout_ids(rollout_id):
    assert _paths({"rolloutId": rollout_id, "profile": GOOD, "selector": {"instances": [A]}}) == ["rolloutId"]


def test_an_unknown_profile_is_named():
    assert "profile" in _paths({"rolloutId": "r", "profile": "nope.v1", "selector": {"instances": [A]}})


@pytest.mark.parametrize("selector,path", [
    (None, "selector"), ({}, "selector"), ({"names": [A]}, "selector"), ("env=prod", "selector"),
    ({"instances": A}, "selector.instances"), ({"instances": [A, 3]}, "selector.instances"),
    ({"instances": ["f" * 20]}, "selector.instances"),
    ({"labels": ["env"]}, "selector.labels"), ({"labels": {"env": 1}}, "selector.labels"),
    ({"labels": {"env": "nowhere"}}, "selector"),  # valid, but selects nothing
])
def test_bad_selectors(selector, path):
    assert _paths({"rolloutId": "r", "profile": GOOD, "selector": selector}) == [path]


@pytest.mark.parametrize("canaries", [-1, True, "a", [A, 1], {"n": 1}])
def test_canaries_must_be_a_count_or_keys(canaries):
    assert _paths({"rolloutId": "r", "profile": GOOD, "selector": {"instances": [A]}, "canaries": canaries}) \
        == ["canaries"]


def test_a_canary_outside_the_selection_and_a_non_boolean_dry_run():
    paths = _paths({"rolloutId": "r", "profile": GOOD, "selector": {"labels": {"env": "test"}}, "canaries": [A],
                    "dryRun": "yes"})
    assert paths == ["canaries", "dryRun"]


def test_every_bad_field_is_named_at_once():
    paths = _paths({"rolloutId": "", "profile": "nope.v1", "selector": {"instances": ["f" * 20]},
                    "waveSize": 0, "pauseSeconds": -1, "maxChecks": 0, "canaries": "x", "dryRun": 1})
    assert {"rolloutId", "profile", "selector.instances", "waveSize", "pauseSeconds", "maxChecks", "canaries",
            "dryRun"} <= set(paths)


def test_removal_threshold_and_canary_test_users():
    user = "11111111-2222-3333-4444-555555555555"
    body = {"rolloutId": "r", "profile": GOOD, "selector": {"instances": [A, B]}, "canaries": [A]}
    parsed = parse_rollout({**body, "removalThreshold": 25, "canaryTestUsers": {A: {"objectId": user}}}, MANAGED)
    assert parsed.removal_threshold == 25
    assert parsed.canary_test_users == {A: {"objectId": user, "objectTypeName": "User"}}  # User by default
    assert parse_rollout(body, MANAGED).removal_threshold == 0 and parse_rollout(body, MANAGED).canary_test_users == {}
    assert _paths({**body, "removalThreshold": -1}) == ["removalThreshold"]
    assert _paths({**body, "canaryTestUsers": [user]}) == ["canaryTestUsers"]
    assert _paths({**body, "canaryTestUsers": {B: {"objectId": user}}}) == [f"canaryTestUsers.{B}"]  # not a canary
    for bad in ({"objectId": "not-a-guid"}, {"objectId": user, "objectTypeName": "Device"}, user):
        assert _paths({**body, "canaryTestUsers": {A: bad}}) == [f"canaryTestUsers.{A}"]
