"""core.model: request validation with field paths, the instance key, and the published JSON Schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import mini_jsonschema
from core import model
from core.errors import InvalidRequest

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "provisioning-request.schema.json"

INSTANCE = {
    "applicationTemplate": {"displayName": "AWS Single-Account Access"},
    "displayName": "AWS Contoso Prod",
    "credentials": {"BaseAddress": "https://scim.example.com/scim/v2",
                    "SecretToken": {"keyVaultSecret": "aws-prod-scim-token"}},
}
FULL = {
    "applicationTemplate": {"id": "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"},
    "displayName": "O'Brien's Zoë Ångström app (テスト)",
    "credentials": {"BaseAddress": "https://scim.contoso.test/scim/v2",
                    "SecretToken": {"keyVaultSecret": "scim-contoso-token"}, "Domain": "contoso.test"},
    "synchronizationTemplateId": "scim",
    "notificationEmail": "ops@contoso.com",
    "syncAll": False,
    "assignments": {"users": ["sean.obrien@contoso-emulator.onmicrosoft.com"], "groups": ["AWS Admins"]},
    "labels": {"env": "prod", "cost-center": "4711"},
}


def req(*instances, request_id="batch-1"):
    return {"requestId": request_id, "instances": [copy.deepcopy(i) for i in instances]}


def with_(base: dict, **changes):
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if value is ...:
            result.pop(key, None)
        else:
            result[key] = value
    return result


# (document, valid?, expressible in JSON Schema?)
CORPUS = [
    (req(INSTANCE), True, True),
    (req(FULL, INSTANCE), True, True),
    (req(with_(INSTANCE, credentials={"Password": {"keyVaultSecret": "p"}, "UserName": "admin"})), True, True),
    (req(with_(INSTANCE, synchronizationTemplateId=None, notificationEmail=None)), True, True),
    (req(with_(INSTANCE, labels={})), True, True),
    # provisioningSettings: the accidental-deletion threshold and the notification email (SyncNotificationSettings)
    (req(with_(INSTANCE, provisioningSettings={"deletionThreshold": {"enabled": True, "count": 25},
                                                "notificationEmail": "ops@contoso.com"})), True, True),
    (req(with_(INSTANCE, provisioningSettings={"deletionThreshold": {"enabled": False}})), True, True),
    (req(with_(INSTANCE, provisioningSettings={"deletionThreshold": {"enabled": True}})), True, True),
    (req(with_(INSTANCE, provisioningSettings={})), True, True),
    # null means not set, as for the other optional settings (the model and the schema agree)
    (req(with_(INSTANCE, provisioningSettings=None)), True, True),
    (req(with_(INSTANCE, provisioningSettings={"deletionThreshold": None})), True, True),
    (req(with_(INSTANCE, provisioningSettings={"deletionThreshold": {"enabled": False, "count": 5}})), False, True),
    (req(with_(INSTANCE, provisioningSettings={"deletionThreshold": {"count": 5}})), False, True),
    (req(with_(INSTANCE, provisioningSettings={"deletionThreshold": {"enabled": "yes"}})), False, True),
    (req(with_(INSTANCE, provisioningSettings={"deletionThreshold": {"enabled": True, "count": 0}})), False, True),
    (req(with_(INSTANCE, provisioningSettings={"deletionThreshold": {"enabled": True, "count": 2.5}})), False, True),
    (req(with_(INSTANCE, provisioningSettings={"deletionThreshold": {"enabled": True, "count": True}})), False, True),
    (req(with_(INSTANCE, provisioningSettings={"deletionThreshold": {"enabled": True, "count": 10**7}})), False, True),
    (req(with_(INSTANCE, provisioningSettings={"threshold": 5})), False, True),
    (req(with_(INSTANCE, provisioningSettings={"notificationEmail": "not an address"})), False, True),
    (req(with_(INSTANCE, provisioningSettings=[])), False, True),
    # the same address twice is fine; two different ones cannot both be saved (not expressible)
    (req(with_(INSTANCE, notificationEmail="a@contoso.com",
               provisioningSettings={"notificationEmail": "a@contoso.com"})), True, True),
    (req(with_(INSTANCE, notificationEmail="a@contoso.com",
               provisioningSettings={"notificationEmail": "b@contoso.com"})), False, False),
    ({"requestId": "x"}, False, True),
    ({"instances": [INSTANCE]}, False, True),
    (req(), False, True),
    (req(INSTANCE, request_id="has space"), False, True),
    (req(INSTANCE, request_id="-leading"), False, True),
    (req(INSTANCE, request_id="trailing-newline\n"), False, True),
    ({**req(INSTANCE), "extra": 1}, False, True),
    (req(with_(INSTANCE, extra=1)), False, True),
    (req(with_(INSTANCE, applicationTemplate=...)), False, True),
    (req(with_(INSTANCE, applicationTemplate={})), False, True),
    (req(with_(INSTANCE, applicationTemplate={"id": "not-a-guid"})), False, True),
    (req(with_(INSTANCE, applicationTemplate={"id": FULL["applicationTemplate"]["id"], "displayName": "x"})), False, True),
    (req(with_(INSTANCE, displayName="")), False, True),
    (req(with_(INSTANCE, displayName=" padded")), False, True),
    (req(with_(INSTANCE, displayName="x" * 121)), False, True),
    (req(with_(INSTANCE, displayName="<script>")), False, True),
    (req(with_(INSTANCE, displayName="tab\there")), False, True),
    (req(with_(INSTANCE, displayName=7)), False, True),
    (req(with_(INSTANCE, credentials={})), False, True),
    (req(with_(INSTANCE, credentials={"SecretToken": "pasted-token-value"})), False, True),
    (req(with_(INSTANCE, credentials={"secretToken": {"keyVaultSecret": "x"}})), False, True),
    (req(with_(INSTANCE, credentials={"SyncAll": "true"})), False, True),
    (req(with_(INSTANCE, credentials={"BaseAddress": "http://plain"})), False, True),
    # a credential pasted into a URL literal (stored in clear in the notes and the stored request)
    (req(with_(INSTANCE, credentials={"BaseAddress": "https://admin:hunter2@scim.example.com/v2"})), False, True),
    (req(with_(INSTANCE, credentials={"BaseAddress": "https://scim.example.com/v2?token=abc"})), False, False),
    (req(with_(INSTANCE, credentials={"BaseAddress": "https://scim.example.com/v2?aadOptscim062020"})), True, True),
    (req(with_(INSTANCE, credentials={"BaseAddress": "https://scim.example.com/users/a@b/v2"})), True, True),
    (req(with_(INSTANCE, credentials={"SecretToken": {"keyVaultSecret": "bad name!"}})), False, True),
    (req(with_(INSTANCE, credentials={"SecretToken": {"keyVaultSecret": "a", "version": "1"}})), False, True),
    (req(with_(INSTANCE, credentials={"SecretToken": 5})), False, True),
    (req(with_(INSTANCE, notificationEmail="not-an-email")), False, True),
    (req(with_(INSTANCE, syncAll="yes")), False, True),
    (req(with_(INSTANCE, synchronizationTemplateId="bad id")), False, True),
    (req(with_(INSTANCE, assignments={"users": "one"})), False, True),
    (req(with_(INSTANCE, assignments={"roles": []})), False, True),
    (req(with_(INSTANCE, assignments={"groups": ["x"] * 101})), False, True),
    (req(with_(INSTANCE, assignments={"users": ["alex_fabrikam.com#EXT#@contoso.onmicrosoft.com",
                                                "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"],
                                      "groups": ["Finance / EMEA"]})), True, True),
    (req(with_(INSTANCE, assignments={"users": ["../groups/8adf8e6e-67b2-4cf2-a259-e3dc5476c621"]})), False, True),
    (req(with_(INSTANCE, assignments={"users": ["AWS Admins"]})), False, True),
    (req(with_(INSTANCE, assignments={"groups": ["AWS Admins"], "appRole": "Admin,WAAD"})), True, True),
    (req(with_(INSTANCE, assignments={"groups": ["AWS Admins"], "appRole": ""})), False, True),
    (req(with_(INSTANCE, assignments={"groups": ["AWS Admins"], "appRole": 7})), False, True),
    (req(with_(INSTANCE, assignments={"groups": ["AWS Admins"], "appRole": "<Admin>"})), False, True),
    (req(with_(INSTANCE, labels={"Env": "prod"})), False, True),
    (req(with_(INSTANCE, labels={"env": "no;semicolons"})), False, True),
    (req(with_(INSTANCE, labels={f"l{i}": "v" for i in range(11)})), False, True),
    (req(*[with_(INSTANCE, displayName=f"app {i}") for i in range(model.MAX_INSTANCES + 1)]), False, True),
    # Rules JSON Schema cannot express: duplicate display names (case-insensitive).
    (req(INSTANCE, with_(INSTANCE, displayName="aws contoso PROD")), False, False),
    # an appRole names the role of the listed users and groups: none listed
    (req(with_(INSTANCE, assignments={"appRole": "Admin,WAAD"})), False, False),
]


@pytest.mark.parametrize("doc, valid, _", CORPUS, ids=range(len(CORPUS)))
def test_model_accepts_exactly_the_valid_corpus(doc, valid, _):
    assert (model.validate_request(doc) == []) is valid


@pytest.mark.parametrize("doc, valid, expressible", CORPUS, ids=range(len(CORPUS)))
def test_schema_agrees_with_model(doc, valid, expressible):
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    schema_valid = mini_jsonschema.errors(doc, schema) == []
    assert schema_valid is (valid if expressible else True)


def test_published_schema_is_generated_from_the_model():
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == model.json_schema()


def test_every_problem_is_listed_with_its_path():
    doc = {"requestId": "ok", "bogus": True, "instances": [
        with_(INSTANCE, displayName=" bad", credentials={"secretToken": "x", "ClientSecret": "leaked-value"}),
        "not an object",
        with_(INSTANCE, displayName="AWS Contoso Prod", applicationTemplate={"id": "nope"}),
        with_(INSTANCE, displayName="aws contoso prod"),
    ]}
    with pytest.raises(InvalidRequest) as caught:
        model.parse_request(doc)
    paths = [p.path for p in caught.value.problems]
    assert paths == ["bogus", "instances[0].displayName", "instances[0].credentials.secretToken",
                     "instances[0].credentials.ClientSecret", "instances[1]", "instances[2].applicationTemplate.id",
                     "instances[3].displayName"]
    messages = " ".join(p.message for p in caught.value.problems)
    assert "did you mean 'SecretToken'" in messages
    assert "duplicate of instances[2].displayName" in messages
    assert "leaked-value" not in str(caught.value) and "leaked-value" not in json.dumps(caught.value.to_dict())
    assert caught.value.to_dict()["problems"][0] == {"path": "bogus", "message": "unknown field"}


def test_provisioning_settings_errors_name_their_field_and_parse_to_the_saved_values():
    bad = req(with_(INSTANCE, notificationEmail="a@contoso.com", provisioningSettings={
        "deletionThreshold": {"enabled": False, "count": 3, "size": 1}, "notificationEmail": "b@contoso.com"}))
    paths = [p.path for p in model.validate_request(bad)]
    assert paths == ["instances[0].provisioningSettings.deletionThreshold.size",
                     "instances[0].provisioningSettings.deletionThreshold.count",
                     "instances[0].provisioningSettings.notificationEmail"]
    missing = model.validate_request(req(with_(INSTANCE, provisioningSettings={"deletionThreshold": {}})))
    assert [(p.path, "required" in p.message) for p in missing] == [
        ("instances[0].provisioningSettings.deletionThreshold.enabled", True)]
    parsed = model.parse_request(req(with_(INSTANCE, provisioningSettings={
        "deletionThreshold": {"enabled": True, "count": 25}, "notificationEmail": "ops@contoso.com"})))
    spec = parsed.instances[0]
    assert spec.deletion_threshold == {"enabled": True, "count": 25} and spec.notification_email == "ops@contoso.com"
    # the request a batch carries: the email once (notificationEmail), the threshold as given; parses back the same
    assert spec.to_dict()["provisioningSettings"] == {"deletionThreshold": {"enabled": True, "count": 25}}
    assert spec.to_dict()["notificationEmail"] == "ops@contoso.com"
    assert model.parse_request(parsed.to_dict()) == parsed
    assert "provisioningSettings" not in model.parse_request(req(INSTANCE)).instances[0].to_dict()
    assert model.effective_deletion_threshold(None) == {"enabled": True, "count": model.DEFAULT_DELETION_THRESHOLD}
    assert model.effective_deletion_threshold({"enabled": True}) == {"enabled": True, "count": 500}
    assert model.effective_deletion_threshold({"enabled": False}) == {"enabled": False, "count": None}
    assert model.effective_deletion_threshold({"enabled": True, "count": 7}) == {"enabled": True, "count": 7}


def test_non_object_request_and_limits():
    assert model.validate_request([]) [0].path == "$"
    assert model.validate_request({"requestId": "a", "instances": {}})[0].message == "must be a list"
    many = req(*[with_(INSTANCE, displayName=f"app {i}") for i in range(3)])
    assert "at most 2 instances" in model.validate_request(many, max_instances=2)[0].message


def test_parsed_request_round_trips_and_keeps_references():
    parsed = model.parse_request(req(FULL))
    inst = parsed.instances[0]
    assert inst.application_template == model.TemplateRef(id="8adf8e6e-67b2-4cf2-a259-e3dc5476c621")
    assert inst.credentials["SecretToken"] == model.SecretRef("scim-contoso-token")
    assert inst.users == ("sean.obrien@contoso-emulator.onmicrosoft.com",) and inst.groups == ("AWS Admins",)
    again = parsed.to_dict()
    assert model.parse_request(again) == parsed
    assert again["instances"][0]["credentials"] == FULL["credentials"]
    minimal = model.parse_request(req(INSTANCE)).to_dict()["instances"][0]
    assert set(minimal) == {"applicationTemplate", "displayName", "credentials"}


def test_instance_key_is_deterministic_and_case_insensitive():
    key = model.instance_key("AWS Contoso Prod")
    assert key == model.instance_key("aws contoso prod") == model.parse_request(req(INSTANCE)).instances[0].key
    assert len(key) == 20 and int(key, 16) >= 0
    assert model.instance_key("AWS Contoso Dev") != key
    assert model.instance_key("Zoe\u0308") == model.instance_key("Zo\u00eb")  # NFC
    assert model.child_instance_id("batch-1", key) == f"batch-1:{key}"
    assert model.instance_tag("fleet", key) == f"fleet:key:{key}"
    assert model.label_tag("fleet", "env", "prod") == "fleet:label:env=prod"


def test_parse_credentials_raises_alone():
    with pytest.raises(InvalidRequest):
        model.parse_credentials("nope")
    assert model.parse_credentials({"Url": "https://x.example"}) == {"Url": "https://x.example"}
    assert model.credentials_to_json({"A": model.SecretRef("n"), "B": "v"}) == {"A": {"keyVaultSecret": "n"}, "B": "v"}


def test_lone_surrogates_are_field_errors_wherever_they_are():
    doc = req(with_(INSTANCE, displayName="App \ud800", labels={"env": "p\udfffrod"}))
    with pytest.raises(InvalidRequest) as caught:
        model.parse_request(doc)
    assert [p.path for p in caught.value.problems] == ["instances[0].displayName", "instances[0].labels.env"]
    assert all("surrogate" in p.message for p in caught.value.problems)
