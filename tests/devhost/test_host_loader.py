"""In-process tests of the app loader (v2 indexing, calling functions as the worker does), the
configuration readers (local.settings.json, host.json, %SETTING%), route templates and storage
connection resolution."""

from __future__ import annotations

import asyncio
import json
import textwrap

import azure.functions as func
import pytest

from devhost.app_loader import LoadedApp, OutValue
from devhost.azurite import resolve_connection
from devhost.config import apply_local_settings, load_host_json, parse_timespan, resolve_setting_refs
from devhost.errors import AppLoadError, ConfigError, FunctionNotFoundError
from devhost.triggers.http import RouteTemplate, build_routes, to_response
from host_support import APPS

LOADER_APP = '''
import json
import azure.functions as func
import azure.durable_functions as df

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    @staticmethod
    def to_json(obj):
        return {"x": obj.x, "y": obj.y}
    @staticmethod
    def from_json(data):
        return Point(data["x"], data["y"])

@app.orchestration_trigger(context_name="context")
def orch(context: df.DurableOrchestrationContext):
    a = yield context.call_activity("double", context.get_input())
    return a

@app.activity_trigger(input_name="n")
def double(n: int) -> int:
    if n < 0:
        raise ValueError("negative input")
    return n * 2

@app.function_name("aliased")
@app.activity_trigger(input_name="p", activity="point_alias")
async def make_point(p: dict) -> Point:
    return Point(p["x"], p["y"])

@app.activity_trigger(input_name="p")
def point_x(p: Point) -> int:
    return p.x

@app.route(route="ctx")
def with_context(req: func.HttpRequest, context: func.Context) -> str:
    return f"{context.function_name}:{len(context.invocation_id)}"

@app.route(route="q")
@app.queue_output(arg_name="out", queue_name="outq", connection="AzureWebJobsStorage")
def http_to_queue(req: func.HttpRequest, out: func.Out[str]) -> str:
    out.set("queued " + req.params.get("v", ""))
    return "ok"

@app.route(route="client")
@app.durable_client_input(client_name="client")
async def with_client(req: func.HttpRequest, client) -> func.HttpResponse:
    return func.HttpResponse(client._orchestration_bindings.task_hub_name)
'''


def _write_app(tmp_path, source: str, name: str = "function_app.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture()
def loaded(tmp_path):
    return LoadedApp.load(str(_write_app(tmp_path, LOADER_APP)))


def test_indexing_gives_names_trigger_types_bindings_and_async_flags(loaded):
    f = loaded.functions
    assert set(f) == {"orch", "double", "aliased", "point_x", "with_context", "http_to_queue", "with_client"}
    assert f["orch"].trigger_type == "orchestrationTrigger" and not f["orch"].is_async
    assert f["aliased"].is_async and f["aliased"].alias == "point_alias"
    assert f["with_client"].input_bindings("durableClient")[0]["name"] == "client"
    assert [b["queueName"] for b in f["http_to_queue"].output_bindings] == ["outq"]
    assert [s.name for s in loaded.by_trigger("activityTrigger")] == ["double", "aliased", "point_x"]


def test_script_root_on_sys_path_and_module_kept(loaded, tmp_path):
    import sys

    assert str(tmp_path) in sys.path
    assert sys.modules["function_app"] is loaded.module


def test_call_orchestrator_returns_sdk_state(loaded):
    payload = json.dumps({"history": [
        {"EventType": 12, "EventId": -1, "IsPlayed": False, "Timestamp": "2024-01-01T00:00:00Z"},
        {"EventType": 0, "EventId": -1, "IsPlayed": False, "Timestamp": "2024-01-01T00:00:00Z",
         "Name": "orch", "Version": "", "Input": "21"}], "input": "21", "instanceId": "i1", "isReplaying": False,
        "parentInstanceId": None, "upperSchemaVersion": 1, "upperSchemaVersionNew": 2})
    state = json.loads(loaded.call_orchestrator("orch", payload))
    assert state["isDone"] is False
    assert state["actions"] == [[{"actionType": 0, "functionName": "double", "input": "21"}]]


def test_call_activity_sync_async_alias_case_and_custom_classes(loaded):
    async def scenario():
        assert await loaded.call_activity("double", "21") == "42"
        assert await loaded.call_activity("DOUBLE", "1") == "2"  # lookup is case-insensitive
        point = await loaded.call_activity("point_alias", json.dumps({"x": 3, "y": 4}))  # async, alias
        assert json.loads(point)["__class__"] == "Point"
        assert await loaded.call_activity("point_x", point) == "3"  # custom class decoded from sys.modules
        with pytest.raises(ValueError, match="negative input"):
            await loaded.call_activity("double", "-1")  # the function's own exception
        with pytest.raises(FunctionNotFoundError):
            await loaded.call_activity("missing", "1")
        with pytest.raises(FunctionNotFoundError):
            await loaded.call_activity("orch", "1")  # an orchestrator is not an activity

    asyncio.run(scenario())


def test_call_function_context_outputs_and_durable_client(loaded):
    req = func.HttpRequest("GET", "http://localhost/api/q?v=7", headers={}, params={"v": "7"}, body=b"")

    async def scenario():
        assert (await loaded.call_function("with_context", req=req)) == "with_context:36"
        res = await loaded.invoke("http_to_queue", {"req": req})
        assert res.return_value == "ok" and res.outputs == {"out": "queued 7"}
        out = OutValue()
        await loaded.call_function("http_to_queue", req=req, out=out)
        assert out.get() == "queued 7"
        with pytest.raises(RuntimeError, match="no Durable engine"):
            await loaded.call_function("with_client", req=req)
        loaded.client_binding_json = json.dumps({"taskHubName": "Hub1", "creationUrls": {}, "managementUrls": {"id": "INSTANCEID"},
                                                 "rpcBaseUrl": "http://127.0.0.1:1/durabletask/"})
        resp = await loaded.call_function("with_client", req=req)
        assert resp.get_body() == b"Hub1"

    asyncio.run(scenario())
    loaded.shutdown()


@pytest.mark.parametrize("source, message", [
    ("import azure.functions as func\n", "ValueError: Could not find top level function app instances in function_app.py"),
    ("import azure.functions as func\na = func.FunctionApp()\nb = func.FunctionApp()\n",
     "ValueError: More than one FunctionApp or other top level function app instances are defined"),
    ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
    ("def broken(:\n", "SyntaxError"),
    ("import azure.functions as func\napp = func.FunctionApp()\n"
     "@app.route(route='a')\ndef f(req): return 'a'\n"
     "@app.function_name('f')\n@app.route(route='b')\ndef g(req): return 'b'\n", "unique function name"),
])
def test_load_errors_are_clear(tmp_path, source, message):
    with pytest.raises(AppLoadError, match=message):
        LoadedApp.load(str(_write_app(tmp_path, source)))


def test_missing_app_file(tmp_path):
    with pytest.raises(AppLoadError, match="app file not found"):
        LoadedApp.load(str(tmp_path / "nope.py"))


def test_loading_a_folder_uses_its_function_app(tmp_path):
    _write_app(tmp_path, LOADER_APP)
    assert "double" in LoadedApp.load(str(tmp_path)).functions


# ----------------------------------------------------------------------------- configuration
def test_local_settings_values_applied_but_environment_wins(tmp_path):
    (tmp_path / "local.settings.json").write_text(json.dumps({
        "IsEncrypted": False, "Values": {"A": "from-file", "B": "from-file", "N": 5, "T": True},
        "Host": {"LocalHttpPort": 7099}}))
    env = {"B": "from-env"}
    result = apply_local_settings(str(tmp_path), env)
    assert env == {"A": "from-file", "B": "from-env", "N": "5", "T": "true"}
    assert result.skipped == ["B"] and result.local_http_port == 7099


def test_local_settings_errors(tmp_path):
    (tmp_path / "local.settings.json").write_text("{not json")
    with pytest.raises(ConfigError, match="local.settings.json .* not valid JSON: line 1"):
        apply_local_settings(str(tmp_path), {})
    (tmp_path / "local.settings.json").write_text(json.dumps({"IsEncrypted": True, "Values": {}}))
    with pytest.raises(ConfigError, match="encrypted"):
        apply_local_settings(str(tmp_path), {})
    assert apply_local_settings(str(tmp_path / "missing"), {}).applied == []


def test_host_json_defaults_and_values(tmp_path):
    d = load_host_json(str(tmp_path))  # no file: defaults
    assert (d.function_timeout, d.route_prefix, d.queues.batch_size, d.queues.max_dequeue_count,
            d.queues.message_encoding, d.queues.max_polling_interval) == (None, "api", 16, 5, "base64", 60.0)
    (tmp_path / "host.json").write_text(json.dumps({
        "version": "2.0", "functionTimeout": "00:10:00", "logging": {"logLevel": {"default": "Warning"}},
        "extensions": {"http": {"routePrefix": ""}, "durableTask": {"hubName": "H", "maxConcurrentActivityFunctions": 3},
                       "queues": {"batchSize": 8, "newBatchThreshold": 2, "maxPollingInterval": "00:00:02",
                                  "visibilityTimeout": "00:00:30", "maxDequeueCount": 3, "messageEncoding": "none"}}}))
    c = load_host_json(str(tmp_path))
    assert c.function_timeout == 600 and c.route_prefix == "" and c.log_levels == {"default": "Warning"}
    assert c.durable_task == {"hubName": "H", "maxConcurrentActivityFunctions": 3}
    q = c.queues
    assert (q.batch_size, q.effective_new_batch_threshold(), q.max_polling_interval, q.visibility_timeout,
            q.max_dequeue_count, q.message_encoding) == (8, 2, 2.0, 30.0, 3, "none")


def test_host_json_problems_reported_together(tmp_path):
    (tmp_path / "host.json").write_text(json.dumps({"functionTimeout": "ten minutes",
                                                    "extensions": {"queues": {"batchSize": 64, "messageEncoding": "utf8"}}}))
    with pytest.raises(ConfigError) as err:
        load_host_json(str(tmp_path))
    text = str(err.value)
    assert "functionTimeout" in text and "batchSize must be 1..32" in text and "messageEncoding" in text


def test_timespans_and_setting_references():
    assert parse_timespan("00:00:00.500") == 0.5
    assert parse_timespan("1.02:03:04") == 93784
    assert resolve_setting_refs("jobs-%ENV_NAME%-%X%", {"ENV_NAME": "dev", "X": "1"}) == "jobs-dev-1"
    with pytest.raises(ConfigError, match="app setting 'MISSING'"):
        resolve_setting_refs("%MISSING%", {})


# ----------------------------------------------------------------------------- routes and responses
@pytest.mark.parametrize("template, path, expected", [
    ("orchestrators/{functionName}", "orchestrators/hello", {"functionName": "hello"}),
    ("orchestrators/{functionName}/{instanceId?}", "orchestrators/hello", {"functionName": "hello"}),
    ("orchestrators/{functionName}/{instanceId?}", "orchestrators/hello/i-1", {"functionName": "hello", "instanceId": "i-1"}),
    ("Items/{id:int}", "items/42", {"id": "42"}),
    ("items/{id:int}", "items/x", None),
    ("items/{id:int:min(10)}", "items/9", None),
    ("items/{id:int:range(1,5)}", "items/5", {"id": "5"}),
    ("files/{*path}", "files/a/b/c.txt", {"path": "a/b/c.txt"}),
    ("v/{name:alpha}", "v/abc", {"name": "abc"}),
    ("v/{name:alpha}", "v/ab1", None),
    ("d/{g:guid}", "d/0f8fad5b-d9cb-469f-a165-70867728950e", {"g": "0f8fad5b-d9cb-469f-a165-70867728950e"}),
    ("p/{page=1}", "p", {"page": "1"}),
    ("r/{code:regex(^[a-z]+$)}", "r/ab", {"code": "ab"}),
    ("r/{code:regex(^[a-z]+$)}", "r/a1", None),
    ("x/{id:unknownconstraint}", "x/anything", {"id": "anything"}),
    ("a/b", "a/b/c", None),
])
def test_route_templates(template, path, expected):
    assert RouteTemplate(template).match(path) == expected


def test_routes_sorted_literals_first_and_defaults(monkeypatch):
    app = LoadedApp.load(str(APPS / "host_basic" / "function_app.py"))
    monkeypatch.setenv("HOST_TEST_ROUTE_NAME", "configured")
    routes = build_routes(app)
    assert any(r.route == "named/configured" for r in routes)
    order = [r.spec.name for r in routes]
    assert order.index("special_item") < order.index("item")
    by_name = {r.spec.name: r for r in routes}
    assert by_name["echo"].methods == {"GET", "POST"} and by_name["echo"].auth_level == "function"
    assert by_name["open_route"].methods is None and by_name["open_route"].auth_level == "anonymous"


def test_response_mapping():
    r = to_response(func.HttpResponse("hi", status_code=418, headers={"X-A": "1"}))
    assert r.status == 418 and r.headers["X-A"] == "1" and r.headers["Content-Type"] == "text/plain; charset=utf-8"
    r = to_response(func.HttpResponse(b"{}", mimetype="application/json"))
    assert r.headers["Content-Type"] == "application/json"
    assert to_response(None).status == 204
    assert to_response("text").text == "text"


# ----------------------------------------------------------------------------- storage connections
def test_storage_connection_resolution():
    dev = resolve_connection("AzureWebJobsStorage", {"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert dev.is_local_emulator and (dev.blob_port, dev.queue_port, dev.table_port) == (10000, 10001, 10002)
    custom = resolve_connection("MyConn", {"MyConn": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=k;"
                                                     "QueueEndpoint=http://127.0.0.1:12345/devstoreaccount1;"})
    assert custom.queue_port == 12345
    cloud = resolve_connection("C", {"C": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=k;EndpointSuffix=core.windows.net"})
    assert not cloud.is_local_emulator
    ident = resolve_connection("Store", {"Store__accountName": "acct"})
    assert ident.queue_account_url == "https://acct.queue.core.windows.net" and ident.connection_string is None
    prefixed = resolve_connection("Storage", {"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert prefixed.setting == "AzureWebJobsStorage"
    with pytest.raises(ConfigError, match="not configured"):
        resolve_connection("Nope", {})
    with pytest.raises(ConfigError, match="not a storage connection string"):
        resolve_connection("Bad", {"Bad": "hello"})


# ----------------------------------------------------------------------------- queue message encoding
def test_queue_message_encoding_rules():
    from devhost.config import QueuesConfig
    from devhost.triggers.queue import QueueClients, _queue_output_messages, decode_body

    assert decode_body("aGVsbG8=", "base64") == "hello"
    assert decode_body("/w==", "base64") == b"\xff"  # not UTF-8: bytes
    assert decode_body("not base64!", "base64") is None  # -> poison queue without a call
    assert decode_body("not base64!", "none") == "not base64!"
    assert QueueClients(QueuesConfig()).encode("hello") == "aGVsbG8="
    assert QueueClients(QueuesConfig(message_encoding="none")).encode("hello") == "hello"
    assert _queue_output_messages("a") == ["a"]
    assert _queue_output_messages(["a", "b"]) == ["a", "b"]
    assert _queue_output_messages(func.QueueMessage(body="m")) == ["m"]
    with pytest.raises(NotImplementedError):
        _queue_output_messages(5)  # the worker's queue converter refuses it too
