"""Behaviours Microsoft documents (DOC) or leaves open (UNCONFIRMED) that review found wrong or
fixed in code: the DOC ones now match, the UNCONFIRMED ones are settings (``PATCH /_emulator/settings``)."""

from __future__ import annotations

import pytest
import requests

from emulator_graph import GraphClient, assert_graph_error

SCIM_CREDS = [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"},
              {"key": "SecretToken", "value": "demo-scim-token"},
              {"key": "SyncAll", "value": "true"}]


def _settings(emu, **sections) -> requests.Response:
    url = f"{emu.env['EMULATOR_URL']}/settings"
    if not sections:
        return requests.get(url, verify=emu.ca_bundle, timeout=10)
    return requests.patch(url, json=sections, verify=emu.ca_bundle, timeout=10)


def test_log_filters_are_case_sensitive_unless_set_otherwise(emulator_env, graph: GraphClient):
    """DOC (current provisioningObjectSummary-list page): every provisioning-log filter is case-sensitive."""
    _, sp = graph.instantiate("Case")
    base = f"servicePrincipals/{sp['id']}/synchronization"
    job_id = graph.post(f"{base}/jobs", json={"templateId": "scim"}).json()["id"]
    assert graph.put(f"{base}/secrets", json={"value": SCIM_CREDS}).status_code == 204
    assert graph.post(f"{base}/jobs/{job_id}/start").status_code == 204
    emulator_env.admin.advance(600)
    emulator_env.admin.set_faults(throttling={"enabled": False})

    def count(expression: str) -> int:
        response = graph.get("auditLogs/provisioning", params={"$filter": expression, "$top": "1000"})
        assert response.status_code == 200, response.text
        return len(response.json()["value"])

    exact = count(f"jobId eq '{job_id}'")
    assert exact > 0
    assert _settings(emulator_env).json()["provisioning"]["logFiltersIgnoreCase"] is False
    assert count(f"jobId eq '{job_id.upper()}'") == 0
    assert count(f"jobId eq '{job_id}' and provisioningStatusInfo/status eq 'SUCCESS'") == 0
    assert count(f"contains(jobId,'{job_id.upper()[:10]}')") == 0
    assert count(f"contains(toupper(jobId),'{job_id.upper()[:10]}')") == exact  # tolower/toupper still work
    assert _settings(emulator_env, provisioning={"logFiltersIgnoreCase": True}).status_code == 200
    assert count(f"jobId eq '{job_id.upper()}'") == exact
    assert count(f"contains(jobId,'{job_id.upper()[:10]}')") == exact


def test_second_job_with_the_same_template_is_a_setting(emulator_env, graph: GraphClient):
    """A second job for the same template (UNCONFIRMED, no documented limit): 201 by default, 409 Conflict when set."""
    _, sp = graph.instantiate("Two jobs")
    jobs = f"servicePrincipals/{sp['id']}/synchronization/jobs"
    first = graph.post(jobs, json={"templateId": "scim"})
    assert first.status_code == 201
    assert _settings(emulator_env).json()["provisioning"]["duplicateJobStatus"] == 201
    second = graph.post(jobs, json={"templateId": "scim"})
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
    assert _settings(emulator_env, provisioning={"duplicateJobStatus": 409}).status_code == 200
    error = assert_graph_error(graph.post(jobs, json={"templateId": "scim"}), 409, "Conflict")
    assert first.json()["id"] in error["message"]
    assert len(graph.get(jobs).json()["value"]) == 2
    graph.delete(f"{jobs}/{first.json()['id']}")
    graph.delete(f"{jobs}/{second.json()['id']}")
    assert graph.post(jobs, json={"templateId": "scim"}).status_code == 201  # no job left for the template
    emulator_env.admin.reset()
    assert _settings(emulator_env).json()["provisioning"]["duplicateJobStatus"] == 201


@pytest.mark.parametrize("body", [{"duplicateJobStatus": 200}, {"duplicateJobStatus": "409"}, {"duplicateJobStatus": True},
                                  {"logFiltersIgnoreCase": "yes"}])
def test_bad_values_of_the_new_provisioning_settings_are_refused(emulator_env, body):
    assert _settings(emulator_env, provisioning=body).status_code == 400


def test_directory_filters_ignore_case_is_a_setting(emulator_env, graph: GraphClient):
    """UNCONFIRMED: directory string eq ignores case by default; a setting makes it exact."""
    _, sp = graph.instantiate("Case Sensitive App")
    assert _settings(emulator_env).json()["directory"]["filtersIgnoreCase"] is True

    def names(expression: str) -> list[str]:
        response = graph.get("servicePrincipals", params={"$filter": expression})
        assert response.status_code == 200, response.text
        return [item["displayName"] for item in response.json()["value"]]

    assert names("displayName eq 'case sensitive app'") == ["Case Sensitive App"]
    assert names("startswith(displayName,'CASE SENS')") == ["Case Sensitive App"]
    assert _settings(emulator_env, directory={"filtersIgnoreCase": False}).status_code == 200
    assert names("displayName eq 'case sensitive app'") == []
    assert names("startswith(displayName,'CASE SENS')") == []
    assert names("displayName eq 'Case Sensitive App'") == ["Case Sensitive App"]
    assert _settings(emulator_env, directory={"filtersIgnoreCase": "no"}).status_code == 400


@pytest.mark.parametrize("method, path", [("GET", "applicationTemplates/{t}"),
                                          ("POST", "applicationTemplates/{t}/instantiate")])
def test_unknown_template_status_is_a_setting(emulator_env, graph: GraphClient, method, path):
    """Unknown template id (UNCONFIRMED): 404 Request_ResourceNotFound by default, 400 when set."""
    url = path.format(t="00000000-0000-0000-0000-00000000abcd")
    body = {"json": {"displayName": "x"}} if method == "POST" else {}
    assert _settings(emulator_env).json()["directory"]["unknownTemplateStatus"] == 404
    assert_graph_error(graph.request(method, url, **body), 404, "Request_ResourceNotFound")
    assert _settings(emulator_env, directory={"unknownTemplateStatus": 400}).status_code == 200
    error = assert_graph_error(graph.request(method, url, **body), 400, "Request_BadRequest")
    assert "00000000-0000-0000-0000-00000000abcd" in error["message"]
    assert _settings(emulator_env, directory={"unknownTemplateStatus": 409}).status_code == 400
    assert graph.get("applicationTemplates/8b1025e4-1dd2-430b-a150-2ef79cd700f5").status_code == 200
