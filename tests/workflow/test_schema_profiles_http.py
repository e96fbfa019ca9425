"""Schema profiles end to end through devhost running the real function_app.py: the diff endpoint,
``apply_profile`` on the real Durable client, a portal-style change through Graph showing as drift
with the right field, and ``enforce`` putting it back (per instance and per selector; GET only reads)."""

from __future__ import annotations

import pytest
import requests
from support import Stack, make_batch

from core import model

NAME = "Profiles 001"
PROFILE = "custom-scim.v1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("workflow-profiles"), time_scale=30.0)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def instance(stack):
    body = make_batch("profiles-001", 1, prefix="Profiles")
    body["instances"][0]["labels"] = {"suite": "drift"}
    batch_id = stack.submit(body)
    status = stack.wait(batch_id, timeout=150)
    assert status["runtimeStatus"] == "Completed", status
    [sp] = stack.service_principals_by_name()[NAME]
    return model.instance_key(NAME), sp["id"]


def _graph(stack: Stack, method: str, path: str, **kwargs) -> requests.Response:
    emu = stack.emulator
    headers = {"Authorization": "Bearer " + emu.admin.token(client="admin")}
    return requests.request(method, f"{emu.url}/v1.0{path}", headers=headers, verify=emu.ca_bundle, timeout=30, **kwargs)


def _apply(stack: Stack, key: str, body: dict) -> dict:
    response = stack.request("POST", f"/api/instances/{key}/schema/apply", json=body)
    assert response.status_code == 202, response.text
    status = stack.wait(response.json()["id"], timeout=60)
    assert status["runtimeStatus"] == "Completed", status
    return status["output"]


def test_endpoints_need_a_function_key_and_name_bad_input(stack, instance):
    key, _ = instance
    assert stack.host.request("GET", f"/api/instances/{key}/schema/diff?profile={PROFILE}", key=False).status_code == 401
    assert stack.host.request("GET", f"/api/instances/{key}/drift", key=False).status_code == 401
    unknown = stack.request("GET", f"/api/instances/{key}/schema/diff?profile=nope.v1")
    assert unknown.status_code == 400 and unknown.json()["error"]["details"][0]["path"] == "profile"
    missing = stack.request("GET", f"/api/instances/{'0' * 20}/schema/diff?profile={PROFILE}")
    assert missing.status_code == 404
    bad = stack.request("POST", f"/api/instances/{key}/schema/apply", json={"profile": PROFILE, "dryRun": "yes"})
    assert bad.status_code == 400 and [d["path"] for d in bad.json()["error"]["details"]] == ["dryRun"]


def test_diff_apply_drift_and_enforce(stack, instance):
    key, sp_id = instance
    plan = stack.request("GET", f"/api/instances/{key}/schema/diff?profile={PROFILE}")
    assert plan.status_code == 200, plan.text
    changes = {(c["field"], c.get("targetAttributeName"), c["change"]) for c in plan.json()["changes"]}
    assert ("attributeMapping", "userName", "change") in changes

    dry = _apply(stack, key, {"profile": PROFILE, "dryRun": True})
    assert dry["applied"] is False and dry["changes"]
    assert stack.request("GET", f"/api/instances/{key}/schema/diff?profile={PROFILE}").json()["changes"]

    applied = _apply(stack, key, {"profile": PROFILE})
    assert (applied["applied"], applied["restarted"], applied["recorded"]) == (True, True, True)
    after = stack.request("GET", f"/api/instances/{key}/schema/diff").json()  # the recorded profile
    assert after["profile"] == PROFILE and after["changes"] == []
    clean = stack.request("GET", f"/api/instances/{key}/drift").json()
    assert clean["drifted"] is False
    # the request's assignments, kept in the notes by the batch, are compared (make_batch assigns one group)
    assert clean["assignments"]["compared"] is True and clean["assignments"]["expected"] == 1, clean["assignments"]

    # a portal-style change made through Graph
    [job] = stack.jobs_of(sp_id)
    schema = _graph(stack, "GET", f"/servicePrincipals/{sp_id}/synchronization/jobs/{job['id']}/schema").json()
    schema.pop("@odata.context", None)
    users = next(m for m in schema["synchronizationRules"][0]["objectMappings"] if m["sourceObjectName"] == "User")
    users["scope"] = None
    put = _graph(stack, "PUT", f"/servicePrincipals/{sp_id}/synchronization/jobs/{job['id']}/schema", json=schema)
    assert put.status_code == 204, put.text

    drift = stack.request("GET", f"/api/instances/{key}/drift").json()
    assert drift["drifted"] is True and drift["parts"] == ["schema"]
    assert [(c["field"], c["before"], c["after"] is not None) for c in drift["schema"]["changes"]] == [("scope", None, True)]
    # GET only reads: enforcing is a POST, a dry run unless told otherwise
    refused = stack.request("GET", f"/api/instances/{key}/drift?enforce=true")
    assert refused.status_code == 400 and "POST /api/instances/" in refused.json()["error"]["details"][0]["message"]
    planned = stack.request("POST", f"/api/instances/{key}/drift/enforce", json={})
    assert planned.status_code == 200, planned.text
    assert [(a["part"], a["outcome"]) for a in planned.json()["actions"]] == [("schema", "planned")]
    assert stack.host.request("POST", f"/api/instances/{key}/drift/enforce", json={}, key=False).status_code == 401
    assert stack.request("GET", f"/api/instances/{key}/drift").json()["parts"] == ["schema"]  # nothing written

    # per selector: a dry run first (202, reads only), then the enforce itself
    dry = stack.request("POST", "/api/drift/enforce", json={"selector": "suite=drift"})
    assert dry.status_code == 202 and dry.json()["dryRun"] is True and dry.json()["count"] == 1, dry.text
    report = stack.wait(dry.json()["id"], timeout=60)["output"]
    assert report["counts"]["drifted"] == 1 and report["counts"]["planned"] == 1
    assert stack.request("GET", f"/api/instances/{key}/drift").json()["parts"] == ["schema"]
    started = stack.request("POST", "/api/drift/enforce", json={"selector": "suite=drift", "dryRun": False})
    assert started.status_code == 202, started.text
    status = stack.wait(started.json()["id"], timeout=60)
    assert status["runtimeStatus"] == "Completed", status
    [result] = status["output"]["results"]
    assert result["instanceKey"] == key and [(a["part"], a["outcome"]) for a in result["actions"]] == [("schema", "done")]
    view = stack.request("GET", f"/api/drift/enforce/{started.json()['id']}").json()
    assert view["runtimeStatus"] == "Completed" and view["counts"]["done"] == 1
    assert stack.request("GET", f"/api/instances/{key}/drift").json()["drifted"] is False
    again = stack.request("POST", "/api/drift/enforce", json={"selector": "suite=drift", "dryRun": False})
    assert again.json()["duplicate"] is True  # a retried request starts nothing new


def test_enforce_input_and_confirm_rules(stack, instance):
    key, _ = instance
    bad = stack.request("POST", "/api/drift/enforce", json={"selector": "", "dryRun": "no", "confirm": -1, "x": 1})
    assert bad.status_code == 400
    assert {d["path"] for d in bad.json()["error"]["details"]} == {"selector", "dryRun", "confirm", "x"}
    assert stack.request("POST", "/api/drift/enforce", json={"selector": "suite=none"}).status_code == 404
    one = stack.request("POST", f"/api/instances/{key}/drift/enforce", json={"selector": "suite=drift"})
    assert one.status_code == 400 and one.json()["error"]["details"][0]["path"] == "selector"
    assert stack.request("GET", "/api/drift/enforce/never-started").status_code == 404
    # an enforceId names one enforcement: a dry run under it, then the real one under the same id, is
    # a conflict (409 naming enforceId), not a "duplicate" that silently enforces nothing
    dry = stack.request("POST", "/api/drift/enforce", json={"selector": "suite=drift", "enforceId": "mode-1"})
    assert dry.status_code == 202, dry.text
    stack.wait(dry.json()["id"], timeout=60)
    real = stack.request("POST", "/api/drift/enforce", json={"selector": "suite=drift", "dryRun": False,
                                                             "enforceId": "mode-1"})
    assert real.status_code == 409, real.text
    assert real.json()["error"]["code"] == "EnforceIdConflict" and real.json()["error"]["details"][0]["path"] == "enforceId"
    again = stack.request("POST", "/api/drift/enforce", json={"selector": "suite=drift", "enforceId": "mode-1"})
    assert again.status_code == 202 and again.json()["duplicate"] is True  # the same body again: a retry


def test_a_request_naming_a_schema_profile_gets_it_before_the_job_starts(stack):
    body = make_batch("profiles-002", 1, prefix="Profiled")
    body["instances"][0]["schemaProfile"] = "custom-scim.v7"
    refused = stack.request("POST", "/api/provisioning-requests", json=body)
    assert refused.status_code == 400
    assert [d["path"] for d in refused.json()["error"]["details"]] == ["instances[0].schemaProfile"]
    body["instances"][0]["schemaProfile"] = PROFILE
    body["instances"][0]["labels"] = {"suite": "drift"}
    status = stack.wait(stack.submit(body), timeout=150)
    assert status["runtimeStatus"] == "Completed", status
    key = model.instance_key("Profiled 001")
    drift = stack.request("GET", f"/api/instances/{key}/drift").json()
    assert drift["profile"] == PROFILE and drift["drifted"] is False, drift
    # the PUT came before the start: one schema PUT, and it precedes the job's start
    writes = [r["path"] for r in stack.graph_requests(kind="graph")
              if r.get("method") in ("PUT", "POST") and drift["servicePrincipalId"] in r.get("path", "")
              and (r["path"].endswith("/schema") or r["path"].endswith("/start"))]
    assert [w.rsplit("/", 1)[1] for w in writes] == ["schema", "start"], writes
    # two instances carry suite=drift now: a wide enforce needs confirm = 2, nothing starts before
    wide = stack.request("POST", "/api/drift/enforce", json={"selector": "suite=drift", "dryRun": False,
                                                             "enforceId": "wide-1"})
    assert wide.status_code == 400 and wide.json()["error"]["details"][0]["path"] == "confirm"
    assert stack.request("GET", "/api/drift/enforce/wide-1").status_code == 404
    confirmed = stack.request("POST", "/api/drift/enforce", json={"selector": "suite=drift", "dryRun": False,
                                                                  "enforceId": "wide-1", "confirm": 2})
    assert confirmed.status_code == 202, confirmed.text
    report = stack.wait(confirmed.json()["id"], timeout=60)["output"]
    assert report["counts"]["targets"] == 2 and report["counts"]["drifted"] == 0  # both in their desired state
