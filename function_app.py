"""The Azure Functions entry point: create the Durable app and register the blueprints.

Nothing else lives here (triggers/, orchestrators/ and activities/ hold the functions; every
function name is a constant in core/names.py). HTTP functions default to the function-key level.
The activities have one blueprint per family (activities/<family>.py).
"""

import azure.durable_functions as df
import azure.functions as func

import orchestrators
import triggers
from activities import applications, assignments, credentials, fleet, jobs, profiles, reports, rotation, sweep

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(triggers.bp)
app.register_functions(orchestrators.bp)
app.register_functions(applications.bp)
app.register_functions(jobs.bp)
app.register_functions(credentials.bp)
app.register_functions(assignments.bp)
app.register_functions(sweep.bp)
app.register_functions(fleet.bp)
app.register_functions(profiles.bp)
app.register_functions(rotation.bp)
app.register_functions(orchestrators.rotation_bp)
app.register_functions(triggers.rotation_bp)
app.register_functions(reports.bp)
