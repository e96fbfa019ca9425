"""Emulator faults on - identity writes throttled at Graph's sustained rate (20 per second, no burst),
10 % of Graph requests answered 503, replication lag on new objects - and every healthy instance
still reaches steady state, once."""

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
    "replicationLag": {"seconds": 3, "reads": 1, "flap": True},
}
# real-time clock (so the 1-second write window is a real second) with short simulated cycles
FAST_CYCLES = {"cycle_start_delay_seconds": 1.0, "initial_seconds_per_object_min": 0.05,
               "initial_seconds_per_object_max": 0.1, "minimum_cycle_seconds": 0.5}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("workflow-faults"), time_scale=1.0, faults=FAULTS,
                    provisioning_settings=FAST_CYCLES,
                    # an instantiate that answered 503 is looked for before retrying; 5 s is plenty here.
                    # Writes paced at 40/s, as if two workers at the default 20/s shared the app's limit:
                    # at 20/s one worker alone never meets a 429, and the 429 path is what this tests.
                    env={"VISIBILITY_WAIT_SECONDS": "5", "GRAPH_WRITES_PER_SECOND": "40"})
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
