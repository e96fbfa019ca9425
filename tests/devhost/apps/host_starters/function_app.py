"""devhost test app: durable clients in HTTP and queue triggers, wait-for-completion, custom status."""
import json

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="start/{name}/{instance_id?}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(req.route_params["name"], req.route_params.get("instance_id"),
                                         json.loads(body) if body else None)
    return client.create_check_status_response(req, instance_id)


@app.route(route="run/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def run_and_wait(req: func.HttpRequest, client) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["name"], None, req.get_json())
    return await client.wait_for_completion_or_create_check_status_response(req, instance_id, timeout_in_milliseconds=20000)


@app.queue_trigger(arg_name="msg", queue_name="host-starts", connection="AzureWebJobsStorage")
@app.durable_client_input(client_name="client")
async def queue_start(msg: func.QueueMessage, client) -> None:
    order = msg.get_json()
    await client.start_new("greet_all", order["id"], order["names"])


@app.orchestration_trigger(context_name="context")
def greet_all(context: df.DurableOrchestrationContext):
    names = context.get_input() or []
    context.set_custom_status({"count": len(names)})
    greetings = yield context.task_all([context.call_activity("greet", n) for n in names])
    return {"greetings": greetings}


@app.activity_trigger(input_name="name")
async def greet(name: str) -> str:
    return f"hi {name}"
