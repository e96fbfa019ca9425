"""Load a v2-model ``function_app.py``, index its functions once, and call them as the worker does.

The Python worker (``azure-functions-python-worker``) imports ``function_app.py`` from the script
root, finds the ``FunctionApp``/``DFApp`` object, calls ``app.get_functions()`` once (a second call
raises "does not have a unique function name": ``FunctionRegister.get_functions`` in
https://github.com/Azure/azure-functions-python-library/blob/dev/azure/functions/decorators/function_app.py)
and later invokes each user function with keyword arguments named after its bindings, decoding
trigger data with the converters registered in ``azure.functions.meta``
(https://github.com/Azure/azure-functions-python-library/blob/dev/azure/functions/meta.py). Between
the two, the worker checks every function's parameters against its bindings and refuses the app on
the first mismatch; devhost applies the same checks with the same messages (:mod:`devhost.indexing`).
This module
reproduces all that, so the rest of devhost never touches ``azure.functions`` internals:

* :meth:`LoadedApp.call_orchestrator` - the orchestration trigger (always sync, returns the SDK's
  ``OrchestratorState`` JSON text or raises with the ``$OutOfProcData$`` message).
* :meth:`LoadedApp.call_activity` - activity trigger, decoded/encoded with ``ActivityTriggerConverter``.
* :meth:`LoadedApp.call_function` / :meth:`LoadedApp.invoke` - HTTP, queue and timer triggers, with
  ``durableClient`` input bindings, ``func.Out`` output bindings and the ``context`` parameter.

Sync user functions run in a thread pool (the worker does the same; the size comes from
``PYTHON_THREADPOOL_THREAD_COUNT``), async ones are awaited on the caller's event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import inspect
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import azure.functions as func
from azure.functions import _abc, meta

from devhost.errors import AppLoadError, FunctionNotFoundError
from devhost.indexing import check_retry_policy, find_function_app, validate_indexed_function

log = logging.getLogger("devhost.functions")

#: trigger binding type -> the binding key that may hold a registration alias (the extension registers an
#: activity under the binding's ``activity`` value, else its function name:
#: https://github.com/Azure/azure-functions-durable-extension/blob/dev/src/WebJobs.Extensions.DurableTask/Bindings/ActivityTriggerAttributeBindingProvider.cs)
_ALIAS_KEYS = {"activityTrigger": "activity", "orchestrationTrigger": "orchestration", "entityTrigger": "entityName"}


@dataclass
class FunctionSpec:
    """One indexed function: its name, trigger type, raw bindings (as in the function JSON) and callable."""

    name: str
    trigger_type: str
    bindings: list[dict]
    is_async: bool
    user_function: Callable[..., Any] = field(repr=False, default=None)  # type: ignore[assignment]
    python_name: str = ""

    @property
    def trigger(self) -> dict:
        """The trigger binding dict (``type`` ends with ``Trigger``)."""
        return next(b for b in self.bindings if b.get("type") == self.trigger_type)

    @property
    def alias(self) -> str | None:
        """``activity=``/``orchestration=`` registration alias, if the binding carries one."""
        key = _ALIAS_KEYS.get(self.trigger_type)
        return self.trigger.get(key) if key else None

    def input_bindings(self, binding_type: str) -> list[dict]:
        return [b for b in self.bindings if b.get("type") == binding_type and b.get("direction", "IN").upper() == "IN"]

    @property
    def output_bindings(self) -> list[dict]:
        """Output bindings other than the HTTP ``$return`` (e.g. ``queue`` outputs)."""
        return [b for b in self.bindings if b.get("direction", "").upper() == "OUT" and b.get("type") != "http"]


@dataclass
class InvocationResult:
    """What :meth:`LoadedApp.invoke` returns: the function's return value and the values set on its outputs."""

    return_value: Any
    outputs: dict[str, Any]
    invocation_id: str


class OutValue(func.Out):
    """The ``func.Out`` object passed for an output binding (the worker passes an equivalent)."""

    def __init__(self) -> None:
        self._value: Any = None
        self.is_set = False

    def set(self, val: Any) -> None:
        self._value = val
        self.is_set = True

    def get(self) -> Any:
        return self._value


class _TraceContext(_abc.TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """``func.Context`` for a parameter named ``context`` that is not a binding (as the worker passes)."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        import threading

        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._tls = threading.local()
        self._tls.invocation_id = invocation_id
        self._trace = _TraceContext()
        self._retry = _RetryContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._tls

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return self._trace

    @property
    def retry_context(self) -> Any:
        return self._retry


def _default_thread_count() -> int:
    # The Python worker's default for PYTHON_THREADPOOL_THREAD_COUNT on 3.9+ is min(32, cpu + 4).
    raw = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "")
    if raw.strip().isdigit() and int(raw) > 0:
        return int(raw)
    return min(32, (os.cpu_count() or 1) + 4)


class LoadedApp:
    """An imported and indexed function app. Create with :meth:`LoadedApp.load`."""

    def __init__(self, app_path: str, module: Any, app: Any, functions: dict[str, FunctionSpec]) -> None:
        self.app_path = app_path
        self.script_root = os.path.dirname(app_path)
        self.module = module
        self.app = app
        self.functions = functions
        #: the ``durableClient`` binding value given to functions that declare one; set by the server
        #: once the Durable engine knows its base URL (``http_api.client_binding_json(engine, base_url)``, set by devhost/server.py).
        self.client_binding_json: str | None = None
        self._executor: concurrent.futures.Executor | None = None
        #: set by the server when FUNCTIONS_WORKER_PROCESS_COUNT > 1: activities run in those processes
        self.worker_pool: Any = None
        self._lookup: dict[tuple[str, str], FunctionSpec] = {}
        for spec in functions.values():
            for key in {spec.name, spec.alias or spec.name}:
                self._lookup.setdefault((spec.trigger_type, key.lower()), spec)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, app_path: str) -> "LoadedApp":
        """Import ``function_app.py`` (or the ``function_app.py`` inside a folder) and index it once.

        The app's folder (script root) goes first on ``sys.path`` so its own packages import, and the
        module is kept in ``sys.modules`` under its file stem (``function_app``) because the Durable
        SDK decodes custom classes by looking their module up there (``_deserialize_custom_object`` in
        https://github.com/Azure/azure-functions-python-library/blob/dev/azure/functions/_durable_functions.py). One app per process.
        """
        path = os.path.abspath(app_path)
        if os.path.isdir(path):
            path = os.path.join(path, "function_app.py")
        if not os.path.isfile(path):
            raise AppLoadError(f"app file not found: {path} (expected a v2-model function_app.py)")
        root = os.path.dirname(path)
        if root not in sys.path:
            sys.path.insert(0, root)
        mod_name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise AppLoadError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's import-time error, reported with its type and message
            sys.modules.pop(mod_name, None)
            raise AppLoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
        try:
            # the worker's checks (devhost/indexing.py): one top-level app, then each function's
            # parameters, bindings and annotations, in get_functions() order; the first failure stops
            app = find_function_app(module, os.environ.get("PYTHON_SCRIPT_FILE_NAME") or os.path.basename(path))
            indexed = app.get_functions()
            for f in indexed:
                validate_indexed_function(f)
                check_retry_policy(f)
        except Exception as exc:
            raise AppLoadError(f"indexing {path} failed: {type(exc).__name__}: {exc}") from exc
        functions: dict[str, FunctionSpec] = {}
        for f in indexed:
            name = f.get_function_name()
            bindings = json.loads(f.get_function_json())["bindings"]
            trigger_type = f.get_trigger().get_binding_name()
            user_fn = f.get_user_function()
            functions[name] = FunctionSpec(
                name=name,
                trigger_type=trigger_type,
                bindings=bindings,
                is_async=inspect.iscoroutinefunction(user_fn),
                user_function=user_fn,
                python_name=getattr(user_fn, "__name__", name),
            )
        return cls(path, module, app, functions)

    # ------------------------------------------------------------------ lookup
    def by_trigger(self, trigger_type: str) -> list[FunctionSpec]:
        """All functions whose trigger binding has this type, in index order."""
        return [s for s in self.functions.values() if s.trigger_type == trigger_type]

    def find(self, name: str, trigger_type: str) -> FunctionSpec:
        """The function registered under ``name`` for this trigger type.

        Case-insensitive, and an ``activity=``/``orchestration=`` alias also matches, as the
        extension registers durable functions (its trigger binding providers, e.g.
        https://github.com/Azure/azure-functions-durable-extension/blob/dev/src/WebJobs.Extensions.DurableTask/Bindings/OrchestrationTriggerAttributeBindingProvider.cs;
        how aliases behave end to end is UNCONFIRMED, so both names are accepted).
        """
        spec = self._lookup.get((trigger_type, name.lower()))
        if spec is None:
            raise FunctionNotFoundError(f"The function '{name}' doesn't exist, is disabled, or is not a {trigger_type} function.")
        return spec

    # ------------------------------------------------------------------ executor
    @property
    def executor(self) -> concurrent.futures.Executor:
        """Thread pool for sync functions (size ``PYTHON_THREADPOOL_THREAD_COUNT``, like the worker)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=_default_thread_count(), thread_name_prefix="devhost-fn"
            )
        return self._executor

    def set_executor(self, executor: concurrent.futures.Executor) -> None:
        """Use another pool for sync functions (e.g. one sized from ``maxConcurrentActivityFunctions``)."""
        self._executor = executor

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # ------------------------------------------------------------------ durable
    def call_orchestrator(self, name: str, context_json: str) -> str:
        """Run one orchestrator episode: ``handle(payload_json)`` exactly as the worker does.

        Returns the SDK's ``OrchestratorState`` JSON text. An orchestrator failure raises the SDK's
        exception whose message carries ``\\n\\n$OutOfProcData$:<state json>`` (note "Orchestrator
        failures" in devhost/durable/README.md); the caller
        splits it.
        """
        spec = self.find(name, "orchestrationTrigger")
        context = meta._ConverterMeta.get("orchestrationTrigger").decode(
            meta.Datum(type="string", value=context_json), trigger_metadata={}
        )
        return spec.user_function(context)

    async def call_activity(self, name: str, input_json: str | None, *, invocation_id: str | None = None) -> str:
        """Run an activity with the ``ActivityTriggerConverter`` (decode input, encode result).

        ``input_json`` is the ``TaskScheduled.Input`` text; ``None`` means no input. Returns the
        JSON text of the result (``df_dumps``). The function's exception propagates unchanged.
        ``invocation_id`` (optional) is used in the call's log lines, so they match the engine's.
        """
        spec = self.find(name, "activityTrigger")
        if self.worker_pool is not None:
            return await self.worker_pool.call_activity(spec.name, input_json, invocation_id)
        conv = meta._ConverterMeta.get("activityTrigger")
        value = None if input_json is None else conv.decode(meta.Datum(type="string", value=input_json), trigger_metadata={})
        result = await self.invoke(spec.name, {spec.trigger["name"]: value}, invocation_id=invocation_id)
        return conv.encode(result.return_value, expected_type=None).value

    # ------------------------------------------------------------------ generic
    async def call_function(self, name: str, **binding_values: Any) -> Any:
        """Call a function with already-decoded trigger values; returns the function's return value.

        Keyword names are binding names (e.g. ``req=func.HttpRequest(...)``, ``msg=func.QueueMessage``,
        ``timer=func.TimerRequest``). ``durableClient`` bindings not given get
        :attr:`client_binding_json`; output bindings not given get a fresh :class:`OutValue` (use
        :meth:`invoke` to read what the function set on them).
        """
        return (await self.invoke(name, binding_values)).return_value

    async def invoke(
        self, name: str, binding_values: dict[str, Any], *, invocation_id: str | None = None
    ) -> InvocationResult:
        """Call ``name`` with ``binding_values`` plus the implicit arguments the worker supplies.

        Fills ``durableClient`` inputs (JSON string, always by keyword: the DF wrapper reads
        ``kwargs[name]``), ``func.Out`` objects for output bindings, and ``func.Context`` for a
        parameter named ``context`` that is not a binding. Logs start/end with the invocation id.
        """
        spec = self.functions.get(name) or self._find_any(name)
        invocation_id = invocation_id or str(uuid.uuid4())
        kwargs = dict(binding_values)
        outs: dict[str, OutValue] = {}
        for b in spec.bindings:
            bname = b.get("name")
            if not bname or bname == "$return" or bname in kwargs:
                continue
            if b.get("type") == "durableClient":
                if self.client_binding_json is None:
                    raise RuntimeError(f"function '{spec.name}' needs a durable client but no Durable engine is running")
                kwargs[bname] = self.client_binding_json
            elif b.get("direction", "").upper() == "OUT":
                outs[bname] = OutValue()
                kwargs[bname] = outs[bname]
        for bname, v in binding_values.items():
            if isinstance(v, OutValue):
                outs[bname] = v
        params = _parameters(spec.user_function)
        if "context" in params and "context" not in kwargs:
            kwargs["context"] = InvocationContext(invocation_id, spec.name, self.script_root)
        unknown = [k for k in kwargs if params is not None and k not in params and not _accepts_kwargs(spec.user_function)]
        for k in unknown:
            kwargs.pop(k)  # e.g. a binding the function does not take as a parameter
        started = time.monotonic()
        log.info("Executing 'Functions.%s' (Id=%s)", spec.name, invocation_id)
        try:
            if spec.is_async:
                ret = await spec.user_function(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                ret = await loop.run_in_executor(self.executor, lambda: spec.user_function(**kwargs))
                if inspect.isawaitable(ret):  # a sync wrapper that returns a coroutine
                    ret = await ret
        except Exception as exc:
            log.warning(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms): %s: %s",
                spec.name, invocation_id, (time.monotonic() - started) * 1000, type(exc).__name__, exc,
            )
            raise
        log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", spec.name, invocation_id,
                 (time.monotonic() - started) * 1000)
        return InvocationResult(ret, {k: o.get() for k, o in outs.items() if o.is_set}, invocation_id)

    def _find_any(self, name: str) -> FunctionSpec:
        for spec in self.functions.values():
            if spec.name.lower() == name.lower():
                return spec
        raise FunctionNotFoundError(f"The function '{name}' doesn't exist.")


def _parameters(fn: Callable[..., Any]) -> set[str] | None:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def _accepts_kwargs(fn: Callable[..., Any]) -> bool:
    try:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
