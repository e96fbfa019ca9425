"""The Durable engine inside a real ``python -m devhost start`` process: ``--virtual-clock`` from the
command line, logs that name the function, the instance id and the invocation id, read back from
the process's own log, and the keys of the Durable HTTP API."""
from __future__ import annotations

import json
import re

import requests

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
        clock = host.get("/runtime/webhooks/durabletask/devhost/clock").json()  # system key added
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


def test_durable_http_api_needs_the_system_key_and_durable_clients_use_the_local_endpoint(tmp_path):
    """As in Azure: /runtime/webhooks/durabletask takes the durabletask_extension system key or the master
    key, never none or the function key; the binding's URLs carry the system key; durable clients call
    the keyless rpcBaseUrl (loopback only)."""
    state = tmp_path / "state"
    host = start_devhost(APPS / "durable_app" / "function_app.py", state)
    try:
        api = "/runtime/webhooks/durabletask"
        refused = [host.post(f"{api}/orchestrators/durable_chain", key=False).status_code,
                   host.get(f"{api}/instances/", key=False).status_code,
                   host.get(f"{api}/instances/", headers={"x-functions-key": host.function_key}).status_code]
        by_system = host.post(f"{api}/orchestrators/durable_chain/auth-1", json=json.dumps({"a": "Keys"}))
        by_master = host.get(f"{api}/instances/", params={"code": host.master_key}, key=False)
        status = host.wait_for_instance("auth-1", timeout=60)  # devhost.testing sends the system key
        binding = json.loads(host.client_binding_json())
        rpc = requests.get(binding["rpcBaseUrl"] + "instances/auth-1", timeout=30)  # keyless, from loopback
        started = host.post("/api/durable_start/durable_chain", json={"a": "Client"}, key=False)  # SDK via rpc
        via_client = host.wait_for_instance(started.json()["id"], timeout=60)
        polled = requests.get(started.json()["statusQueryGetUri"], timeout=30)  # carries code=<system key>
        keys = json.loads((state / "keys.json").read_text())
        logs = host.log_text()
    finally:
        host.stop()
    assert refused == [401, 401, 401]
    assert by_system.status_code == 202 and by_master.status_code == 200
    assert status["output"] == ["Hello Keys!", "Hello London!"]
    assert host.system_key and keys["systemKeys"]["durabletask_extension"] == host.system_key
    assert host.system_key not in (host.function_key, host.master_key)
    assert binding["rpcBaseUrl"] == f"{host.base_url}/durabletask/"
    assert binding["requiredQueryStringParameters"] == f"code={host.system_key}"
    assert binding["managementUrls"]["statusQueryGetUri"].endswith(f"&code={host.system_key}")
    assert rpc.status_code == 200 and rpc.json()["runtimeStatus"] == "Completed"
    assert via_client["runtimeStatus"] == "Completed" and polled.status_code == 200
    assert f"System key (durabletask_extension): {host.system_key}" in logs
