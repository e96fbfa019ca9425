"""Inputs that used to be accepted and then ended in a 500 or a stranded job (found in review):
they are refused with a 400 up front, and the simulation survives whatever it was given."""

from __future__ import annotations

import pytest

from emulator_graph import GraphClient, assert_graph_error

SCIM_CREDS = [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"},
              {"key": "SecretToken", "value": "demo-scim-token"}]
ROLE_ID = "4bd2a9c3-8f1e-4c7a-9a55-3f0a1c2d7e11"


@pytest.fixture
def admin_graph(graph_as) -> GraphClient:
    return graph_as("admin")


@pytest.mark.parametrize(
    "roles",
    [
        [{"displayName": "no id"}],
        [{"id": "not-a-guid", "allowedMemberTypes": ["User"]}],
        [{"id": ["x"]}],
        ["msiam_access"],
        [{"id": ROLE_ID, "allowedMemberTypes": "User"}],
        [{"id": ROLE_ID, "isEnabled": "yes"}],
        [{"id": ROLE_ID, "displayName": 7}],
        [{"id": ROLE_ID}, {"id": ROLE_ID.upper()}],
    ],
)
@pytest.mark.parametrize("collection", ["servicePrincipals", "applications"])
def test_malformed_app_roles_are_refused(admin_graph: GraphClient, roles, collection):
    app, sp = admin_graph.instantiate("App roles")
    target = sp if collection == "servicePrincipals" else app
    response = admin_graph.patch(f"{collection}/{target['id']}", json={"appRoles": roles})
    error = assert_graph_error(response, 400, "Request_BadRequest")
    assert "appRoles" in error["message"]
    user = admin_graph.get("users", params={"$top": "1"}).json()["value"][0]["id"]
    msiam = next(r["id"] for r in sp["appRoles"] if r["displayName"] == "msiam_access")
    assigned = admin_graph.post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo",
                                json={"principalId": user, "resourceId": sp["id"], "appRoleId": msiam})
    assert assigned.status_code == 201, assigned.text  # the roles were left as they were


def test_patched_app_roles_are_assignable(admin_graph: GraphClient):
    _, sp = admin_graph.instantiate("App roles")
    roles = [{"id": ROLE_ID.upper(), "allowedMemberTypes": ["User"], "displayName": "Reader", "isEnabled": True,
              "description": None, "value": "reader"}]
    assert admin_graph.patch(f"servicePrincipals/{sp['id']}", json={"appRoles": roles}).status_code == 204
    user = admin_graph.get("users", params={"$top": "1"}).json()["value"][0]["id"]
    body = {"principalId": user, "resourceId": sp["id"], "appRoleId": ROLE_ID}
    assert admin_graph.post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo", json=body).status_code == 201
    body["appRoleId"] = "00000000-0000-0000-0000-000000000000"  # not one of the SP's roles any more
    assert_graph_error(admin_graph.post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo", json=body), 400, "Request_BadRequest")


def _started_job(graph: GraphClient, name: str) -> tuple[str, str]:
    _, sp = graph.instantiate(name)
    base = f"servicePrincipals/{sp['id']}/synchronization"
    job = graph.post(f"{base}/jobs", json={"templateId": "scim"}).json()
    creds = SCIM_CREDS + [{"key": "SyncAll", "value": "true"}]
    assert graph.put(f"{base}/secrets", json={"value": creds}).status_code == 204
    assert graph.post(f"{base}/jobs/{job['id']}/start").status_code == 204
    return base, job["id"]


@pytest.mark.parametrize(
    "change",
    [
        {"objectMappings": "not-a-list"},
        {"objectMappings": ["User"]},
        {"objectMappings": [{"sourceObjectName": "User", "targetObjectName": ["urn:user"]}]},
        {"objectMappings": [{"sourceObjectName": "User", "attributeMappings": {"x": 1}}]},
        {"id": ["rule"]},
    ],
)
def test_put_schema_with_unusable_rules_is_a_400_and_the_job_keeps_running(emulator_env, admin_graph: GraphClient, change):
    base, job_id = _started_job(admin_graph, "Schema")
    schema = admin_graph.get(f"{base}/jobs/{job_id}/schema").json()
    schema.pop("@odata.context", None)
    rule = {**schema["synchronizationRules"][0], **change}
    response = admin_graph.put(f"{base}/jobs/{job_id}/schema", json={**schema, "synchronizationRules": [rule]})
    assert_graph_error(response, 400, "BadRequest")
    emulator_env.admin.advance(3600)
    assert admin_graph.get("users", params={"$top": "1"}).status_code == 200
    status = admin_graph.get(f"{base}/jobs/{job_id}").json()["status"]
    assert status["code"] == "Active" and status["lastExecution"]["state"] == "Succeeded"


def test_put_schema_directory_objects_must_be_objects(admin_graph: GraphClient):
    base, job_id = _started_job(admin_graph, "Schema")
    schema = admin_graph.get(f"{base}/jobs/{job_id}/schema").json()
    schema.pop("@odata.context", None)
    directories = [{**schema["directories"][0], "objects": "User"}] + schema["directories"][1:]
    response = admin_graph.put(f"{base}/jobs/{job_id}/schema", json={**schema, "directories": directories})
    assert_graph_error(response, 400, "BadRequest")


@pytest.mark.parametrize("rule_id", [["x"], {"id": "x"}, 7, None])
def test_provision_on_demand_with_a_non_string_rule_id_is_a_400(admin_graph: GraphClient, rule_id):
    base, job_id = _started_job(admin_graph, "On demand")
    user = admin_graph.get("users", params={"$top": "1"}).json()["value"][0]["id"]
    body = {"parameters": [{"ruleId": rule_id, "subjects": [{"objectId": user, "objectTypeName": "User"}]}]}
    error = assert_graph_error(admin_graph.post(f"{base}/jobs/{job_id}/provisionOnDemand", json=body), 400, "BadRequest")
    assert "ruleId" in error["message"]


def test_a_cycle_that_fails_inside_the_engine_does_not_stop_other_jobs_or_strand_its_job():
    """The engine's guard: whatever one job's cycle raises, advance() goes on; the job records a failed
    execution and tries again one interval later."""
    from emulator.provisioning.testing import make_service

    service, directory, clock = make_service()
    jobs = []
    for name in ("Broken", "Healthy"):
        sp = directory.add_service_principal(name, "8adf8e6e-67b2-4cf2-a259-e3dc5476c621")
        service.on_instantiate("8adf8e6e-67b2-4cf2-a259-e3dc5476c621", sp["id"])
        directory.assign(sp["id"], directory.add_user(f"{name} user")["id"])
        service.put_secrets(sp["id"], {"value": SCIM_CREDS})
        job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
        service.start_job(sp["id"], job_id)
        jobs.append((sp["id"], job_id))
    (broken_sp, broken), (healthy_sp, healthy) = jobs
    context = service.engine.context

    def failing(job):
        if job.id == broken:
            raise RuntimeError("simulated emulator bug")
        return context(job)

    service.engine.context = failing
    clock.advance(600)
    service.advance()  # does not raise
    assert service.get_job(healthy_sp, healthy)["status"]["lastExecution"]["state"] == "Succeeded"
    status = service.get_job(broken_sp, broken)["status"]
    assert status["lastExecution"]["state"] == "Failed"
    assert status["lastExecution"]["error"]["code"] == "InternalError"
    assert status["countSuccessiveCompleteFailures"] == 1
    service.engine.context = context  # the cause is gone: the next attempt, one interval later, runs
    clock.advance(service.settings.incremental_interval_seconds + 600)
    status = service.get_job(broken_sp, broken)["status"]
    assert status["lastExecution"]["state"] == "Succeeded" and status["code"] == "Active"
