"""Equivalent of samples-v2/function_chaining (azure-functions-durable 1.7.0 source distribution,
``samples-v2/function_chaining/function_app.py``): an anonymous HTTP starter at
``orchestrators/{functionName}`` that starts the orchestration without input and answers with the
check-status response, an orchestrator calling ``say_hello`` three times in sequence, and the activity.
Written for devhost's tests (same shape, names and routes); the original is not copied here."""
import logging

import azure.durable_functions as df
import azure.functions as func

myApp = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@myApp.route(route="orchestrators/{functionName}")
@myApp.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client):
    instance_id = await client.start_new(req.route_params.get("functionName"))
    logging.info("Started orchestration with ID = '%s'.", instance_id)
    return client.create_check_status_response(req, instance_id)


@myApp.orchestration_trigger(context_name="context")
def my_orchestrator(context: df.DurableOrchestrationContext):
    greetings = []
    for city in ("Tokyo", "Seattle", "London"):
        greetings.append((yield context.call_activity("say_hello", city)))
    return greetings


@myApp.activity_trigger(input_name="city")
def say_hello(city: str) -> str:
    return f"Hello {city}!"
