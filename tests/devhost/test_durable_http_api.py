"""The real ``DurableOrchestrationClient`` against devhost's Durable HTTP API, method by method.

The client is built from ``client_binding_json(engine, base_url)`` exactly as a ``durableClient``
binding would receive it, and talks HTTP to the engine's routes on a local aiohttp server.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os

import aiohttp
import azure.durable_functions as df
import azure.functions as func
import pytest
from aiohttp import web
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus
from azure.durable_functions.models.utils.entity_utils import EntityId

from devhost.app_loader import LoadedApp
from devhost.durable.engine import DurableEngine
from devhost.durable.http_api import client_binding_json, make_routes
from devhost.testing import close_sdk_session

APP_PATH = os.path.join(os.path.dirname(__file__), "apps", "durable_app", "function_app.py")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def app() -> LoadedApp:
    return LoadedApp.load(APP_PATH)


def serve(app, tmp_path, scenario, **engine_options):
    """Run ``scenario(engine, client, base_url)`` with the engine's routes on 127.0.0.1:<free port>."""

    async def main():
        engine = DurableEngine(app, str(tmp_path / "state"), {}, virtual_clock=True, **engine_options)
        await engine.start()
        web_app = web.Application()
        web_app.add_routes(make_routes(engine))
        runner = web.AppRunner(web_app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        base_url = f"http://127.0.0.1:{port}"
        client = df.DurableOrchestrationClient(client_binding_json(engine, base_url))
        try:
            return await scenario(engine, client, base_url)
        finally:
            await close_sdk_session()  # the SDK's global session is bound to this test's loop
            await runner.cleanup()
            await engine.stop()

    return asyncio.run(main())


def test_client_binding_json_shape(app, tmp_path):
    async def scenario(engine, client, base_url):
        return json.loads(client_binding_json(engine, base_url + "/"))

    binding = serve(app, tmp_path, scenario, system_key="XYZ")
    base = binding["baseUrl"]
    assert base.endswith("/runtime/webhooks/durabletask")
    # the client's calls go to the keyless local endpoint (Azure: http://127.0.0.1:17071/durabletask/)
    assert binding["rpcBaseUrl"] == base.removesuffix("/runtime/webhooks/durabletask") + "/durabletask/"
    assert binding["taskHubName"] == "TestHubName"
    assert binding["requiredQueryStringParameters"] == "code=XYZ"
    assert binding["creationUrls"]["createNewInstancePostUri"] == f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?code=XYZ"
    urls = binding["managementUrls"]
    assert urls["id"] == "INSTANCEID"
    assert urls["statusQueryGetUri"] == f"{base}/instances/INSTANCEID?taskHub=TestHubName&connection=Storage&code=XYZ"
    assert urls["terminatePostUri"] == f"{base}/instances/INSTANCEID/terminate?reason={{text}}&taskHub=TestHubName&connection=Storage&code=XYZ"
    assert set(urls) == {"id", "statusQueryGetUri", "sendEventPostUri", "terminatePostUri", "rewindPostUri",
                         "purgeHistoryDeleteUri", "restartPostUri", "suspendPostUri", "resumePostUri"}


def test_public_webhook_needs_the_system_or_master_key_and_the_rpc_endpoint_is_local(app, tmp_path):
    """In Azure /runtime/webhooks/durabletask needs the durabletask_extension system key or the master
    key (`code` or `x-functions-key`); the client's own calls go to the keyless local RPC endpoint."""
    async def scenario(engine, client, base_url):
        public = f"{base_url}/runtime/webhooks/durabletask"
        codes = {}
        async with aiohttp.ClientSession() as session:
            for label, kwargs in {"none": {}, "wrong": {"params": {"code": "nope"}},
                                  "system code": {"params": {"code": "sys-key"}},
                                  "master header": {"headers": {"x-functions-key": "master-key"}}}.items():
                async with session.post(f"{public}/orchestrators/durable_wait_forever/k-{len(codes)}", **kwargs) as resp:
                    codes[("start", label)] = resp.status
                async with session.get(f"{public}/instances/", **kwargs) as resp:
                    codes[("list", label)] = resp.status
                async with session.get(f"{public}/devhost/clock", **kwargs) as resp:
                    codes[("clock", label)] = resp.status
            async with session.post(f"{public}/orchestrators/durable_wait_forever/k-key?code=sys-key") as resp:
                check = await resp.json()
            await engine.wait_idle(10)
            async with session.get(check["statusQueryGetUri"]) as resp:  # the key travels in the URL
                polled, location = resp.status, resp.headers["Location"]
            async with session.get(f"{base_url}/durabletask/instances/k-key") as resp:  # keyless, from loopback
                rpc = resp.status
        started = await client.start_new("durable_chain", "k-client")  # through rpcBaseUrl, no key
        done = await engine.wait_for_instance(started, 10)
        return codes, check, polled, location, rpc, done

    codes, check, polled, location, rpc, done = serve(app, tmp_path, scenario, system_key="sys-key",
                                                      master_key="master-key")
    for op in ("start", "list", "clock"):
        assert codes[(op, "none")] == 401 and codes[(op, "wrong")] == 401, op
        assert codes[(op, "system code")] in (200, 202) and codes[(op, "master header")] in (200, 202), op
    assert check["statusQueryGetUri"].endswith("&code=sys-key")
    assert all(url.endswith("&code=sys-key") for key, url in check.items() if key != "id")
    assert polled == 202 and location == check["statusQueryGetUri"]  # Location is the request URL, key included
    assert rpc == 202
    assert done.status == "Completed"


def test_rpc_endpoint_answers_only_peers_on_this_machine():
    from types import SimpleNamespace

    from aiohttp.test_utils import make_mocked_request

    from devhost.durable.http_api import _is_local_peer

    def peer(address, own="10.1.2.3"):
        info = {"peername": (address, 50000), "sockname": (own, 7071)}
        transport = SimpleNamespace(get_extra_info=lambda name, default=None: info.get(name, default))
        return _is_local_peer(make_mocked_request("GET", "/durabletask/instances/", transport=transport))

    assert peer("127.0.0.1") and peer("127.8.9.10") and peer("::1") and peer("::ffff:127.0.0.1")
    assert peer("10.1.2.3")  # this machine through its own address (devhost --host 10.1.2.3)
    assert not peer("10.1.2.4") and not peer("192.168.0.7") and not peer("::ffff:10.9.9.9")


def test_start_status_and_history_through_the_client(app, tmp_path):
    async def scenario(engine, client, base_url):
        iid = await client.start_new("durable_chain", None, {"a": "Tokyo", "b": "London"})
        await engine.wait_for_instance(iid, 30)
        plain = await client.get_status(iid)
        full = await client.get_status(iid, show_history=True, show_history_output=True, show_input=True)
        missing = await client.get_status("nope-nope")
        async with aiohttp.ClientSession() as session:  # raw view of the same responses
            async with session.get(f"{base_url}/runtime/webhooks/durabletask/instances/{iid}") as resp:
                raw_status = resp.status
        with pytest.raises(Exception, match="The function 'durable_nope' doesn't exist"):
            await client.start_new("durable_nope")
        with pytest.raises(Exception, match="invalid"):
            await client.start_new("durable_chain", "@bad")
        return iid, plain, full, missing, raw_status

    iid, plain, full, missing, raw_status = serve(app, tmp_path, scenario)
    assert len(iid) == 32  # Guid "N" format
    assert plain.runtime_status == OrchestrationRuntimeStatus.Completed
    assert plain.output == ["Hello Tokyo!", "Hello London!"]
    assert plain.input_ == '{"a": "Tokyo", "b": "London"}'  # the client's double encoding, kept (devhost/durable/README.md, "Client binding and HTTP API")
    assert raw_status == 200
    assert not missing
    events = full.historyEvents
    assert [e["EventType"] for e in events] == ["ExecutionStarted", "TaskCompleted", "TaskCompleted", "ExecutionCompleted"]
    assert events[1]["FunctionName"] == "durable_hello" and events[1]["Result"] == "Hello Tokyo!"
    assert events[1]["Input"] == "Tokyo" and "ScheduledTime" in events[1]
    assert events[-1]["Result"] == ["Hello Tokyo!", "Hello London!"]


def test_running_status_is_202_and_start_of_a_running_id_is_refused(app, tmp_path):
    async def scenario(engine, client, base_url):
        iid = await client.start_new("durable_wait_forever", "w-1")
        await engine.wait_idle(10)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base_url}/runtime/webhooks/durabletask/instances/{iid}") as resp:
                status, headers = resp.status, dict(resp.headers)
        with pytest.raises(Exception) as refused:
            await client.start_new("durable_wait_forever", "w-1")
        await client.raise_event(iid, "Go", {"ok": True})
        await engine.wait_for_instance(iid, 30)
        done = await client.get_status(iid)
        with pytest.raises(Exception, match="gone"):
            await client.raise_event(iid, "Go", 1)
        with pytest.raises(Exception):
            await client.raise_event("missing-instance", "Go", 1)
        return status, headers, str(refused.value), done

    status, headers, refused, done = serve(app, tmp_path, scenario)
    assert status == 202 and headers["Retry-After"] == "5" and "/instances/w-1" in headers["Location"]
    assert "already exists" in refused
    assert done.output == ['{"ok": true}', "Hello after!"]  # event data arrives as a str (SDK #295)


def test_terminate_suspend_resume_and_query(app, tmp_path):
    async def scenario(engine, client, base_url):
        a = await client.start_new("durable_wait_forever", "q-a")
        b = await client.start_new("durable_wait_forever", "q-b")
        c = await client.start_new("durable_chain", "other-c")
        await engine.wait_idle(10)
        await client.suspend(b, "pause")
        await engine.wait_idle(10)
        suspended = (await client.get_status(b)).runtime_status
        await client.resume(b, "go")
        await engine.wait_idle(10)
        resumed = (await client.get_status(b)).runtime_status
        await client.terminate(a, "bye now")
        await engine.wait_for_instance(a, 10)
        terminated = await client.get_status(a)
        await client.terminate(a, "again")  # 410 is success for the client
        everything = await client.get_status_all()
        running = await client.get_status_by(runtime_status=[OrchestrationRuntimeStatus.Running])
        prefixed = await client.get_status_by(instance_id_prefix="q-")
        now = dt.datetime.now(dt.timezone.utc)
        future = await client.get_status_by(created_time_from=now + dt.timedelta(days=365))
        async with aiohttp.ClientSession() as session:
            url = f"{base_url}/runtime/webhooks/durabletask/instances/?top=2"
            async with session.get(url) as resp:
                page1, token = await resp.json(), resp.headers.get("x-ms-continuation-token")
            async with session.get(url, headers={"x-ms-continuation-token": token}) as resp:
                page2, token2 = await resp.json(), resp.headers.get("x-ms-continuation-token")
        return suspended, resumed, terminated, everything, running, prefixed, future, page1, page2, token2, c

    (suspended, resumed, terminated, everything, running, prefixed, future, page1, page2, token2,
     c) = serve(app, tmp_path, scenario)
    assert suspended == OrchestrationRuntimeStatus.Suspended
    assert resumed == OrchestrationRuntimeStatus.Running
    assert terminated.runtime_status == OrchestrationRuntimeStatus.Terminated and terminated.output == "bye now"
    assert {s.instance_id for s in everything} == {"q-a", "q-b", "other-c"}
    assert [s.instance_id for s in running] == ["q-b"]
    assert {s.instance_id for s in prefixed} == {"q-a", "q-b"}
    assert future == []
    assert len(page1) == 2 and len(page2) == 1 and token2 is None
    assert {p["instanceId"] for p in page1 + page2} == {"q-a", "q-b", "other-c"}


def test_list_pages_at_100_and_shows_input_by_default(app, tmp_path):
    """HttpApiHandler's list: `new OrchestrationStatusQueryCondition()` has PageSize 100 and ShowInput
    true; the next page comes with the x-ms-continuation-token header (the 1.7.0 client ignores it)."""
    async def scenario(engine, client, base_url):
        for i in range(103):
            await engine.start_orchestration("durable_wait_forever", {"n": i}, instance_id=f"l-{i:03d}")
        await engine.wait_idle(30)
        everything = await client.get_status_all()
        url = f"{base_url}/runtime/webhooks/durabletask/instances/"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                page1, token = await resp.json(), resp.headers.get("x-ms-continuation-token")
            async with session.get(url, headers={"x-ms-continuation-token": token}) as resp:
                page2, token2 = await resp.json(), resp.headers.get("x-ms-continuation-token")
            async with session.get(url + "?showInput=false&top=3") as resp:
                hidden = await resp.json()
        return everything, page1, token, page2, token2, hidden

    everything, page1, token, page2, token2, hidden = serve(app, tmp_path, scenario)
    assert len(everything) == 100
    assert all(s.input_ is not None for s in everything)
    assert json.loads(everything[0].input_) == {"n": 0}
    assert len(page1) == 100 and token and len(page2) == 3 and token2 is None
    assert {p["instanceId"] for p in page1 + page2} == {f"l-{i:03d}" for i in range(103)}
    assert len(hidden) == 3 and all(p["input"] is None for p in hidden)


def test_purge_restart_rewind_and_check_status_responses(app, tmp_path):
    async def scenario(engine, client, base_url):
        iid = await client.start_new("durable_chain", "p-1", {"a": "x"})
        await engine.wait_for_instance(iid, 10)
        restarted_new = await client.restart(iid)  # the extension answers with a check-status payload
        restarted_same = await client.restart(iid, restart_with_new_instance_id=False)
        await engine.wait_idle(10)
        same_status = await client.get_status(iid)
        purged = await client.purge_instance_history(iid)
        purged_again = await client.purge_instance_history(iid)
        start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
        by = await client.purge_instance_history_by(created_time_from=start,
                                                    runtime_status=[OrchestrationRuntimeStatus.Completed])
        none_left = await client.purge_instance_history_by(created_time_from=start)
        # rewind: a failed instance runs its failed activity again
        key = f"http-rw-{os.getpid()}"
        failing = await client.start_new("durable_blocked_flaky", "rw-1", {"key": key, "fail_times": 1})
        await engine.wait_for_instance(failing, 10)
        await client.rewind(failing, "try again")
        rewound = await engine.wait_for_instance(failing, 10)
        with pytest.raises(Exception, match="only supported on failed"):
            await client.rewind(failing, "no")
        # HTTP-facing helpers built from the binding
        request = func.HttpRequest("POST", "http://myhost:8080/api/start", body=b"")
        check = client.create_check_status_response(request, "abc")
        payload = client.create_http_management_payload("abc")
        waited = await client.wait_for_completion_or_create_check_status_response(request, failing, 2000, 100)
        entity = await client.read_entity_state(EntityId("counter", "k1"))
        with pytest.raises(Exception):
            await client.signal_entity(EntityId("counter", "k1"), "add", 1)
        return (restarted_new, restarted_same, same_status, purged, purged_again, by, none_left, rewound, check,
                payload, waited, entity)

    (restarted_new, restarted_same, same_status, purged, purged_again, by, none_left, rewound, check, payload,
     waited, entity) = serve(app, tmp_path, scenario)
    assert restarted_new["id"] != "p-1" and restarted_new["statusQueryGetUri"].endswith(
        f"/instances/{restarted_new['id']}?taskHub=TestHubName&connection=Storage")
    assert "rewindPostUri" not in restarted_new
    assert restarted_same["id"] == "p-1"
    assert same_status.runtime_status == OrchestrationRuntimeStatus.Completed and same_status.output[0] == "Hello x!"
    assert purged.instances_deleted == 1 and purged_again.instances_deleted == 0
    assert by.instances_deleted == 1  # the restarted copy with a new id
    assert none_left.instances_deleted == 0
    assert rewound.status == "Completed" and json.loads(rewound.output) == "ok after 2 calls"
    assert check.status_code == 202
    assert json.loads(check.get_body())["statusQueryGetUri"].startswith("http://myhost:8080/runtime/webhooks/durabletask/instances/abc?")
    assert payload["id"] == "abc"
    assert waited.status_code == 200 and waited.get_body() == b"ok after 2 calls"
    assert entity.entity_exists is False


def test_durable_client_function_starts_an_orchestration(app, tmp_path):
    async def scenario(engine, client, base_url):
        app.client_binding_json = client_binding_json(engine, base_url)
        request = func.HttpRequest("POST", f"{base_url}/api/durable_start/durable_chain", body=b'{"a": "HTTP"}',
                                   route_params={"name": "durable_chain"})
        response = await app.call_function("durable_http_start", req=request)
        body = json.loads(response.get_body())
        row = await engine.wait_for_instance(body["id"], 10)
        return response, body, row

    response, body, row = serve(app, tmp_path, scenario)
    assert response.status_code == 202
    assert body["statusQueryGetUri"].startswith("http://127.0.0.1:")
    assert json.loads(row.output) == ["Hello HTTP!", "Hello London!"]


def test_devhost_clock_route(app, tmp_path):
    async def scenario(engine, client, base_url):
        url = f"{base_url}/runtime/webhooks/durabletask/devhost/clock"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                before = await resp.json()
            async with session.post(url, params={"advanceSeconds": "86400"}) as resp:
                after, status = await resp.json(), resp.status
            async with session.post(url, params={"advanceSeconds": "soon"}) as resp:
                bad = resp.status
        return before, after, status, bad

    before, after, status, bad = serve(app, tmp_path, scenario)
    assert before["virtual"] is True and status == 200 and bad == 400
    gap = dt.datetime.fromisoformat(after["now"].replace("Z", "+00:00")) - \
        dt.datetime.fromisoformat(before["now"].replace("Z", "+00:00"))
    assert gap >= dt.timedelta(days=1)


def test_create_and_wait_uri_answers_with_the_output(app, tmp_path):
    async def scenario(engine, client, base_url):
        binding = json.loads(client_binding_json(engine, base_url))
        template = binding["creationUrls"]["createAndWaitOnNewInstancePostUri"]
        url = template.replace("{functionName}[/{instanceId}]", "durable_chain/cw-1") \
            .replace("{timeoutInSeconds}", "10").replace("{intervalInSeconds}", "1")
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json=json.dumps({"a": "wait"})) as resp:
                return resp.status, await resp.json()

    status, body = serve(app, tmp_path, scenario)
    assert status == 200 and body == ["Hello wait!", "Hello London!"]


def test_operations_on_unknown_and_finished_instances(app, tmp_path):
    """As the extension's HttpApiHandler: terminate/suspend/resume/rewind answer 404 for an unknown id and 410 once it has finished."""

    async def scenario(engine, client, base_url):
        iid = await client.start_new("durable_chain", "op-done", {"a": "x"})
        await engine.wait_for_instance(iid, 10)
        codes = {}
        async with aiohttp.ClientSession() as session:
            for op in ("terminate", "suspend", "resume", "rewind"):
                for target in ("op-done", "op-missing"):
                    url = f"{base_url}/runtime/webhooks/durabletask/instances/{target}/{op}?reason=x"
                    async with session.post(url) as resp:
                        codes[(op, target)] = resp.status
            async with session.post(f"{base_url}/runtime/webhooks/durabletask/instances/op-done/raiseEvent/E",
                                    data="1", headers={"Content-Type": "text/plain"}) as resp:
                codes["raiseEvent text/plain"] = resp.status
        return codes

    codes = serve(app, tmp_path, scenario)
    for op in ("terminate", "suspend", "resume", "rewind"):
        assert codes[(op, "op-done")] == 410, op
        assert codes[(op, "op-missing")] == 404, op
    assert codes["raiseEvent text/plain"] == 400
