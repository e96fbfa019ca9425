"""The activities called directly as functions with dicts: the result shapes of docs/architecture.md §3, and no secrets in them."""

from __future__ import annotations

import json

import pytest

import activities
from core_support import CUSTOM_TEMPLATE_ID, HEALTHY_CREDENTIALS, SEEDED_SECRETS, WRONG_CREDENTIALS
from core import errors, model, names


def call(name: str, payload) -> dict:
    """Call the registered activity function the way the worker does (input dict -> result dict)."""
    function = getattr(activities, name)
    result = function(payload)
    json.dumps(result)  # always JSON-serialisable
    assert not any(v in json.dumps(result) for v in SEEDED_SECRETS.values())
    return result


def test_every_activity_name_is_registered_once():
    import azure.durable_functions as df

    app = df.DFApp()
    for blueprint in activities.BLUEPRINTS:
        app.register_functions(blueprint)
    functions = app.get_functions()
    registered = [f.get_function_name() for f in functions]
    assert all(f.get_bindings()[0].type == "activityTrigger" for f in functions)
    assert sorted(registered) == sorted(names.ACTIVITIES)


def test_a_whole_instance_through_the_activities(core_env):
    template = call(names.RESOLVE_APPLICATION_TEMPLATE, {"applicationTemplate": {"id": CUSTOM_TEMPLATE_ID}})
    assert template == {"ok": True, "templateId": CUSTOM_TEMPLATE_ID, "displayName": "Custom", "jobKind": "userProvisioning"}
    key = model.instance_key("Activity app")
    app = call(names.ENSURE_APPLICATION, {"batchId": "b", "instanceKey": key, "displayName": "Activity app",
                                          "templateId": CUSTOM_TEMPLATE_ID, "labels": {"team": "ops"}})
    assert app["ok"] and app["created"] is True and set(app) == {"ok", "applicationId", "appId", "servicePrincipalId",
                                                                 "created", "createdHere", "tagged"}
    assert app["createdHere"] is True
    assert app["tagged"] is False  # wait_until_visible tags it
    sp = app["servicePrincipalId"]
    seen = call(names.WAIT_UNTIL_VISIBLE, {"servicePrincipalId": sp, "applicationId": app["applicationId"],
                                           "instanceKey": key, "labels": {"team": "ops"},
                                           "credentials": HEALTHY_CREDENTIALS})
    recorded = seen.pop("recordedVersions")  # the Key Vault version recorded as a tag by the same PATCH
    left = seen.pop("tags")  # the tags that PATCH left: the base of save_secrets' record
    assert seen == {"ok": True, "visible": True, "reads": 5, "tagged": True}
    assert {"entra-provisioning-fleet", f"entra-provisioning-fleet:kv-saved:scim-contoso-token="
            f"{recorded['scim-contoso-token']}"} <= set(left)
    assert list(recorded) == ["scim-contoso-token"] and len(recorded["scim-contoso-token"]) == 32
    job = call(names.ENSURE_JOB, {"servicePrincipalId": sp})
    assert job["ok"] and job["created"] and job["templateId"] == "scim"
    valid = call(names.VALIDATE_CREDENTIALS, {"servicePrincipalId": sp, "jobId": job["jobId"],
                                              "credentials": HEALTHY_CREDENTIALS})
    assert valid["ok"] and set(valid["secretVersions"]) == {"SecretToken"}
    saved = call(names.SAVE_SECRETS, {"servicePrincipalId": sp, "credentials": HEALTHY_CREDENTIALS,
                                      "notificationEmail": "ops@contoso.com", "syncAll": False,
                                      "recordedVersions": recorded, "currentTags": left})
    assert saved["ok"] and "SyncNotificationSettings" in saved["keys"] and saved["cleared"] == []
    assert saved["savedVersions"] == recorded
    bad_record = call(names.SAVE_SECRETS, {"servicePrincipalId": sp, "credentials": HEALTHY_CREDENTIALS,
                                           "recordedVersions": ["v1"]})
    assert bad_record["error"]["problems"][0]["path"] == "recordedVersions"
    bad_tags = call(names.SAVE_SECRETS, {"servicePrincipalId": sp, "credentials": HEALTHY_CREDENTIALS,
                                         "currentTags": "entra-provisioning-fleet"})
    assert bad_tags["error"]["problems"][0]["path"] == "currentTags"
    assigned = call(names.ASSIGN_PRINCIPALS, {"servicePrincipalId": sp, "users": [], "groups": ["SaaS Pilot"]})
    assert assigned == {"ok": True, "assigned": 1, "alreadyAssigned": 0}
    started = call(names.START_JOB, {"servicePrincipalId": sp, "jobId": job["jobId"]})
    assert started["ok"] and started["started"] and started["startedAt"].endswith("Z")
    core_env.admin.advance(3 * 3600)
    status = call(names.GET_JOB_STATUS, {"servicePrincipalId": sp, "jobId": job["jobId"], "startedAt": started["startedAt"]})
    assert status["ok"] and status["status"]["state"] == "SteadyState"
    logs = call(names.GET_PROVISIONING_ERRORS, {"servicePrincipalId": sp, "jobId": job["jobId"],
                                                "since": started["startedAt"], "top": 5})
    assert logs["ok"] and logs["errors"] == [] and logs["failedObjects"] == 0 and logs["topErrorCodes"] == []
    assert logs["complete"] is True and logs["pages"] == 1
    bad_until = call(names.GET_PROVISIONING_ERRORS, {"servicePrincipalId": sp, "jobId": job["jobId"],
                                                     "since": started["startedAt"], "until": 5})
    assert not bad_until["ok"] and bad_until["error"]["kind"] == "permanent"
    listed = call(names.LIST_MANAGED_INSTANCES, {})
    assert listed["ok"] and listed["instances"][0]["labels"] == {"team": "ops"}
    assert listed["instances"][0]["credentials"] == HEALTHY_CREDENTIALS  # references only, from the notes
    restart = call(names.RESTART_QUARANTINED_JOB, {"servicePrincipalId": sp, "jobId": job["jobId"],
                                                   "credentials": listed["instances"][0]["credentials"]})
    assert restart["ok"] and restart["restarted"] is False


def test_permanent_failures_are_returned(core_env):
    missing = call(names.RESOLVE_APPLICATION_TEMPLATE, {"applicationTemplate": {"displayName": "Nope"}})
    assert missing == {"ok": False, "error": {"kind": "permanent", "code": "TemplateNotFound", "status": 404,
                                              "message": "no application template is named 'Nope'",
                                              "step": names.RESOLVE_APPLICATION_TEMPLATE}}
    bad_input = call(names.ENSURE_JOB, {})
    assert bad_input["error"]["code"] == "InvalidRequest" and bad_input["error"]["problems"] == [
        {"path": "servicePrincipalId", "message": "is required"}]
    pasted = call(names.SAVE_SECRETS, {"servicePrincipalId": "x", "credentials": {"SecretToken": "demo-scim-token"}})
    assert pasted["error"]["kind"] == "permanent" and pasted["error"]["problems"][0]["path"] == "credentials.SecretToken"
    assert call(names.GET_PROVISIONING_ERRORS, {"servicePrincipalId": "x", "jobId": "y", "since": "z", "top": 0}
                )["error"]["code"] == "InvalidRequest"
    assert call(names.RESOLVE_APPLICATION_TEMPLATE, {"applicationTemplate": {"id": "x"}})["error"]["code"] == "InvalidRequest"
    assert call(names.WAIT_UNTIL_VISIBLE, "not a dict")["error"]["code"] == "InvalidRequest"
    assert call(names.ASSIGN_PRINCIPALS, {"servicePrincipalId": "x", "users": "one"})["error"]["code"] == "InvalidRequest"

    sp = call(names.ENSURE_APPLICATION, {"batchId": "b", "instanceKey": "k", "displayName": "Bad creds app",
                                         "templateId": CUSTOM_TEMPLATE_ID})["servicePrincipalId"]
    job = call(names.ENSURE_JOB, {"servicePrincipalId": sp})["jobId"]
    refused = call(names.VALIDATE_CREDENTIALS, {"servicePrincipalId": sp, "jobId": job, "credentials": WRONG_CREDENTIALS})
    assert refused["ok"] is False and refused["error"]["kind"] == "permanent"
    assert refused["error"]["step"] == names.VALIDATE_CREDENTIALS and "invalid credentials" in refused["error"]["message"]


def test_throttled_is_returned_with_the_wait(core_env):
    sp = call(names.ENSURE_APPLICATION, {"batchId": "b", "instanceKey": "k2", "displayName": "Throttled app",
                                         "templateId": CUSTOM_TEMPLATE_ID})["servicePrincipalId"]
    core_env.admin.set_faults(throttling={"enabled": True, "writes": {"limit": 1, "windowSeconds": 120}})
    call(names.ENSURE_JOB, {"servicePrincipalId": sp})  # takes the only write token
    result = call(names.START_JOB, {"servicePrincipalId": sp,
                                    "jobId": call(names.ENSURE_JOB, {"servicePrincipalId": sp})["jobId"]})
    assert result["ok"] is False
    error = result["error"]
    assert error["kind"] == "throttled" and error["code"] == "TooManyRequests" and error["step"] == names.START_JOB
    assert 100 < error["retryAfterSeconds"] <= 120


def test_transient_failures_are_raised_without_secrets(core_env):
    core_env.admin.set_faults(errors={"rate": 1.0, "statuses": [503]})
    with pytest.raises(errors.TransientError) as caught:
        call(names.LIST_MANAGED_INSTANCES, None)
    assert caught.value.kind == "transient" and caught.value.status == 503


def test_unexpected_errors_become_transient_without_their_text(caplog):
    def explode(payload, ctx):
        raise KeyError("demo-scim-token")

    with pytest.raises(errors.TransientError) as caught:
        activities.run("boom", {}, explode, context=object())  # type: ignore[arg-type]
    assert str(caught.value) == "UnexpectedError: boom: unexpected KeyError"
    assert "test_activities.py" in caplog.text and "explode" in caplog.text
