"""shape_problems and load (core/schema_profiles.py) are pure: each rule of a schema profile's shape names
its own field, and a profile file that is not JSON or names another profile is refused."""

from __future__ import annotations

import json

import pytest

from core.errors import InvalidRequest
from core.schema_profiles import load, shape_problems

GOOD = {"name": "team-x", "version": 2, "synchronizationTemplateId": "scim", "objectMappings": {
    "User": {"enabled": True, "attributeMappings": {
        "userName": {"expression": "[userPrincipalName]", "matchingPriority": 1, "flowType": "Always",
                     "defaultValue": None},
        "nickName": None},
        "scope": {"groups": [{"name": "g", "clauses": [
            {"operatorName": "EQUALS", "sourceOperandName": "department", "targetOperand": {"values": ["IT"]}}]}]}}}}


def _with(**changes) -> dict:
    return {**json.loads(json.dumps(GOOD)), **changes}


def _user(**changes) -> dict:
    profile = _with()
    profile["objectMappings"]["User"].update(changes)
    return profile


def _mapping(**changes) -> dict:
    profile = _with()
    profile["objectMappings"]["User"]["attributeMappings"]["userName"].update(changes)
    return profile


def test_a_good_profile_has_no_problem():
    assert shape_problems(GOOD) == []


U = "objectMappings.User"
M = f"{U}.attributeMappings.userName"


@pytest.mark.parametrize("profile,paths", [
    ([], ["$"]),
    (_with(extra=1), ["extra"]),
    (_with(name="Team X"), ["name"]),
    (_with(version=True), ["version"]),
    (_with(synchronizationTemplateId=""), ["synchronizationTemplateId"]),
    (_with(objectMappings={}), ["objectMappings"]),
    (_with(objectMappings={"User": []}), [U]),
    (_user(filters=1), [f"{U}.filters"]),
    (_user(enabled="yes"), [f"{U}.enabled"]),
    (_user(scope={"groups": []}), [f"{U}.scope"]),
    (_user(scope={"groups": [{"name": "g", "clauses": []}]}), [f"{U}.scope.groups[0]"]),
    (_user(scope={"groups": [{"name": "g", "clauses": [{"operatorName": "EQUALS"}]}]}),
     [f"{U}.scope.groups[0].clauses[0]"]),
    (_user(attributeMappings=[]), [f"{U}.attributeMappings"]),
    (_user(attributeMappings={"userName": "[upn]"}), [M]),
    (_mapping(source="x"), [f"{M}.source"]),
    (_mapping(expression=" "), [f"{M}.expression"]),
    (_mapping(matchingPriority=False), [f"{M}.matchingPriority"]),
    (_mapping(flowType="Sometimes"), [f"{M}.flowType"]),
    (_mapping(defaultValue=3), [f"{M}.defaultValue"]),
])
def test_each_rule_names_its_field(profile, paths):
    assert [p.path for p in shape_problems(profile)] == paths


def _load_paths(tmp_path, text: str, ref: str = "team-x.v2") -> list[str]:
    (tmp_path / "team-x.v2.json").write_text(text, encoding="utf-8")
    with pytest.raises(InvalidRequest) as caught:
        load(ref, directory=tmp_path, path="profile")
    return [p.path for p in caught.value.problems]


def test_load_refuses_a_file_that_is_not_json_or_names_another_profile(tmp_path):
    assert _load_paths(tmp_path, "{not json") == ["profile"]
    assert _load_paths(tmp_path, json.dumps(_with(name="team-y"))) == ["name"]
    assert _load_paths(tmp_path, json.dumps(_with(version="2"))) == ["version"]
    assert _load_paths(tmp_path, json.dumps(GOOD), ref="team-z.v1") == ["profile"]  # no such file
    (tmp_path / "team-x.v2.json").write_text(json.dumps(GOOD), encoding="utf-8")
    assert load("team-x.v2", directory=tmp_path)["objectMappings"] == GOOD["objectMappings"]
