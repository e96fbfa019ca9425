"""Equivalent of samples-v2/blueprint (azure-functions-durable 1.7.0 source distribution,
``samples-v2/blueprint/function_app.py`` + ``durable_blueprints.py``): a plain ``func.FunctionApp``
with FUNCTION auth that registers a ``df.Blueprint`` from a sibling module (so the script root
must be on ``sys.path``) and also has its own plain HTTP function. Not a copy of the original."""
import azure.functions as func

from durable_blueprints import bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(bp)


@app.route(route="HttpTrigger")
def HttpTrigger(req: func.HttpRequest) -> func.HttpResponse:
    name = req.params.get("name")
    if not name:
        try:
            name = (req.get_json() or {}).get("name")
        except ValueError:
            name = None
    if name:
        return func.HttpResponse(f"Hello, {name}. This HTTP triggered function executed successfully.")
    return func.HttpResponse("This HTTP triggered function executed successfully. Pass a name.", status_code=200)
