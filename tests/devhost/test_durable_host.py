"""The Durable engine inside a real ``python -m devhost start`` process: ``--virtual-clock`` from the
command line, and logs that name the function, the instance id and the invocation id (issue #4, items
7 and 8), read back from the process's own log."""
from __future__ import annotations

import re

import pytest

from devhost.testing import start_devhost
from host_support import APPS

pytestmark = pytest.mark.timeout(120)


def test_virtual_clock_flag_and_logs_name_function_instance_and_invocation(tmp_path):
    host = start_devhost(APPS / "durable_app" / "function_app.py", tmp_path / "state", virtual_clock=True)
    try:
        # a 2-hour timer, then a 10-day (long) timer: with --virtual-clock it completes without waiting
        r = host.post("/api/durable_start/durable_timer", json=2, key=False)
        assert r.status_code == 202, r.text
        timer_id = r.json()["id"]
        status = host.wait_for_instance(timer_id, timeout=60)
        assert status["runtimeStatus"] == "Completed"
        assert abs(status["output"] - (2 * 3600 + 10 * 86400)) < 5  # orchestration time moved by 10 days + 2 h
        clock = host.get("/runtime/webhooks/durabletask/devhost/clock", key=False).json()
        assert clock["virtual"] is True

        r = host.post("/api/durable_start/durable_chain", json={"a": "Logs"}, key=False)
        chain_id = r.json()["id"]
        assert host.wait_for_instance(chain_id, timeout=60)["output"] == ["Hello Logs!", "Hello London!"]
        logs = host.log_text()
    finally:
        host.stop()
    # the HTTP starter, the orchestrator episodes and the activities, each with its ids
    assert re.search(r"Executing 'Functions\.durable_http_start' \(Id=[0-9a-f-]{36}\)", logs)
    assert re.search(rf"Executing orchestrator 'durable_timer' \(instance={timer_id}, invocation=[0-9a-f-]+", logs)
    assert re.search(rf"Orchestrator 'durable_chain' completed \(instance={chain_id}, invocation=[0-9a-f-]+\)", logs)
    activity = re.search(rf"Executing activity 'durable_hello' \(instance={chain_id}, task=0, invocation=([0-9a-f-]+)\)",
                         logs)
    assert activity
    # the worker-style line of the same call carries the same invocation id
    assert f"Executed 'Functions.durable_hello' (Succeeded, Id={activity.group(1)}" in logs
