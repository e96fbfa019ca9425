"""Exactly one application per instance when the tag write after instantiate fails (time-based lag).

Why this test exists: ``instantiate`` is not idempotent, and a new service principal is missing from
``$filter`` lists for a while (replication lag by time). If ensure_application raised after a
successful instantiate - because the tag PATCH right after it answered 404 (the SP had not
replicated yet), 429 or 5xx - the orchestrator's retry looked up by tag and name, did not see the
new SP yet, and instantiated again: two applications for one instance. Now instantiate's success is
final for the activity, and wait_until_visible applies the tags once the SP reads back.
"""

from __future__ import annotations

import json

import pytest

import activities
from core_support import CUSTOM_TEMPLATE_ID, SEEDED_SECRETS, graph_requests
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
