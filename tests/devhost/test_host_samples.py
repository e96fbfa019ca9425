"""End to end through a devhost subprocess: the samples-v2 equivalents (function chaining, fan-out/fan-in
with Azurite blobs, blueprint) and the SDK's DurableOrchestrationClient in HTTP and queue triggers."""

from __future__ import annotations

import asyncio
import json

import pytest
import requests
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from devhost.testing import close_sdk_session, start_devhost
from host_support import APPS, azurite_connection_string

pytestmark = pytest.mark.timeout(180)


def test_function_chaining_sample_via_check_status_response(tmp_path):
    host = start_devhost(APPS / "host_sample_chaining" / "function_app.py", tmp_path / "state")
    try:
        r = requests.post(host.url("/api/orchestrators/my_orchestrator"), timeout=30)  # anonymous app
        assert r.status_code == 202
        payload = r.json()
        assert r.headers["Location"] == payload["statusQueryGetUri"]
        assert payload["statusQueryGetUri"].startswith(host.base_url + "/runtime/webhooks/durabletask/instances/")
        assert {"sendEventPostUri", "terminatePostUri", "purgeHistoryDeleteUri", "restartPostUri"} <= set(payload)
        status = host.wait_for_instance(payload["id"], timeout=60)
        assert status["runtimeStatus"] == "Completed"
        assert status["output"] == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
        # the statusQueryGetUri the SDK built is directly usable
        polled = requests.get(payload["statusQueryGetUri"], timeout=30)
        assert polled.status_code == 200 and polled.json()["output"] == status["output"]

        # a crash and restart keeps the finished instance (state folder persists)
        host.restart(kill=True)
        assert host.get_status(payload["id"])["runtimeStatus"] == "Completed"
    finally:
        host.stop()


def test_blueprint_sample_needs_key_and_completes(tmp_path):
    host = start_devhost(APPS / "host_sample_blueprint" / "function_app.py", tmp_path / "state",
                         function_key="fixed-test-key")
    try:
        assert host.function_key == "fixed-test-key"
        assert host.get("/api/startOrchestrator", key=False).status_code == 401
        r = host.get("/api/startOrchestrator")
        assert r.status_code == 202
        status = host.wait_for_instance(r.json()["id"], timeout=60)
        assert status["runtimeStatus"] == "Completed"
        assert status["output"] == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
        r = requests.get(host.url("/api/HttpTrigger?name=devhost&code=fixed-test-key"), timeout=30)
        assert r.text == "Hello, devhost. This HTTP triggered function executed successfully."
        assert host.stop() == 0  # graceful stop: SIGTERM, clean exit
        assert not (tmp_path / "state" / "devhost.ready.json").exists()
    finally:
        host.stop()


def test_fan_in_fan_out_sample_copies_files_to_azurite_blobs(tmp_path):
    site = tmp_path / "site"
    files = {"E2_alpha/__init__.py": b"print('a')\n", "E2_alpha/function.json": b'{"bindings": []}',
             "E2_beta/__init__.py": b"x = 1\n", "gamma/readme.txt": b"hello blobs"}
    for rel, data in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
    conn = azurite_connection_string()
    host = start_devhost(APPS / "host_sample_fan_out" / "function_app.py", tmp_path / "state",
                         env={"AzureWebJobsStorage": conn})
    try:
        r = host.post("/api/orchestrators/E2_BackupSiteContent", json=str(site), key=False)
        assert r.status_code == 202
        status = host.wait_for_instance(r.json()["id"], timeout=90)
        assert status["runtimeStatus"] == "Completed", status
        assert status["output"] == sum(len(v) for v in files.values())
        container = BlobServiceClient.from_connection_string(conn).get_container_client("backups")
        blobs = {b.name: b.size for b in container.list_blobs()}
        assert blobs == {"E2_alpha___init__.py": 11, "E2_alpha_function.json": 16, "E2_beta___init__.py": 6,
                         "gamma_readme.txt": 11}
        # no input: the orchestrator raises, the instance is Failed with the reason
        r = host.post("/api/orchestrators/E2_BackupSiteContent", json="", key=False)
        failed = host.wait_for_instance(r.json()["id"], timeout=60)
        assert failed["runtimeStatus"] == "Failed"
        assert "A directory path is required as input" in failed["output"]
    finally:
        host.stop()


@pytest.fixture(scope="module")
def starters(tmp_path_factory):
    root = tmp_path_factory.mktemp("starters")
    conn = azurite_connection_string()
    host = start_devhost(APPS / "host_starters" / "function_app.py", root / "state", env={"AzureWebJobsStorage": conn})
    host.connection_string = conn  # type: ignore[attr-defined]
    yield host
    host.stop()


def test_durable_client_in_http_trigger_with_explicit_instance_id(starters):
    r = starters.post("/api/start/greet_all/order-1", json=["ann", "bob"])
    assert r.status_code == 202
    assert r.json()["id"] == "order-1"
    status = starters.wait_for_instance("order-1", timeout=60)
    assert status["output"] == {"greetings": ["hi ann", "hi bob"]}
    assert status["customStatus"] == {"count": 2}
    assert status["input"] == json.dumps(["ann", "bob"])  # status input is the JSON text (double encoding)
    assert "StartersHub" in r.json()["statusQueryGetUri"]  # host.json hubName


def test_wait_for_completion_returns_the_output(starters):
    r = starters.post("/api/run/greet_all", json=["cy"])
    assert r.status_code == 200
    assert r.json() == {"greetings": ["hi cy"]}


def test_durable_client_in_queue_trigger(starters):
    # host_starters' host.json sets messageEncoding "none": plain text messages, no base64 policy
    q = QueueClient.from_connection_string(starters.connection_string, "host-starts")
    try:
        q.create_queue()
    except Exception:
        pass
    q.send_message(json.dumps({"id": "from-queue-1", "names": ["q1", "q2", "q3"]}))
    status = starters.wait_for_instance("from-queue-1", timeout=60)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == {"greetings": ["hi q1", "hi q2", "hi q3"]}


def test_sdk_client_from_the_testing_handle(starters):
    """The real DurableOrchestrationClient bound to devhost (one event loop: the SDK caches its session)."""
    async def scenario():
        client = starters.durable_client()
        try:
            iid = await client.start_new("greet_all", "sdk-client-1", ["zed"])
            for _ in range(600):
                status = await client.get_status(iid)
                if status.runtime_status and status.runtime_status.name == "Completed":
                    break
                await asyncio.sleep(0.05)
            return iid, status
        finally:
            await close_sdk_session()

    iid, status = asyncio.run(scenario())
    assert iid == "sdk-client-1"
    assert status.runtime_status.name == "Completed"
    assert status.output == {"greetings": ["hi zed"]}
