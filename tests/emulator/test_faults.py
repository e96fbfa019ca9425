"""Fault injection: throttling (429 + Retry-After modes), 5xx, latency, replication lag, and
instantiate answering an error although it created the objects.

Throttling windows run on the simulated clock, so tests refill buckets with ``admin.advance``
instead of sleeping.
"""

from __future__ import annotations

import math
import time

import pytest

from emulator.testing import start_emulator
from emulator_graph import NON_GALLERY, GraphClient, assert_graph_error

SMALL_WRITES = {"writes": {"limit": 2, "windowSeconds": 10}}


def _write(graph: GraphClient, sp_id: str, n: int):
    return graph.patch(f"servicePrincipals/{sp_id}", json={"notes": f"write {n}"})


def _throttled_sp(emulator_env, graph: GraphClient, mode: str) -> tuple[str, object]:
    _, sp = graph.instantiate("Throttle target")
    emulator_env.admin.set_faults(throttling={**SMALL_WRITES, "retryAfter": mode})
    assert _write(graph, sp["id"], 1).status_code == 204
    assert _write(graph, sp["id"], 2).status_code == 204
    return sp["id"], _write(graph, sp["id"], 3)


def test_429_with_decimal_retry_after_and_headers(emulator_env, graph: GraphClient):
    sp_id, response = _throttled_sp(emulator_env, graph, "decimal")
    error = assert_graph_error(response, 429, "TooManyRequests")
    assert error["innerError"]["status"] == "429"
    retry_after = response.headers["Retry-After"]
    assert "." in retry_after and 0 < float(retry_after) <= 5.0
    assert response.headers["x-ms-throttle-scope"] == (
        f"Tenant_Application/Write/{graph.client_id}/{emulator_env.env['AZURE_TENANT_ID']}"
    )
    assert response.headers["x-ms-throttle-information"] == "WriteLimitExceeded"
    # Reads are not writes: still answered.
    assert graph.get(f"servicePrincipals/{sp_id}").status_code == 200


def test_429_with_integer_retry_after(emulator_env, graph: GraphClient):
    _, response = _throttled_sp(emulator_env, graph, "integer")
    assert response.status_code == 429
    assert response.headers["Retry-After"].isdigit() and int(response.headers["Retry-After"]) >= 1


def test_429_without_retry_after(emulator_env, graph: GraphClient):
    _, response = _throttled_sp(emulator_env, graph, "absent")
    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    assert "x-ms-throttle-scope" in response.headers


def test_early_retry_is_throttled_again_and_waiting_succeeds(emulator_env, graph: GraphClient):
    sp_id, response = _throttled_sp(emulator_env, graph, "decimal")
    retry_after = float(response.headers["Retry-After"])
    emulator_env.admin.advance(retry_after / 2)
    early = _write(graph, sp_id, 4)
    assert early.status_code == 429
    assert float(early.headers["Retry-After"]) > 0
    emulator_env.admin.advance(float(early.headers["Retry-After"]))
    assert _write(graph, sp_id, 5).status_code == 204


def test_buckets_are_per_client(emulator_env, graph_as):
    workflow, admin = graph_as("workflow"), graph_as("admin")
    _, sp = admin.instantiate("Shared target")
    emulator_env.admin.set_faults(throttling={"writes": {"limit": 2, "windowSeconds": 60}})
    assert admin.patch(f"servicePrincipals/{sp['id']}", json={"notes": "a"}).status_code == 204
    assert admin.patch(f"servicePrincipals/{sp['id']}", json={"notes": "b"}).status_code == 204
    assert admin.patch(f"servicePrincipals/{sp['id']}", json={"notes": "c"}).status_code == 429
    _, own = workflow.instantiate("Workflow's own")
    assert workflow.patch(f"servicePrincipals/{own['id']}", json={"notes": "c"}).status_code == 204


def test_throttled_instantiate_creates_nothing(emulator_env, graph: GraphClient):
    emulator_env.admin.set_faults(throttling={"writes": {"limit": 1, "windowSeconds": 60}})
    graph.instantiate("First")
    response = graph.post(f"applicationTemplates/{NON_GALLERY}/instantiate", json={"displayName": "Second"})
    assert response.status_code == 429
    assert graph.get("applications", params={"$filter": "displayName eq 'Second'"}).json()["value"] == []


def test_reports_limit_is_5_per_10_seconds_by_default(emulator_env, graph: GraphClient):
    statuses = [graph.get("auditLogs/provisioning").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    emulator_env.admin.advance(2.5)
    assert graph.get("auditLogs/provisioning").status_code == 200


def test_provision_on_demand_limit_is_5_per_10_seconds_and_a_throttled_call_takes_no_write(emulator_env, graph: GraphClient):
    """provisionOnDemand has its own budget (5 per 10 s,
    https://learn.microsoft.com/graph/api/synchronization-synchronizationjob-provisionondemand) and also
    counts as a write; a call that its own budget throttles must not use up the write quota."""
    _, sp = graph.instantiate("On-demand throttle target")
    sync = f"servicePrincipals/{sp['id']}/synchronization"
    job_id = graph.post(f"{sync}/jobs", json={"templateId": "scim"}).json()["id"]
    secrets = [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"}, {"key": "SecretToken", "value": "demo-scim-token"}]
    assert graph.put(f"{sync}/secrets", json={"value": secrets}).status_code == 204
    rule_id = graph.get(f"{sync}/jobs/{job_id}/schema").json()["synchronizationRules"][0]["id"]
    user_id = graph.get("users", params={"$top": "1"}).json()["value"][0]["id"]
    body = {"parameters": [{"ruleId": rule_id, "subjects": [{"objectId": user_id, "objectTypeName": "User"}]}]}
    emulator_env.admin.set_faults(throttling={"writes": {"limit": 6, "windowSeconds": 3600}})
    statuses = [graph.post(f"{sync}/jobs/{job_id}/provisionOnDemand", json=body).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    throttled = graph.post(f"{sync}/jobs/{job_id}/provisionOnDemand", json=body)
    assert_graph_error(throttled, 429, "TooManyRequests")
    assert float(throttled.headers["Retry-After"]) > 0
    # Five writes used so far: the sixth still goes through, the seventh is over the write quota.
    assert _write(graph, sp["id"], 1).status_code == 204
    assert _write(graph, sp["id"], 2).status_code == 429


def test_throttling_can_be_disabled(emulator_env, graph: GraphClient):
    emulator_env.admin.set_faults(throttling={"enabled": False})
    assert all(graph.get("auditLogs/provisioning").status_code == 200 for _ in range(8))


def test_scheduled_server_errors(emulator_env, graph: GraphClient):
    emulator_env.admin.set_faults(errors={"next": 2, "statuses": [503], "retryAfterSeconds": 3})
    first = graph.get("servicePrincipals")
    assert_graph_error(first, 503, "serviceNotAvailable")
    assert first.headers["Retry-After"] == "3"
    assert graph.get("servicePrincipals").status_code == 503
    assert graph.get("servicePrincipals").status_code == 200


def test_error_rate_is_deterministic_under_the_seed(emulator_env, graph: GraphClient):
    def run() -> list[int]:
        emulator_env.admin.reset()
        emulator_env.admin.set_faults(errors={"rate": 0.5, "statuses": [503, 504]})
        return [graph.get("applicationTemplates", params={"$top": "1"}).status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert {200, 503, 504} == set(first)


def test_random_faults_follow_the_seed():
    """``--seed`` fixes the whole fault history (5xx draws and instantiate failures) of a request
    sequence: the same seed repeats it exactly, another seed gives another one."""
    faults = {"errors": {"rate": 0.4, "statuses": [500, 503, 504]}, "instantiate": {"status": 404, "rate": 0.5}}

    def history(seed: int) -> list[int]:
        emu = start_emulator(seed=seed, faults=faults)
        try:
            graph = GraphClient(emu)
            statuses = [graph.get("applicationTemplates", params={"$top": "1"}).status_code for _ in range(20)]
            statuses += [graph.post(f"applicationTemplates/{NON_GALLERY}/instantiate", json={"displayName": f"app {n}"}).status_code
                         for n in range(12)]
            return statuses
        finally:
            emu.stop()

    first, again, other = history(7), history(7), history(8)
    assert first == again
    assert first != other
    assert {200, 201, 404} <= set(first) and set(first) & {500, 503, 504}


def test_added_latency(emulator_env, graph: GraphClient):
    emulator_env.admin.set_faults(latency={"ms": 300})
    started = time.monotonic()
    assert graph.get("applicationTemplates", params={"$top": "1"}).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_replication_lag_by_reads(emulator_env, graph: GraphClient):
    emulator_env.admin.set_faults(replicationLag={"reads": 2})
    app, sp = graph.instantiate("Lagging by reads")
    assert_graph_error(graph.get(f"servicePrincipals/{sp['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(graph.get(f"servicePrincipals/{sp['id']}"), 404, "Request_ResourceNotFound")
    assert graph.get(f"servicePrincipals/{sp['id']}").status_code == 200
    assert graph.get(f"servicePrincipals/{sp['id']}").status_code == 200
    # Each object lags on its own.
    assert_graph_error(graph.get(f"applications/{app['id']}"), 404, "Request_ResourceNotFound")


def test_replication_lag_by_time_applies_to_sync_calls_and_lists(emulator_env, graph: GraphClient):
    emulator_env.admin.set_faults(replicationLag={"seconds": 30})
    _, sp = graph.instantiate("Lagging by time")
    assert_graph_error(graph.get(f"servicePrincipals/{sp['id']}"), 404, "Request_ResourceNotFound")
    assert_graph_error(graph.get(f"servicePrincipals/{sp['id']}/synchronization/templates"), 404, "Request_ResourceNotFound")
    assert_graph_error(graph.post(f"servicePrincipals/{sp['id']}/synchronization/jobs", json={"templateId": "scim"}),
                       404, "Request_ResourceNotFound")
    assert graph.get("servicePrincipals", params={"$filter": "displayName eq 'Lagging by time'"}).json()["value"] == []
    emulator_env.admin.advance(31)
    assert graph.get(f"servicePrincipals/{sp['id']}").status_code == 200
    job = graph.post(f"servicePrincipals/{sp['id']}/synchronization/jobs", json={"templateId": "scim"})
    assert job.status_code == 201
    # The new job lags as well.
    assert_graph_error(graph.get(f"servicePrincipals/{sp['id']}/synchronization/jobs/{job.json()['id']}"),
                       404, "Request_ResourceNotFound")
    emulator_env.admin.advance(31)
    assert graph.get(f"servicePrincipals/{sp['id']}/synchronization/jobs/{job.json()['id']}").status_code == 200


def test_replication_flapping(emulator_env, graph: GraphClient):
    emulator_env.admin.set_faults(replicationLag={"reads": 1, "flap": True})
    _, sp = graph.instantiate("Flapping")
    statuses = [graph.get(f"servicePrincipals/{sp['id']}").status_code for _ in range(5)]
    assert statuses == [404, 200, 404, 200, 200]


@pytest.mark.parametrize("status, code", [(504, "GatewayTimeout"), (404, "Request_ResourceNotFound")])
def test_instantiate_fails_but_creates(emulator_env, graph: GraphClient, status, code):
    emulator_env.admin.set_faults(instantiate={"status": status, "count": 1})
    response = graph.post(f"applicationTemplates/{NON_GALLERY}/instantiate", json={"displayName": "Ghost app"})
    assert_graph_error(response, status, code)
    found = graph.get("servicePrincipals", params={"$filter": "displayName eq 'Ghost app'"}).json()["value"]
    assert len(found) == 1
    assert found[0]["applicationTemplateId"] == NON_GALLERY
    # The caller still owns what was created, so it can clean up or adopt it.
    assert graph.patch(f"servicePrincipals/{found[0]['id']}", json={"tags": ["adopted"]}).status_code == 204
    # Only the scheduled call failed.
    assert graph.post(f"applicationTemplates/{NON_GALLERY}/instantiate", json={"displayName": "Next"}).status_code == 201


@pytest.mark.parametrize(
    "faults",
    [
        {"throttling": {"retryAfter": "sometimes"}},
        {"throttling": {"writes": {"limit": 0}}},
        {"errors": {"rate": 2}},
        {"errors": {"statuses": [418]}},
        {"nonsense": {}},
        {"latency": {"ms": -1}},
        {"replicationLag": {"flap": "yes"}},
    ],
)
def test_bad_fault_settings_are_rejected(emulator_env, faults):
    import requests

    response = requests.post(f"{emulator_env.env['EMULATOR_URL']}/faults", json=faults)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_faults_merge_and_clear(emulator_env):
    admin = emulator_env.admin
    admin.set_faults(latency={"ms": 5})
    merged = admin.set_faults(replace=False, errors={"rate": 0.1})
    assert merged["latency"]["ms"] == 5 and merged["errors"]["rate"] == 0.1
    cleared = admin.clear_faults()
    assert cleared["latency"]["ms"] == 0 and cleared["throttling"]["writes"] == {"limit": 3000, "windowSeconds": 150}
    assert math.isclose(admin.faults()["errors"]["rate"], 0.0)


def test_replication_lag_never_hides_seeded_objects(emulator_env, graph: GraphClient):
    emulator_env.admin.set_faults(replicationLag={"seconds": 600, "reads": 3})
    graph_sp = graph.get("servicePrincipals(appId='00000003-0000-0000-c000-000000000000')")
    assert graph_sp.status_code == 200
    names = {sp["displayName"] for sp in graph.get("servicePrincipals").json()["value"]}
    assert {"Microsoft Graph", "Provisioning fleet (workflow app)"} <= names


@pytest.mark.parametrize("status, code", [(403, "Authorization_RequestDenied"), (409, "Conflict")])
def test_replication_lag_on_sync_calls_can_answer_403_or_409(emulator_env, graph: GraphClient, status, code):
    emulator_env.admin.set_faults(replicationLag={"reads": 1, "syncStatus": status})
    _, sp = graph.instantiate("Transient sync errors")
    assert_graph_error(graph.get(f"servicePrincipals/{sp['id']}/synchronization/templates"), status, code)
    assert graph.get(f"servicePrincipals/{sp['id']}/synchronization/templates").status_code == 200


def test_limit_percentage_header_near_the_quota(emulator_env, graph: GraphClient):
    _, sp = graph.instantiate("Near the quota")
    emulator_env.admin.set_faults(throttling={"writes": {"limit": 10, "windowSeconds": 100}})
    headers = [_write(graph, sp["id"], n).headers for n in range(9)]
    assert "x-ms-throttle-limit-percentage" not in headers[0]
    assert headers[8]["x-ms-throttle-limit-percentage"] == "0.9"


def test_readme_documents_the_real_defaults(emulator_env):
    """emulator/README.md's Faults JSON is the default fault set, and its Settings JSON is accepted."""
    import json
    import re

    from emulator.testing import REPO_ROOT

    readme = (REPO_ROOT / "emulator" / "README.md").read_text(encoding="utf-8")
    faults_doc, settings_doc = (json.loads(block) for block in re.findall(r"```json\n(.*?)```", readme, re.S)[:2])
    assert emulator_env.admin.faults() == faults_doc
    changed = emulator_env.admin.provisioning_settings(**settings_doc["provisioning"])
    assert all(changed[key] == value for key, value in settings_doc["provisioning"].items())
    assert emulator_env.admin.settings(**settings_doc["directory"])["directory"] == settings_doc["directory"]


# -- read replicas (replicationLag.replicas, emulator/replication.py) ------------------------------

REPLICAS = [0, 600]  # one current replica, one 600 simulated seconds behind


def _statuses(graph: GraphClient, path: str, n: int = 30) -> list[int]:
    return [graph.get(path).status_code for _ in range(n)]


def _replicas_seen(emulator_env, path_contains: str) -> set:
    return {e["replica"] for e in emulator_env.admin.requests(pathContains=path_contains)["value"]}


def test_replicas_are_off_by_default(emulator_env, graph: GraphClient):
    assert emulator_env.admin.faults()["replicationLag"]["replicas"] == []
    _, sp = graph.instantiate("Single copy")
    assert set(_statuses(graph, f"servicePrincipals/{sp['id']}", 5)) == {200}
    assert _replicas_seen(emulator_env, sp["id"]) == {None}


def test_a_new_object_flips_between_replicas_then_converges(emulator_env, graph: GraphClient):
    emulator_env.admin.set_faults(replicationLag={"replicas": REPLICAS})
    app, sp = graph.instantiate("Replicated app")
    statuses = _statuses(graph, f"servicePrincipals/{sp['id']}")
    # Successive reads land on different replicas: found, then not found, then found again.
    assert 200 in statuses and 404 in statuses
    first_hit = statuses.index(200)
    assert 404 in statuses[first_hit:], statuses
    assert _replicas_seen(emulator_env, sp["id"]) == {0, 1}
    listed = [len(graph.get("servicePrincipals", params={"$filter": "displayName eq 'Replicated app'"}).json()["value"])
              for _ in range(30)]
    assert set(listed) == {0, 1}
    # Writes on a replica that has not seen the creation answer 404, as reads do; on the other they work.
    patched = [graph.patch(f"applications/{app['id']}", json={"notes": f"n{i}"}).status_code for i in range(20)]
    assert set(patched) == {204, 404}
    emulator_env.admin.advance(601)
    assert set(_statuses(graph, f"servicePrincipals/{sp['id']}")) == {200}
    assert set(_statuses(graph, f"applications/{app['id']}")) == {200}


def test_a_patch_reaches_each_replica_at_its_own_time(emulator_env, graph: GraphClient):
    _, sp = graph.instantiate("Retagged app")
    emulator_env.admin.set_faults(replicationLag={"replicas": REPLICAS})
    emulator_env.admin.advance(601)  # the creation has reached every replica
    before = tuple(sp["tags"])
    assert graph.patch(f"servicePrincipals/{sp['id']}", json={"tags": ["new-tag"]}).status_code == 204
    seen = [tuple(graph.get(f"servicePrincipals/{sp['id']}").json()["tags"]) for _ in range(30)]
    assert set(seen) == {before, ("new-tag",)}  # the lagging replica still shows the tags before the PATCH
    by_tag = {len(graph.get("servicePrincipals", params={"$filter": "tags/any(t:t eq 'new-tag')"}).json()["value"])
              for _ in range(30)}
    assert by_tag == {0, 1}
    emulator_env.admin.advance(601)
    assert {tuple(graph.get(f"servicePrincipals/{sp['id']}").json()["tags"]) for _ in range(10)} == {("new-tag",)}


def test_a_deleted_object_lingers_on_a_lagging_replica(emulator_env, graph: GraphClient):
    app, sp = graph.instantiate("Deleted app")
    emulator_env.admin.set_faults(replicationLag={"replicas": REPLICAS})
    emulator_env.admin.advance(601)  # the creation has reached every replica
    assert graph.delete(f"applications/{app['id']}").status_code == 204
    # The application and its service principal: still read (and listed) on the lagging replica.
    assert set(_statuses(graph, f"applications/{app['id']}")) == {200, 404}
    assert set(_statuses(graph, f"servicePrincipals/{sp['id']}")) == {200, 404}
    listed = {len(graph.get("applications", params={"$filter": "displayName eq 'Deleted app'"}).json()["value"])
              for _ in range(30)}
    assert listed == {0, 1}
    # A write reaches the one true copy: gone, wherever the request lands.
    assert {graph.patch(f"applications/{app['id']}", json={"notes": "x"}).status_code for _ in range(10)} == {404}
    emulator_env.admin.advance(601)
    assert set(_statuses(graph, f"applications/{app['id']}")) == {404}
    assert graph.get("applications", params={"$filter": "displayName eq 'Deleted app'"}).json()["value"] == []


def test_sync_calls_on_a_replica_without_the_service_principal_answer_the_sync_status(emulator_env, graph: GraphClient):
    emulator_env.admin.set_faults(replicationLag={"replicas": REPLICAS, "syncStatus": 409})
    _, sp = graph.instantiate("Replicated sync target")
    statuses = _statuses(graph, f"servicePrincipals/{sp['id']}/synchronization/templates", 20)
    assert set(statuses) == {200, 409}
    emulator_env.admin.advance(601)
    assert set(_statuses(graph, f"servicePrincipals/{sp['id']}/synchronization/templates", 10)) == {200}


def test_replica_routing_follows_the_seed():
    from emulator.clock import Clock
    from emulator.faults import Faults

    def route(seed: int) -> list:
        faults = Faults(Clock(), seed, {"replicationLag": {"replicas": [0, 1, 2]}})
        return [faults.pick_replica() for _ in range(20)]

    assert route(7) == route(7) and route(7) != route(8)
    assert {r[0] for r in route(7)} == {0, 1, 2}
    assert Faults(Clock(), 7).pick_replica() is None


@pytest.mark.parametrize("replicas", [[-1], ["5"], [True], 3, [0] * 17])
def test_bad_replica_settings_are_rejected(emulator_env, replicas):
    import requests

    response = requests.post(f"{emulator_env.env['EMULATOR_URL']}/faults", json={"replicationLag": {"replicas": replicas}})
    assert response.status_code == 400
    assert "replicas" in response.json()["error"]["message"]


def test_an_infinite_replica_lag_is_rejected():
    from emulator.errors import GraphError
    from emulator.faults import validate_faults

    with pytest.raises(GraphError):
        validate_faults({"replicationLag": {"replicas": [0, float("inf")]}})


def test_each_replica_shows_the_writes_in_order_at_its_own_lag(emulator_env, graph: GraphClient):
    _, sp = graph.instantiate("Written twice")
    emulator_env.admin.set_faults(replicationLag={"replicas": [0, 10, 600]})
    emulator_env.admin.advance(601)
    path = f"servicePrincipals/{sp['id']}"
    assert graph.patch(path, json={"tags": ["a"]}).status_code == 204
    emulator_env.admin.advance(5)
    assert graph.patch(path, json={"tags": ["b"]}).status_code == 204
    emulator_env.admin.advance(6)  # "a" is 11 s old, "b" 6 s: the 10-s replica has "a" only
    seen = {tuple(graph.get(path).json()["tags"]) for _ in range(40)}
    assert seen == {tuple(sp["tags"]), ("a",), ("b",)}
    emulator_env.admin.advance(600)
    assert {tuple(graph.get(path).json()["tags"]) for _ in range(10)} == {("b",)}


def test_a_new_job_flips_between_replicas_too(emulator_env, graph: GraphClient):
    _, sp = graph.instantiate("Replicated job")
    emulator_env.admin.set_faults(replicationLag={"replicas": REPLICAS})
    emulator_env.admin.advance(601)
    job = graph.post(f"servicePrincipals/{sp['id']}/synchronization/jobs", json={"templateId": "scim"})
    assert job.status_code == 201  # the SP is on every replica by now
    path = f"servicePrincipals/{sp['id']}/synchronization/jobs/{job.json()['id']}"
    assert set(_statuses(graph, path, 20)) == {200, 404}
    emulator_env.admin.advance(601)
    assert set(_statuses(graph, path, 10)) == {200}


def test_write_records_every_replica_has_seen_are_dropped():
    from types import SimpleNamespace

    from emulator import replication

    directory = SimpleNamespace(changes={}, created_at={}, applications={})
    for n in range(1001):
        replication.record_change(directory, "applications", f"id-{n}", {"id": f"id-{n}"}, now=0.0, keep_seconds=60)
    assert len(directory.changes) == 1001
    # Deleted objects (no live copy) are listed by a replica 60 s behind until their delete is 60 s old.
    assert len(replication.listed(directory, "applications", lag=60, now=59.0)) == 1001
    assert replication.listed(directory, "applications", lag=60, now=60.0) == []
    replication.record_change(directory, "applications", "id-new", {"id": "id-new"}, now=61.0, keep_seconds=60)
    assert list(directory.changes) == ["id-new"]
