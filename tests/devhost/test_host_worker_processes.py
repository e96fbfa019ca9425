"""FUNCTIONS_WORKER_PROCESS_COUNT: devhost runs activities in that many separate worker processes.

Why: in Azure each instance runs that many Python worker processes, so module state (caches,
pacers) is per process; a host running everything in one process shares it by accident and hides
the bug (as the per-process Graph write pacer once did: core/graph/write_limit.py).
"""
from __future__ import annotations

import pytest

from devhost.testing import start_devhost
from host_support import APPS

pytestmark = pytest.mark.timeout(180)


def test_activities_run_in_that_many_worker_processes_and_failures_keep_their_type(tmp_path):
    host = start_devhost(APPS / "worker_processes" / "function_app.py", tmp_path / "state",
                         env={"FUNCTIONS_WORKER_PROCESS_COUNT": "2"})
    try:
        r = host.post("/api/start/workers_fanout", json=12, key=False)
        assert r.status_code == 202, r.text
        status = host.wait_for_instance(r.json()["id"], timeout=120)
        assert status["runtimeStatus"] == "Completed", status
        results = status["output"]
        assert sorted(x["i"] for x in results) == list(range(12))
        pids = {x["pid"] for x in results}
        host_pid = int(host.get("/api/pid").text)
        assert len(pids) == 2 and host_pid not in pids, (pids, host_pid)
        # module state is per process: no process saw all 12 calls
        assert max(x["callsHere"] for x in results) < 12

        r = host.post("/api/start/workers_failure", json=0, key=False)
        status = host.wait_for_instance(r.json()["id"], timeout=60)
        assert status["runtimeStatus"] == "Completed", status
        assert "ValueError: cannot use bad input" in status["output"], status["output"]

        # an activity declaring the Durable client binding gets it in a worker process too, as in Azure
        r = host.post("/api/start/workers_client", json="child-of-a-worker", key=False)
        status = host.wait_for_instance(r.json()["id"], timeout=60)
        assert status["runtimeStatus"] == "Completed", status
        assert status["output"]["started"] == "child-of-a-worker" and status["output"]["pid"] != host_pid
        child = host.wait_for_instance("child-of-a-worker", timeout=60)
        assert child["runtimeStatus"] == "Completed" and child["output"] == {"child": "child-of-a-worker"}, child
        logs = host.log_text()
    finally:
        host.stop()
    assert "Started 2 worker processes" in logs
    assert "Executed 'Functions.workers_pid' (Succeeded" in logs  # the workers' own log lines reach the log


def test_one_worker_process_by_default_runs_activities_in_the_host(tmp_path):
    host = start_devhost(APPS / "worker_processes" / "function_app.py", tmp_path / "state",
                         env={"FUNCTIONS_WORKER_PROCESS_COUNT": None})
    try:
        r = host.post("/api/start/workers_fanout", json=3, key=False)
        status = host.wait_for_instance(r.json()["id"], timeout=60)
        host_pid = int(host.get("/api/pid").text)
        assert {x["pid"] for x in status["output"]} == {host_pid}
    finally:
        host.stop()
