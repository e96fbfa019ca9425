"""Staged rollout through devhost: 12 instances, a canary that regresses stops the rollout after the
canary wave and no other instance is touched (a mapping that fails exports; a scoping filter that takes
every account away); cancel; a dry run writes nothing; a healthy rollout goes through canary (its test
user provisioned on demand) and waves, and a devhost crash mid-rollout resumes at the same wave."""

from __future__ import annotations

import pytest
from support import Stack, make_batch
from polling import wait_until

from core import model

BAD, GOOD = "custom-scim-employee-id.v1", "custom-scim-department.v1"
#: Engineering and Research only: the fleet is assigned SaaS Pilot (Marketing and HR), so it scopes everyone out
SCOPES_EVERYONE_OUT = "custom-scim.v1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("workflow-rollout"), time_scale=30.0)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def fleet(stack):
    batch_id = stack.submit(make_batch("rollout-fleet", 12, prefix="Rollout"))
    status = stack.wait(batch_id, timeout=240)
    assert status["runtimeStatus"] == "Completed", status
    return [model.instance_key(f"Rollout {i:03d}") for i in range(1, 13)]


def _schema_puts(stack: Stack) -> list[str]:
    return [r["path"] for r in stack.graph_requests(kind="graph", method="PUT") if r["path"].endswith("/schema")]


def _rollout(stack: Stack, body: dict) -> str:
    response = stack.request("POST", "/api/rollouts", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _status(stack: Stack, rollout_id: str) -> dict:
    response = stack.request("GET", f"/api/rollouts/{rollout_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_bad_input_is_named(stack, fleet):
    response = stack.request("POST", "/api/rollouts", json={"rolloutId": "x", "profile": "nope.v1",
                                                             "selector": {"instances": ["f" * 20]}, "waveSize": 0})
    assert response.status_code == 400
    paths = {d["path"] for d in response.json()["error"]["details"]}
    assert {"profile", "selector.instances", "waveSize"} <= paths
    not_json = stack.request("POST", "/api/rollouts", data=b"{not json", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "InvalidJson"
    assert stack.request("GET", "/api/rollouts/never-started").status_code == 404
    for action in ("resume", "cancel"):
        assert stack.request("POST", f"/api/rollouts/never-started/{action}").status_code == 404
    unknown = stack.request("POST", "/api/rollouts/never-started/pause")
    assert unknown.status_code == 404 and "resume, cancel" in unknown.json()["error"]["message"]


def test_a_dry_run_plans_every_instance_and_writes_nothing(stack, fleet):
    before = len(_schema_puts(stack))
    rollout_id = _rollout(stack, {"rolloutId": "dry-001", "profile": GOOD, "selector": {"instances": fleet},
                                  "canaries": 2, "waveSize": 5, "dryRun": True})
    status = stack.wait(rollout_id, timeout=60)
    assert status["runtimeStatus"] == "Completed", status.get("output")
    report = status["output"]
    assert report["phase"] == "planned"
    assert [(w["kind"], len(w["instances"])) for w in report["waves"]] == [("canary", 2), ("wave", 5), ("wave", 5)]
    assert all(r["changes"] for w in report["waves"] for r in w["results"].values())
    assert len(_schema_puts(stack)) == before
    view = _status(stack, "dry-001")  # a finished rollout's view is its output
    assert view["runtimeStatus"] == "Completed" and view["phase"] == "planned" and len(view["waves"]) == 3
    finished = stack.request("POST", "/api/rollouts/dry-001/cancel")
    assert finished.status_code == 409 and finished.json()["error"]["code"] == "NotRunning"
    # found in review: the rollout itself under the dry run's rolloutId answered the dry run (202) and applied
    # nothing; another body under a used rolloutId is a 409 naming it (the same body again still answers it)
    real = stack.request("POST", "/api/rollouts", json={"rolloutId": "dry-001", "profile": GOOD,
                                                        "selector": {"instances": fleet}, "canaries": 2, "waveSize": 5})
    assert real.status_code == 409 and real.json()["error"]["code"] == "RolloutIdConflict", real.text
    assert real.json()["error"]["details"][0]["path"] == "rolloutId"
    assert _rollout(stack, {"rolloutId": "dry-001", "profile": GOOD, "selector": {"instances": fleet},
                            "canaries": 2, "waveSize": 5, "dryRun": True}) == rollout_id
    assert len(_schema_puts(stack)) == before


def test_a_regressing_canary_stops_the_rollout_and_touches_no_other_instance(stack, fleet):
    before = len(_schema_puts(stack))
    rollout_id = _rollout(stack, {"rolloutId": "bad-001", "profile": BAD, "selector": {"instances": fleet},
                                  "canaries": [fleet[0]], "waveSize": 4, "pauseSeconds": 1, "maxChecks": 30})
    assert wait_until(lambda: _status(stack, "bad-001").get("phase") == "stopped", timeout=120, interval=0.5)
    status = _status(stack, "bad-001")
    assert status["stopped"]["wave"] == 0 and status["stopped"]["kind"] == "canary"
    reason = status["stopped"]["reasons"][fleet[0]]
    assert "objects failed in the cycle after the change" in reason
    assert [w["status"] for w in status["waves"]] == ["regressed", "pending", "pending", "pending"]
    # exactly one schema PUT (the canary's); no other instance carries the profile
    assert len(_schema_puts(stack)) == before + 1
    for key in fleet[1:]:
        drift = stack.request("GET", f"/api/instances/{key}/drift").json()
        assert drift["profile"] is None, drift
    cancel = stack.request("POST", "/api/rollouts/bad-001/cancel")
    assert cancel.status_code == 202
    assert stack.wait(rollout_id, timeout=30)["runtimeStatus"] == "Terminated"
    assert len(_schema_puts(stack)) == before + 1


def _pilot_user(stack: Stack) -> str:
    directory = stack.emulator.state.directory
    pilot = next(g for g in directory.groups.values() if g["displayName"] == "SaaS Pilot")
    return str(directory.members[pilot["id"]][0])


def test_a_canary_whose_scoping_filter_takes_every_account_away_stops_after_the_canary_wave(stack, fleet):
    """No export fails under a filter that scopes everyone out: the cycle after it disables the accounts
    (and deletes the group) instead. That is the regression, not a healthy wave."""
    chosen = fleet[8:12]
    before = len(_schema_puts(stack))
    _rollout(stack, {"rolloutId": "scope-001", "profile": SCOPES_EVERYONE_OUT, "selector": {"instances": chosen},
                     "canaries": [chosen[0]], "waveSize": 2, "pauseSeconds": 1, "maxChecks": 30,
                     "canaryTestUsers": {chosen[0]: {"objectId": _pilot_user(stack)}}})
    assert wait_until(lambda: _status(stack, "scope-001").get("phase") == "stopped", timeout=120, interval=0.5)
    status = _status(stack, "scope-001")
    assert status["stopped"]["wave"] == 0 and status["stopped"]["kind"] == "canary"
    assert [w["status"] for w in status["waves"]] == ["regressed", "pending", "pending"]
    result = status["waves"][0]["results"][chosen[0]]
    assert "disabled, deleted or skipped as out of scope in the cycle after the change" in result["regression"]
    assert result["failedAfter"] == 0 and result["removedAfter"] > result["removedBefore"]
    assert result["onDemand"]["subject"]["objectTypeName"] == "User"  # the test user was tried on demand
    assert len(_schema_puts(stack)) == before + 1
    for key in chosen[1:]:
        assert stack.request("GET", f"/api/instances/{key}/drift").json()["profile"] is None
    assert stack.request("POST", "/api/rollouts/scope-001/cancel").status_code == 202


def test_a_healthy_rollout_crashed_mid_way_resumes_at_the_same_wave_and_goes_through(stack, fleet):
    # the module's devhost exits with SIGTERM first, so the coverage data of the tests before is saved;
    # only the process this test SIGKILLs loses its share (pyproject: coverage saved on SIGTERM)
    stack.host.restart()
    chosen = fleet[1:8]
    sps = {key: stack.request("GET", f"/api/instances/{key}/drift").json()["servicePrincipalId"] for key in chosen}
    rollout_id = _rollout(stack, {"rolloutId": "crash-001", "profile": GOOD, "selector": {"instances": chosen},
                                  "canaries": [chosen[0]], "waveSize": 3, "pauseSeconds": 2, "maxChecks": 30,
                                  "canaryTestUsers": {chosen[0]: {"objectId": _pilot_user(stack),
                                                                  "objectTypeName": "User"}}})

    def mid_rollout():
        custom = (stack.host.get_status(rollout_id) or {}).get("customStatus") or {}
        waves = custom.get("waves") or []
        return len(waves) == 3 and waves[0]["status"] == "done" and waves[1]["status"] == "watching"

    wait_until(mid_rollout, timeout=120, interval=0.1, what="the first wave after the canary being watched")
    stack.host.kill()
    stack.host.start()
    status = stack.wait(rollout_id, timeout=180)
    assert status["runtimeStatus"] == "Completed", status.get("output")
    report = status["output"]
    assert report["phase"] == "completed" and report["stopped"] is None
    assert [(w["kind"], len(w["instances"]), w["status"]) for w in report["waves"]] == \
        [("canary", 1, "done"), ("wave", 3, "done"), ("wave", 3, "done")]
    canary = report["waves"][0]["results"][chosen[0]]
    assert canary["onDemand"]["outcome"] == "done" and canary["onDemand"]["steps"], canary
    assert all(r["removedAfter"] == 0 and r["scopedOutAfter"] == 0 for w in report["waves"] for r in w["results"].values())
    puts = _schema_puts(stack)
    for key, sp_id in sps.items():  # each instance's schema written exactly once, crash or not
        assert sum(1 for p in puts if sp_id in p) == 1, key
        assert stack.request("GET", f"/api/instances/{key}/drift").json()["profile"] == GOOD
    assert stack.request("POST", "/api/rollouts/crash-001/resume").status_code == 409


def test_rollout_ids_and_canaries_are_checked_before_anything_starts():
    """found in review (no stack needed: parse_rollout is pure): a rolloutId with a trailing newline passed
    ``re.match(...$)`` into the orchestration id, and a canary listed twice was applied twice in the canary wave."""
    from core.errors import InvalidRequest
    from triggers.http_rollouts import parse_rollout

    managed = [{"instanceKey": k, "servicePrincipalId": f"sp-{k}", "labels": {}} for k in ("a" * 20, "b" * 20)]
    body = {"rolloutId": "r-1", "profile": GOOD, "selector": {"instances": ["a" * 20, "b" * 20]}}
    assert parse_rollout(body, managed).canaries == ["a" * 20]
    for bad, path in (({"rolloutId": "r-1\n"}, "rolloutId"), ({"canaries": ["a" * 20, "a" * 20]}, "canaries")):
        with pytest.raises(InvalidRequest) as caught:
            parse_rollout({**body, **bad}, managed)
        assert [p.path for p in caught.value.problems] == [path]
