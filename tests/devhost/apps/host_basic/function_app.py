"""devhost test app: HTTP routes and auth levels, queue and timer triggers, output bindings."""
import json
import os
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

RECORD_DIR = os.environ.get("HOST_TEST_RECORD_DIR", "")


def record(kind: str, data: dict) -> None:
    """Append one JSON line to <RECORD_DIR>/<kind>.jsonl so tests can see what ran."""
    if RECORD_DIR:
        with open(os.path.join(RECORD_DIR, f"{kind}.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(data) + "\n")


@app.route(route="echo/{id:int}/{name?}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = req.get_body().decode("utf-8") if req.get_body() else ""
    return func.HttpResponse(
        json.dumps({"method": req.method, "url": req.url, "route": dict(req.route_params), "params": dict(req.params),
                    "body": body, "header": req.headers.get("x-test")}),
        status_code=201, mimetype="application/json", headers={"x-echo": "yes"})


@app.route(route="open", auth_level=func.AuthLevel.ANONYMOUS)
def open_route(req: func.HttpRequest) -> str:
    return "open " + (req.params.get("who") or "nobody")


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@app.route(route="items/special", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def special_item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("special")


@app.route(route="items/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"item {req.route_params['id']}")


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret-detail-should-not-leak")


@app.route(route="settings/{name}", auth_level=func.AuthLevel.ANONYMOUS)
def setting(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"value": os.environ.get(req.route_params["name"])}), mimetype="application/json")


@app.route(route="named/%HOST_TEST_ROUTE_NAME%", auth_level=func.AuthLevel.ANONYMOUS)
def named_route(req: func.HttpRequest) -> str:
    return "route from a setting"


@app.route(route="enqueue", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(arg_name="out", queue_name="%HOST_TEST_QUEUE%", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode("utf-8"))
    return func.HttpResponse("queued", status_code=202)


@app.queue_trigger(arg_name="msg", queue_name="%HOST_TEST_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="fwd", queue_name="host-forwarded", connection="AzureWebJobsStorage")
def on_message(msg: func.QueueMessage, fwd: func.Out[str]) -> None:
    body = msg.get_body().decode("utf-8")
    record("queue", {"id": msg.id, "body": body, "dequeue_count": msg.dequeue_count,
                     "insertion_time": msg.insertion_time.isoformat() if msg.insertion_time else None,
                     "pop_receipt": bool(msg.pop_receipt)})
    if body.startswith("fail"):
        raise ValueError("asked to fail")
    fwd.set("fwd:" + body)


@app.timer_trigger(arg_name="timer", schedule="%HOST_TEST_SCHEDULE%", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    record("timer", {"past_due": timer.past_due, "at": time.time()})


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
def startup_tick(timer: func.TimerRequest) -> None:
    record("startup_timer", {"past_due": timer.past_due, "at": time.time()})
