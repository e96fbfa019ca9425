"""Emulator faults on - identity writes throttled at Graph's sustained rate (20 per second, no burst),
10 % of Graph requests answered 503, replication lag on new objects and across read replicas (a
read may find a new object and the next one not) - and every healthy instance still reaches steady
state, with exactly one application and one job."""

from __future__ import annotations

import pytest
from support import Stack, make_batch

pytestmark = pytest.mark.timeout(300)

COUNT = 24
FAULTS = {
    "throttling": {"writes": {"limit": 20, "windowSeconds": 1}},
    "errors": {"rate": 0.1, "statuses": [503]},
    # time-based lag (real seconds here, time scale 1): a new object answers 404 to every read and
    # write and is missing from $filter lists for 3 s (less than VISIBILITY_WAIT_SECONDS below), then
    # to one more read, and vanishes once more after its first success. The lists matter: a retried
    # ensure_application that instantiated once must never instantiate again while its SP is unlisted.
    # Then three read replicas (emulator/replication.py): each request lands on one at random; one is
    # current, one 2 s and one 6 s behind, so for 3 more seconds a new SP, its job and its tags flip
    # between found and not found (as it was) from one read to the next; a tag PATCH reaches the last
    # replica only 6 s later.
    "replicationLag": {"seconds": 3, "reads": 1, "flap": True, "replicas": [0, 2, 6]},
}
# real-time clock (so the 1-second write window is a real second) with short simulated cycles
FAST_CYCLES = {"cycle_start_delay_seconds": 1.0, "initial_seconds_per_object_min": 0.05,
               "initial_seconds_per_object_max": 0.1, "minimum_cycle_seconds": 0.5}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("workflow-faults"), time_scale=1.0, faults=FAULTS,
                    provisioning_settings=FAST_CYCLES,
                    # an instantiate that answered 503 is looked for before retrying, and a new SP must
                    # read back VISIBILITY_CONSECUTIVE_READS (5) times in a row once the replicas agree
                    # (6 s): 10 s is plenty here.
                    # Writes paced at 40/s, as if two workers at the default 20/s shared the app's limit:
                    # at 20/s one worker alone never meets a 429, and the 429 path is what this tests.
                    env={"VISIBILITY_WAIT_SECONDS": "10", "GRAPH_WRITES_PER_SECOND": "40"})
    yield running
    running.stop()


def test_healthy_instances_reach_steady_state_under_faults(stack):
    body = make_batch("faults-024", COUNT, prefix="Faulty")
    body["instances"][-1]["credentials"]["BaseAddress"] = "https://scim.fabrikam.test/scim/v2"
    body["instances"][-1]["credentials"]["SecretToken"] = {"keyVaultSecret": "scim-fabrikam-token"}
    batch_id = stack.submit(body)
    status = stack.wait(batch_id, timeout=240)
    assert status["runtimeStatus"] == "Completed"
    report = status["output"]
    not_steady = {i["displayName"]: (i["outcome"], i["reason"]) for i in report["instances"]
                  if i["outcome"] != "steadyState"}
    assert not not_steady, not_steady

    log = stack.graph_requests(kind="graph")
    statuses = [entry["status"] for entry in log]
    assert statuses.count(429) > 0, "the write limit was never reached: the test would prove nothing"
    assert statuses.count(503) > 0, "no 503 was injected: the test would prove nothing"
    apps = stack.applications_by_name()
    assert all(apps[i["displayName"]] == 1 for i in body["instances"])
    sps = stack.service_principals_by_name()
    assert all(len(stack.jobs_of(sps[i["displayName"]][0]["id"])) == 1 for i in body["instances"])
    # The replicas really flipped under the app: a request on the lagging replica did not find a
    # service principal (or its job) that an earlier request had found.
    found, flips = set(), 0
    for entry in log:
        parts = entry["path"].split("/")
        if "servicePrincipals" not in parts or parts.index("servicePrincipals") + 1 >= len(parts):
            continue
        sp_id = parts[parts.index("servicePrincipals") + 1]
        if entry["status"] < 300:
            found.add(sp_id)
        elif entry["status"] == 404 and entry["replica"] == 2 and sp_id in found:
            flips += 1
    assert flips > 0, "no read missed an object it had found before: the replicas were not exercised"
