"""devhost refuses at start what the Azure Functions Python worker refuses at indexing, with its words.

Each case is a tiny v2 app that breaks exactly one rule of the worker's ``functions.Registry``
(``validate_binding_direction``, ``is_context_required``, ``validate_function_params``,
``get_function_return_type``) or of ``loader.index_function_app``; the expected text is the worker's
message format, copied from
https://github.com/Azure/azure-functions-python-worker/blob/07239b4a41c4f02938614a35be5ae3a20009e576/workers/azure_functions_worker/functions.py
and .../workers/azure_functions_worker/loader.py (see devhost/indexing.py). The real
``function_app.py`` and every test app must still index.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devhost.app_loader import LoadedApp
from devhost.errors import AppLoadError
from host_support import APPS

ROOT = Path(__file__).resolve().parents[2]

HEADER = """\
import typing
import azure.functions as func
import azure.durable_functions as df
from azure.functions.decorators.core import Binding, BindingDirection, DataType

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
"""

#: what the worker calls "function definition"
DEF = "function definition (function.json or function decorators)"

# (id, app body after HEADER, the worker's message after "cannot load the f function: ")
RULES = [
    ("inout-binding", '''
        class InOutBlob(Binding):
            @staticmethod
            def get_binding_name():
                return "blob"

            def __init__(self, name):
                super().__init__(name=name, direction=BindingDirection.INOUT)

        @app.route(route="f")
        def f(req: func.HttpRequest, b: str) -> str:
            return "x"

        f.add_binding(InOutBlob("b"))  # the decorators return the FunctionBuilder
        ''',
     '"inout" bindings are not supported'),
    ("return-binding-not-out", '''
        @app.route(route="f")
        @app.generic_input_binding(arg_name="$return", type="blob")
        def f(req: func.HttpRequest) -> str:
            return "x"
        ''',
     '"$return" binding must have direction set to "out"'),
    ("context-not-func-context", '''
        @app.route(route="f")
        def f(req: func.HttpRequest, context: dict) -> str:
            return "x"
        ''',
     "the \"context\" parameter is expected to be of type azure.functions.Context, got <class 'dict'>"),
    ("python-parameter-without-binding", '''
        @app.route(route="f")
        def f(req: func.HttpRequest, extra) -> str:
            return "x"
        ''',
     f"the following parameters are declared in Python but not in the {DEF}:  {{'extra'}}"),
    ("binding-without-python-parameter", '''
        @app.route(route="f")
        @app.queue_output(arg_name="out", queue_name="q", connection="AzureWebJobsStorage")
        def f(req: func.HttpRequest) -> str:
            return "x"
        ''',
     f"the following parameters are declared in the {DEF} but not in Python: {{'out'}}"),
    ("bare-out-annotation", '''
        @app.route(route="f")
        @app.queue_output(arg_name="out", queue_name="q", connection="AzureWebJobsStorage")
        def f(req: func.HttpRequest, out: func.Out) -> str:
            return "x"
        ''',
     "binding out has invalid Out annotation <class 'azure.functions._abc.Out'>"),
    ("non-type-annotation", '''
        @app.route(route="f")
        def f(req: typing.Optional[func.HttpRequest]) -> str:
            return "x"
        ''',
     "binding req has invalid non-type annotation typing.Optional[azure.functions._http.HttpRequest]"),
    ("output-binding-without-out", '''
        @app.route(route="f")
        @app.queue_output(arg_name="out", queue_name="q", connection="AzureWebJobsStorage")
        def f(req: func.HttpRequest, out: str) -> str:
            return "x"
        ''',
     'binding out is declared to have the "out" direction, but its annotation in Python is not a '
     "subclass of azure.functions.Out"),
    ("input-binding-with-out", '''
        @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
        def f(msg: func.Out[func.QueueMessage]) -> None:
            pass
        ''',
     f'binding msg is declared to have the "in" direction in the {DEF}, but its annotation is '
     "azure.functions.Out in Python"),
    ("input-type-mismatch", '''
        @app.route(route="f")
        def f(req: dict) -> str:
            return "x"
        ''',
     f"'req' binding type \"httpTrigger\" and dataType \"None\" in {DEF} do not match the corresponding "
     "function parameter's Python type annotation \"dict\""),
    ("input-type-mismatch-undefined-data-type", '''
        @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage",
                           data_type=DataType.UNDEFINED)
        def f(msg: dict) -> None:
            pass
        ''',
     f'type of msg binding in {DEF} "queueTrigger" does not match its Python annotation "dict"'),
    ("output-type-mismatch", '''
        @app.route(route="f")
        @app.queue_output(arg_name="out", queue_name="q", connection="AzureWebJobsStorage")
        def f(req: func.HttpRequest, out: func.Out[dict]) -> str:
            return "x"
        ''',
     f"'out' binding type \"queue\" and dataType \"None\" in {DEF} do not match the corresponding "
     "function parameter's Python type annotation \"dict\""),
    ("return-annotation-out", '''
        @app.route(route="f")
        def f(req: func.HttpRequest) -> func.Out[str]:
            return "x"
        ''',
     "return annotation should not be azure.functions.Out"),
    ("return-annotation-non-type", '''
        @app.route(route="f")
        def f(req: func.HttpRequest) -> typing.Optional[func.HttpResponse]:
            return None
        ''',
     "has invalid non-type return annotation typing.Optional[azure.functions._http.HttpResponse]"),
    ("return-type-mismatch", '''
        @app.route(route="f")
        def f(req: func.HttpRequest) -> dict:
            return {}
        ''',
     'Python return annotation "dict" does not match binding type "http"'),
    # Mistakes seen on Azure, caught by the same rules:
    # an HTTP function annotated "-> None" (the HTTP $return binding needs HttpResponse or str)
    ("http-return-none", '''
        @app.route(route="f")
        def f(req: func.HttpRequest) -> None:
            pass
        ''',
     'Python return annotation "NoneType" does not match binding type "http"'),
    # builtin generics are not types for the worker on 3.11 (user report:
    # https://github.com/Azure/azure-functions-durable-python/issues/468)
    ("activity-builtin-generic", '''
        @app.activity_trigger(input_name="items")
        def f(items: list[str]) -> int:
            return len(items)
        ''',
     "binding items has invalid non-type annotation list[str]"),
    # the Durable SDK's orchestrator wrapper takes "context", so another context_name cannot bind
    # (https://github.com/microsoft/durabletask-python/issues/171)
    ("orchestrator-context-name", '''
        @app.orchestration_trigger(context_name="ctx")
        def f(ctx):
            return None
        ''',
     "the \"context\" parameter is expected to be of type azure.functions.Context, got "
     "<class 'azure.functions._durable_functions.OrchestrationContext'>"),
]


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "function_app.py"
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(AppLoadError) as err:
        LoadedApp.load(str(path))
    return str(err.value)


@pytest.mark.parametrize("body, reason", [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_worker_rule_fails_indexing_with_the_workers_message(tmp_path, body, reason):
    path = _write(tmp_path, body)
    assert _load_error(path) == f"indexing {path} failed: FunctionLoadError: cannot load the f function: {reason}"


@pytest.mark.parametrize("body", [
    # everything the rules allow, in the shapes the apps here use
    '''
    @app.route(route="a")
    @app.queue_output(arg_name="out", queue_name="q", connection="AzureWebJobsStorage")
    @app.durable_client_input(client_name="client")
    async def http_fn(req: func.HttpRequest, out: func.Out[str], client: df.DurableOrchestrationClient,
                      context: func.Context) -> func.HttpResponse:
        return func.HttpResponse("ok")

    @app.route(route="b")
    def text_fn(req: func.HttpRequest) -> str:
        return "ok"

    @app.route(route="c")
    @app.queue_output(arg_name="out", queue_name="q", connection="AzureWebJobsStorage")
    def unannotated(req, out):  # no annotation at all is fine, even on an output binding
        out.set("x")
        return "ok"

    @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
    @app.queue_output(arg_name="$return", queue_name="q2", connection="AzureWebJobsStorage")
    def queue_fn(msg: func.QueueMessage) -> str:
        return msg.get_body().decode()

    @app.queue_trigger(arg_name="msg", queue_name="q3", connection="AzureWebJobsStorage")
    @app.queue_output(arg_name="outs", queue_name="q4", connection="AzureWebJobsStorage")
    def queue_list_fn(msg: str, outs: func.Out[typing.List[str]]) -> None:
        outs.set([msg])

    @app.timer_trigger(arg_name="timer", schedule="0 * * * * *")
    def timer_fn(timer: func.TimerRequest) -> None:
        pass

    @app.orchestration_trigger(context_name="context")
    def orch(context: df.DurableOrchestrationContext):
        return None

    @app.activity_trigger(input_name="items")
    def act(items: typing.List[str]) -> list[str]:
        return items
    ''',
])
def test_what_the_worker_accepts_indexes(tmp_path, body):
    names = set(LoadedApp.load(str(_write(tmp_path, body))).functions)
    assert names == {"http_fn", "text_fn", "unannotated", "queue_fn", "queue_list_fn", "timer_fn", "orch", "act"}


def test_the_first_failing_function_in_index_order_is_reported(tmp_path):
    path = _write(tmp_path, '''
        @app.route(route="a")
        def first(req: func.HttpRequest, a) -> str:
            return "x"

        @app.route(route="b")
        def second(req: func.HttpRequest, b) -> str:
            return "x"
        ''')
    assert "cannot load the first function:" in _load_error(path)


def test_a_function_name_not_the_python_name_is_reported(tmp_path):
    path = _write(tmp_path, '''
        @app.function_name("public_name")
        @app.route(route="a")
        def python_name(req: func.HttpRequest, stray) -> str:
            return "x"
        ''')
    assert "cannot load the public_name function: the following parameters are declared in Python" in _load_error(path)


@pytest.mark.parametrize("source, message", ids=["no-app", "one-app-two-names", "two-apps"], argvalues=[
    ("import azure.functions as func\n",
     "ValueError: Could not find top level function app instances in function_app.py."),
    ("import azure.functions as func\napp = func.FunctionApp()\nalias = app\n",  # one object, two names
     "ValueError: More than one FunctionApp or other top level function app instances are defined."),
    ("import azure.durable_functions as df\nimport azure.functions as func\n"
     "app = df.DFApp()\nother = func.FunctionApp()\n",
     "ValueError: More than one DFApp or other top level function app instances are defined."),
])
def test_one_top_level_app_as_the_worker_loader_requires(tmp_path, source, message):
    path = tmp_path / "function_app.py"
    path.write_text(source)
    assert _load_error(path) == f"indexing {path} failed: {message}"


def test_devhost_start_refuses_the_app_with_the_message(tmp_path):
    """``python -m devhost start`` prints the worker's message and exits 2 before anything listens."""
    path = _write(tmp_path, RULES[3][1])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "devhost", "start", "--app", str(path), "--port", "0",
                           "--state-dir", str(tmp_path / "state")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert (f"devhost: indexing {path} failed: FunctionLoadError: cannot load the f function: {RULES[3][2]}"
            in done.stderr)


_LOAD = "import sys; from devhost.app_loader import LoadedApp; print(len(LoadedApp.load(sys.argv[1]).functions))"


@pytest.mark.parametrize("app", [ROOT / "function_app.py", ROOT / "tests/workflow/stub_app/stub_function_app.py"]
                         + sorted(APPS.glob("*/function_app.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_real_app_and_every_test_app_pass_the_worker_rules(app):
    """In a fresh interpreter each (one app per process, as devhost runs them)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _LOAD, str(app)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 0


@pytest.mark.parametrize("retry, message", ids=["delay-not-hh:mm:ss", "no-delay", "count-not-int", "no-maximum"], argvalues=[
    ('strategy="fixed_delay", max_retry_count="3", delay_interval="5s"',
     "ValueError: time data '5s' does not match format '%H:%M:%S'"),
    ('strategy="fixed_delay", max_retry_count="3"',
     "TypeError: strptime() argument 0 must be str, not <class 'NoneType'>"),
    ('strategy="fixed_delay", max_retry_count="three", delay_interval="00:00:05"',
     "ValueError: invalid literal for int() with base 10: 'three'"),
    ('strategy="exponential_backoff", max_retry_count="3", minimum_interval="00:00:01"',
     "TypeError: strptime() argument 0 must be str, not <class 'NoneType'>"),
])
def test_a_retry_policy_the_worker_cannot_parse_fails_indexing(tmp_path, retry, message):
    """``loader.build_retry_protos`` parses ``@app.retry`` at indexing: int count, hh:mm:ss intervals."""
    path = _write(tmp_path, f'''
        @app.timer_trigger(arg_name="timer", schedule="0 * * * * *")
        @app.retry({retry})
        def f(timer: func.TimerRequest) -> None:
            pass
        ''')
    assert _load_error(path) == f"indexing {path} failed: {message}"


def test_a_parsable_retry_policy_indexes(tmp_path):
    path = _write(tmp_path, '''
        @app.timer_trigger(arg_name="timer", schedule="0 * * * * *")
        @app.retry(strategy="exponential_backoff", max_retry_count="3", minimum_interval="00:00:01",
                   maximum_interval="00:15:00")
        def f(timer: func.TimerRequest) -> None:
            pass
        ''')
    assert set(LoadedApp.load(str(path)).functions) == {"f"}


def test_an_annotation_that_does_not_resolve_fails_indexing(tmp_path):
    """The worker calls ``typing.get_type_hints``: a name imported only for type checkers breaks it."""
    path = tmp_path / "function_app.py"
    path.write_text(textwrap.dedent('''
        from __future__ import annotations
        from typing import TYPE_CHECKING
        import azure.functions as func
        if TYPE_CHECKING:
            from decimal import Decimal

        app = func.FunctionApp()

        @app.route(route="f")
        def f(req: func.HttpRequest) -> Decimal:
            return "x"
        '''))
    assert _load_error(path) == f"indexing {path} failed: NameError: name 'Decimal' is not defined"
