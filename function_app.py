"""The Azure Functions entry point: create the Durable app and register the three blueprints.

Nothing else lives here (triggers/, orchestrators/ and activities/ hold the functions; every
function name is a constant in core/names.py). HTTP functions default to the function-key level.
"""

import azure.durable_functions as df
import azure.functions as func

import activities
import orchestrators
import triggers

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(triggers.bp)
app.register_functions(orchestrators.bp)
app.register_functions(activities.bp)
