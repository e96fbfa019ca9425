"""Test app for FUNCTIONS_WORKER_PROCESS_COUNT (tests/devhost/test_host_worker_processes.py)."""
import os
import time

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

# Per-process state, as a module-level cache or pacer would keep it.
CALLS = {"count": 0}


@app.orchestration_trigger(context_name="context")
def workers_fanout(context: df.DurableOrchestrationContext):
    n = context.get_input()
    return (yield context.task_all([context.call_activity("workers_pid", i) for i in range(n)]))


@app.orchestration_trigger(context_name="context")
def workers_failure(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("workers_fail", "bad input")
    except Exception as exc:
        return str(exc)
    return "no failure"


@app.activity_trigger(input_name="i")
def workers_pid(i: int) -> dict:
    CALLS["count"] += 1
    time.sleep(0.2)  # long enough that the calls overlap and spread over the processes
    return {"i": i, "pid": os.getpid(), "callsHere": CALLS["count"]}


@app.activity_trigger(input_name="text")
def workers_fail(text: str) -> str:
    raise ValueError(f"cannot use {text}")


@app.orchestration_trigger(context_name="context")
def workers_client(context: df.DurableOrchestrationContext):
    """An activity with the Durable client binding (as the health sweep's start_sweep_rotation) starts
    another orchestration from a worker process."""
    started = yield context.call_activity("workers_start_child", context.get_input())
    return started


@app.orchestration_trigger(context_name="context")
def workers_child(context: df.DurableOrchestrationContext):
    return {"child": context.instance_id}


@app.function_name("workers_start_child")
@app.durable_client_input(client_name="client")
@app.activity_trigger(input_name="child_id")
async def workers_start_child(child_id: str, client) -> dict:
    await client.start_new("workers_child", child_id, None)
    return {"started": child_id, "pid": os.getpid()}


@app.durable_client_input(client_name="client")
@app.route(route="start/{name}", methods=["POST"])
async def workers_start(req: func.HttpRequest, client) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["name"], None, req.get_json())
    return client.create_check_status_response(req, instance_id)


@app.route(route="pid", methods=["GET"])
def workers_host_pid(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(str(os.getpid()))
