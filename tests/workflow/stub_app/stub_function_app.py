"""The project's real orchestrators with scripted activities, for replay-level tests (replay_support.py).

The orchestrators are the production blueprint; every activity of ``core.names.ACTIVITIES`` is
replaced by a stub that answers from ``stubstate.SCRIPT`` and records its calls.
"""

import azure.durable_functions as df
import azure.functions as func

import orchestrators
import stubstate
from core import names

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(orchestrators.bp)
stubs = df.Blueprint()


def _make(name: str) -> None:
    def activity(payload: dict) -> dict:
        return stubstate.answer(name, payload)

    activity.__name__ = name
    stubs.function_name(name)(stubs.activity_trigger(input_name="payload")(activity))


for _name in names.ACTIVITIES:
    _make(_name)
app.register_functions(stubs)
