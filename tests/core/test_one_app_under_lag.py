"""Exactly one application per instance when the tag write after instantiate fails (time-based lag).

Why this test exists: ``instantiate`` is not idempotent, and a new service principal is missing from
``$filter`` lists for a while (replication lag by time). If ensure_application raised after a
successful instantiate - because the tag PATCH right after it answered 404 (the SP had not
replicated yet), 429 or 5xx - the orchestrator's retry looked up by tag and name, did not see the
new SP yet, and instantiated again: two applications for one instance. Now instantiate's success is
final for the activity, and wait_until_visible applies the tags once the SP reads back.

Also here: the same under lag across read replicas (emulator fault ``replicationLag.replicas``),
where a read may find the new object and the next one not.
"""

from __future__ import annotations

import json

import pytest

import activities
from core_support import CUSTOM_TEMPLATE_ID, HEALTHY_CREDENTIALS, SEEDED_SECRETS, graph_requests
from core import clients, errors, model, names

NAME = "Lagging app"
LAG_SECONDS = 600  # simulated seconds; far longer than the activity's 3 s visibility wait (FAST)


def call(name: str, payload: dict) -> dict:
    """The registered activity, as the worker calls it."""
    result = getattr(activities, name)(payload)
    assert not any(v in json.dumps(result) for v in SEEDED_SECRETS.values())
    return result


def call_like_the_orchestrator(name: str, payload: dict, attempts: int = 3) -> dict | None:
    """Call again after a raised (transient) failure, as ``call_activity_with_retry`` does."""
    for _ in range(attempts):
        try:
            return call(name, payload)
        except errors.TransientError:
            continue
    return None


def service_principals_named(emu, name: str) -> list[dict]:
    """The emulator's own view (no replication lag), to count what really exists."""
    return [sp for sp in list(emu.state.directory.service_principals.values()) if sp.get("displayName") == name]


@pytest.mark.timeout(60)
def test_time_lag_and_a_failing_tag_write_leave_exactly_one_application(core_env):
    core_env.admin.set_faults(replicationLag={"seconds": LAG_SECONDS})
    key = model.instance_key(NAME)
    created = call_like_the_orchestrator(names.ENSURE_APPLICATION, {
        "batchId": "b", "instanceKey": key, "displayName": NAME, "templateId": CUSTOM_TEMPLATE_ID,
        "labels": {"env": "prod"}})
    assert len(service_principals_named(core_env, NAME)) == 1, "instantiated more than once"
    assert created is not None and created["ok"] and created["created"] is True and created["tagged"] is False
    assert [p["status"] for p in graph_requests(core_env, method="POST", pathContains="/instantiate")] == [201]
    sp_id = created["servicePrincipalId"]
    visible_request = {"servicePrincipalId": sp_id, "applicationId": created["applicationId"], "instanceKey": key,
                       "labels": {"env": "prod"}}

    # Still replicating: wait_until_visible gives up (transient) and writes nothing.
    with pytest.raises(errors.TransientError):
        call(names.WAIT_UNTIL_VISIBLE, visible_request)
    assert graph_requests(core_env, method="PATCH") == []

    # Replicated, but the tag write is throttled: a throttled result, no duplicate, tags not yet there.
    core_env.admin.advance(LAG_SECONDS + 1)
    core_env.admin.set_faults(replicationLag={"seconds": LAG_SECONDS},
                              throttling={"enabled": True, "writes": {"limit": 1, "windowSeconds": 120}})
    clients.get_graph().patch(f"/applications/{created['applicationId']}", {"description": "takes the write token"})
    throttled = call(names.WAIT_UNTIL_VISIBLE, visible_request)
    assert throttled["ok"] is False and throttled["error"]["kind"] == "throttled"
    assert f"{model.instance_tag('entra-provisioning-fleet', key)}" not in service_principals_named(core_env, NAME)[0]["tags"]

    # After the wait the orchestrator calls it again: visible, tagged with the full list.
    core_env.admin.advance(121)
    visible = call(names.WAIT_UNTIL_VISIBLE, visible_request)
    assert visible["ok"] and visible["visible"] is True and visible["tagged"] is True
    (sp,) = service_principals_named(core_env, NAME)
    assert {"entra-provisioning-fleet", model.instance_tag("entra-provisioning-fleet", key),
            "entra-provisioning-fleet:label:env=prod", "WindowsAzureActiveDirectoryIntegratedApp"} <= set(sp["tags"])

    # A re-run of both steps finds the same instance by its tag and writes nothing more.
    patches = len(graph_requests(core_env, method="PATCH"))
    again = call(names.ENSURE_APPLICATION, {"batchId": "b", "instanceKey": key, "displayName": NAME,
                                            "templateId": CUSTOM_TEMPLATE_ID, "labels": {"env": "prod"}})
    assert again["servicePrincipalId"] == sp_id and again["created"] is False and again["tagged"] is True
    assert call(names.WAIT_UNTIL_VISIBLE, visible_request)["tagged"] is True
    assert len(graph_requests(core_env, method="PATCH")) == patches
    assert len(service_principals_named(core_env, NAME)) == 1


#: two current read replicas and one that stays 600 simulated seconds behind for the whole test:
#: every read has a one-in-three chance of not finding a new object (or of seeing it as it was)
REPLICAS = [0, 0, 600]


@pytest.mark.timeout(120)
def test_flip_flop_replicas_leave_exactly_one_application_and_one_job(core_env, monkeypatch):
    core_env.admin.set_faults(replicationLag={"replicas": REPLICAS})
    key = model.instance_key(NAME)
    created = call_like_the_orchestrator(names.ENSURE_APPLICATION, {
        "batchId": "b", "instanceKey": key, "displayName": NAME, "templateId": CUSTOM_TEMPLATE_ID})
    assert created is not None and created["created"] is True
    sp_id = created["servicePrincipalId"]
    graph = clients.get_graph()

    def found() -> bool:
        try:
            graph.get(f"/servicePrincipals/{sp_id}")
            return True
        except errors.NotFound:
            return False

    # The fault is on: successive reads of the new SP find it, then not, then find it again.
    reads = [found() for _ in range(20)]
    assert True in reads and False in reads[reads.index(True):], reads

    visible = call_like_the_orchestrator(names.WAIT_UNTIL_VISIBLE, {
        "servicePrincipalId": sp_id, "applicationId": created["applicationId"], "instanceKey": key,
        "credentials": HEALTHY_CREDENTIALS, "displayName": NAME, "templateId": CUSTOM_TEMPLATE_ID, "created": True})
    assert visible is not None and visible["visible"] is True and visible["tagged"] is True
    job = call_like_the_orchestrator(names.ENSURE_JOB, {"servicePrincipalId": sp_id,
                                                        "applicationTemplateId": CUSTOM_TEMPLATE_ID})
    assert job is not None and job["created"] is True
    refs = {"servicePrincipalId": sp_id, "jobId": job["jobId"], "credentials": HEALTHY_CREDENTIALS}
    assert (call_like_the_orchestrator(names.VALIDATE_CREDENTIALS, refs) or {}).get("ok")
    assert (call_like_the_orchestrator(names.SAVE_SECRETS, {**refs, "syncAll": True}) or {}).get("ok")
    assert (call_like_the_orchestrator(names.START_JOB, refs) or {}).get("ok")

    # The same instance set up again (a re-submitted request) while the lagging replica still lacks
    # the SP, and its look-up lands there (routing scripted for that one request): it instantiates a
    # second app. Its wait_until_visible then lists both, keeps the tagged one, and the run discards
    # its own copy, as provision_instance does: one application again.
    route = core_env.state.faults.pick_replica
    first_to_the_lagging_one = iter([(2, 600.0)])
    monkeypatch.setattr(core_env.state.faults, "pick_replica", lambda: next(first_to_the_lagging_one, None) or route())
    again = call_like_the_orchestrator(names.ENSURE_APPLICATION, {
        "batchId": "b2", "instanceKey": key, "displayName": NAME, "templateId": CUSTOM_TEMPLATE_ID})
    assert again is not None and again["ok"] and again["created"] is True
    second = call_like_the_orchestrator(names.WAIT_UNTIL_VISIBLE, {
        "servicePrincipalId": again["servicePrincipalId"], "applicationId": again["applicationId"],
        "instanceKey": key, "displayName": NAME, "templateId": CUSTOM_TEMPLATE_ID, "created": True})
    assert second is not None and second.get("yielded") and second["kept"]["servicePrincipalId"] == sp_id
    assert (call_like_the_orchestrator(names.DISCARD_APPLICATION, {**second["discard"], "instanceKey": key})
            or {}).get("deleted") is True
    job_again = call_like_the_orchestrator(names.ENSURE_JOB, {"servicePrincipalId": sp_id,
                                                              "applicationTemplateId": CUSTOM_TEMPLATE_ID})
    assert job_again is not None and job_again["jobId"] == job["jobId"] and job_again["created"] is False

    (sp,) = service_principals_named(core_env, NAME)
    assert model.instance_tag("entra-provisioning-fleet", key) in sp["tags"]
    assert len([a for a in list(core_env.state.directory.applications.values()) if a["displayName"] == NAME]) == 1
    assert [j["id"] for j in core_env.state.provisioning.list_jobs(sp_id)] == [job["jobId"]]
    assert [p["status"] for p in graph_requests(core_env, method="POST", pathContains="/instantiate")] == [201, 201]
    assert [p["status"] for p in graph_requests(core_env, method="POST", routeContains="/jobs")
            if p["route"].endswith("/synchronization/jobs")] == [201]
    # The lagging replica answered some of the app's requests: the flip-flop was really exercised.
    lagging = [e for e in graph_requests(core_env) if e["replica"] == 2 and sp_id in e["path"]]
    assert any(e["status"] == 404 for e in lagging)


def test_a_discard_that_lands_on_a_lagging_replica_deletes_the_copy_all_the_same(ctx, core_env, monkeypatch):
    """A DELETE on a replica the new app has not reached answers 404; that 404 is not "already gone"."""
    from core import steps

    core_env.admin.set_faults(replicationLag={"replicas": [0, 600]})
    copy_ = steps.ensure_application(ctx, batch_id="b", instance_key="k-copy", display_name="Copy to discard",
                                     template_id=CUSTOM_TEMPLATE_ID)
    # The emulator's routing, scripted: the next three Graph requests (the SP read and two DELETEs)
    # land on the replica 600 s behind, the rest on the current one.
    script = iter([(1, 600.0)] * 3)
    monkeypatch.setattr(core_env.state.faults, "pick_replica", lambda: next(script, (0, 0.0)))
    assert steps.discard_application(ctx, application_id=copy_["applicationId"],
                                     service_principal_id=copy_["servicePrincipalId"]) == {"deleted": True}
    assert [d["status"] for d in graph_requests(core_env, method="DELETE")] == [404, 404, 204]
    assert copy_["applicationId"] not in core_env.state.directory.applications
