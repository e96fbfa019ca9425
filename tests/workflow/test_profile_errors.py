"""The schema-profile and rollout triggers answer every failure as a JSON error (triggers/http_profiles._error):
a bad request names its fields (400), a missing object is 404, a refusal 409, a Graph outage 503, and an
unexpected exception a 500 that names only its type (never its text, which may hold a value)."""

from __future__ import annotations

import json

import pytest

from core import errors
from triggers.http_profiles import _error, apply_instance_id


def _body(response) -> dict:
    return json.loads(response.get_body())["error"]


def test_a_bad_request_names_each_field():
    response = _error(errors.InvalidRequest([errors.Problem("profile", "unknown profile"),
                                             errors.Problem("dryRun", "must be true or false")]))
    assert response.status_code == 400
    body = _body(response)
    assert body["code"] == "InvalidRequest" and [d["path"] for d in body["details"]] == ["profile", "dryRun"]


@pytest.mark.parametrize("exc,status,code", [
    (errors.NotFound("no such service principal"), 404, "NotFound"),
    (errors.NotFound("gone", code="Request_ResourceNotFound"), 404, "Request_ResourceNotFound"),
    (errors.PermanentError("the job is disabled", code="JobDisabled"), 409, "JobDisabled"),
    (errors.TransientError("Graph unreachable", code="TransientErrorsExhausted"), 503, "TransientErrorsExhausted"),
])
def test_provisioning_errors_map_to_their_status(exc, status, code):
    response = _error(exc)
    assert response.status_code == status
    body = _body(response)
    assert body["code"] == code and body["message"] == exc.message


def test_an_unexpected_exception_says_only_its_type():
    response = _error(ValueError("secret-value-123"))
    assert response.status_code == 500
    assert "secret-value-123" not in response.get_body().decode() and "ValueError" in _body(response)["message"]


def test_one_apply_orchestration_per_instance_and_profile():
    assert apply_instance_id("k" * 20, "custom-scim.v1") == f"profile-{'k' * 20}-custom-scim.v1"
    assert apply_instance_id("k" * 20, "custom-scim.v2") != apply_instance_id("k" * 20, "custom-scim.v1")
