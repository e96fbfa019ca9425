"""The Python worker's indexing checks, so a function that Azure would refuse fails in devhost first.

When the Azure Functions host starts a v2-model app, the Python worker (``azure_functions_worker``,
the worker that runs Python 3.9-3.12 apps) imports ``function_app.py``, finds the one top-level
``FunctionApp``/``DFApp`` (``loader.index_function_app``), calls ``app.get_functions()`` and then
registers every function with ``functions.Registry.add_indexed_function``, which compares the Python
signature with the declared bindings and raises ``FunctionLoadError`` on the first mismatch. The
host then reports the app as failing to index and runs none of its functions.

This module is a port of those checks, with the worker's message texts copied exactly:

* ``Registry.validate_binding_direction`` - no ``inout`` binding; ``$return`` must be ``out``.
* ``Registry.is_context_required`` - a ``context`` parameter that is not a binding must be
  annotated ``azure.functions.Context`` (or not at all).
* ``Registry.validate_function_params`` - the Python parameters and the bindings (without
  ``$return``) must be the same set; ``func.Out[T]`` exactly on output bindings; each annotation is
  a type that the binding's converter accepts (``check_input_type_annotation`` /
  ``check_output_type_annotation`` of the real ``azure.functions`` converters).
* ``Registry.get_function_return_type`` - with a ``$return`` binding, the return annotation is a
  type (not ``Out``) that the ``$return`` binding's converter accepts.
* ``loader.build_retry_protos`` - an ``@app.retry`` policy's count and intervals parse.

Sources (public, MIT licensed):

* https://github.com/Azure/azure-functions-python-worker/blob/07239b4a41c4f02938614a35be5ae3a20009e576/workers/azure_functions_worker/functions.py
* https://github.com/Azure/azure-functions-python-worker/blob/3daecbb9ad7bdf49145d958bb9b42072b43ff325/workers/azure_functions_worker/loader.py
* https://github.com/Azure/azure-functions-python-worker/blob/c556ed94e9cb3d244afe0b30796057d9bc172c3d/workers/azure_functions_worker/bindings/meta.py
* https://github.com/Azure/azure-functions-python-worker/blob/7e6acf36e43335ad69742923af9ff3d62b99242a/azure_functions_worker/bindings/generic.py
* https://github.com/Azure/azure-functions-python-worker/blob/7e6acf36e43335ad69742923af9ff3d62b99242a/azure_functions_worker/_thirdparty/typing_inspect.py

Not ported: deferred (SDK-type) bindings from ``azurefunctions-extensions-base`` and the HTTP
streaming types of ``azurefunctions-extensions-http-fastapi`` (the worker accepts their types only
when those packages are installed; devhost serves neither), and the Python 3.13+ ``proxy_worker``,
whose runtime has other message texts.
"""

from __future__ import annotations

import collections.abc
import inspect
import operator
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Generic, Tuple, Union, _GenericAlias, _SpecialGenericAlias  # type: ignore[attr-defined]

import azure.functions as func

#: ``protos.BindingInfo.Direction`` values, as ``azure.functions`` ``Binding.direction`` returns them
_DIRECTION_OUT = 1
_DIRECTION_INOUT = 2
#: ``protos.BindingInfo.DataType.undefined``
_DATA_TYPE_UNDEFINED = 0


class FunctionLoadError(RuntimeError):
    """The worker's ``FunctionLoadError``: ``cannot load the <function> function: <reason>``."""

    def __init__(self, function_name: str, msg: str) -> None:
        super().__init__(f"cannot load the {function_name} function: {msg}")
        self.function_name = function_name
        self.reason = msg


# ----------------------------------------------------------------------------- typing_inspect
# The worker's vendored typing_inspect (Python 3.9+ branch), which differs from the copy inside
# azure.functions: bare ``typing.List`` (a ``_SpecialGenericAlias``) counts as generic there.
def _is_generic_type(tp: Any) -> bool:
    return (isinstance(tp, type) and issubclass(tp, Generic)
            or ((isinstance(tp, _GenericAlias) or isinstance(tp, _SpecialGenericAlias))
                and tp.__origin__ not in (Union, tuple, ClassVar, collections.abc.Callable)))


def _get_origin(tp: Any) -> Any:
    if isinstance(tp, _GenericAlias):
        return tp.__origin__ if tp.__origin__ is not ClassVar else None
    if tp is Generic:
        return Generic
    return None


def _get_args(tp: Any) -> Tuple[Any, ...]:
    if isinstance(tp, _GenericAlias):
        res = tp.__args__
        if _get_origin(tp) is collections.abc.Callable and res[0] is not Ellipsis:
            res = (list(res[:-1]), res[-1])
        return res
    return ()


# ----------------------------------------------------------------------------- bindings.meta
class _GenericBinding:
    """The worker's ``bindings.generic.GenericBinding``: used for a binding type with no converter."""

    @classmethod
    def check_input_type_annotation(cls, pytype: type) -> bool:
        return issubclass(pytype, (str, bytes))

    @classmethod
    def check_output_type_annotation(cls, pytype: type) -> bool:
        return issubclass(pytype, (str, bytes, bytearray))

    @classmethod
    def has_implicit_output(cls, bind_name: str | None) -> bool:
        return bind_name != "durableClient"


def _get_binding(bind_name: str) -> Any:
    return func.get_binding_registry().get(bind_name) or _GenericBinding


def has_implicit_output(bind_name: str) -> bool:
    """``bindings.meta.has_implicit_output``: the trigger's return value is its output (durable triggers)."""
    binding = _get_binding(bind_name)
    if binding is _GenericBinding:
        return _GenericBinding.has_implicit_output(bind_name)
    return bool(getattr(binding, "has_implicit_output", lambda: False)())


def _check_input_type_annotation(bind_name: str, pytype: Any) -> bool:
    return bool(_get_binding(bind_name).check_input_type_annotation(pytype))


def _check_output_type_annotation(bind_name: str, pytype: Any) -> bool:
    return bool(_get_binding(bind_name).check_output_type_annotation(pytype))


# ----------------------------------------------------------------------------- functions.Registry
@dataclass
class IndexedSignature:
    """What the worker derives from a function at indexing (``FunctionInfo`` without the callable)."""

    requires_context: bool
    has_return: bool
    input_types: dict[str, tuple[str, Any]] = field(default_factory=dict)
    output_types: dict[str, tuple[str, Any]] = field(default_factory=dict)
    return_type: tuple[str | None, Any] | None = None


def _validate_binding_direction(binding_name: str, binding_direction: int, func_name: str) -> None:
    if binding_direction == _DIRECTION_INOUT:
        raise FunctionLoadError(func_name, '"inout" bindings are not supported')
    if binding_name == "$return" and binding_direction != _DIRECTION_OUT:
        raise FunctionLoadError(func_name, '"$return" binding must have direction set to "out"')


def _is_context_required(params: dict, bound_params: dict, annotations: dict, func_name: str) -> bool:
    requires_context = False
    if "context" in params and "context" not in bound_params:
        requires_context = True
        params.pop("context")
        if "context" in annotations:
            ctx_anno = annotations.get("context")
            if not isinstance(ctx_anno, type) or ctx_anno.__name__ != "Context":
                raise FunctionLoadError(
                    func_name,
                    'the "context" parameter is expected to be of type azure.functions.Context, got '
                    f"{ctx_anno!r}")
    return requires_context


def _validate_function_params(params: dict, bound_params: dict, annotations: dict, func_name: str,
                              sig: IndexedSignature) -> None:
    if set(params) - set(bound_params):
        raise FunctionLoadError(
            func_name,
            "the following parameters are declared in Python but not in the function definition "
            f"(function.json or function decorators):  {set(params) - set(bound_params)!r}")
    if set(bound_params) - set(params):
        raise FunctionLoadError(
            func_name,
            "the following parameters are declared in the function definition (function.json or "
            f"function decorators) but not in Python: {set(bound_params) - set(params)!r}")

    for param in params.values():
        binding = bound_params[param.name]
        param_has_anno = param.name in annotations
        param_anno = annotations.get(param.name)

        is_param_out = False
        if param_has_anno:
            origin = _get_origin(param_anno) if _is_generic_type(param_anno) else None
            if origin is not None:
                is_param_out = isinstance(origin, type) and origin.__name__ == "Out"
            else:
                is_param_out = isinstance(param_anno, type) and param_anno.__name__ == "Out"
        is_binding_out = binding.direction == _DIRECTION_OUT

        if is_param_out:
            param_anno_args = _get_args(param_anno)
            if len(param_anno_args) != 1:
                raise FunctionLoadError(func_name, f"binding {param.name} has invalid Out annotation {param_anno!r}")
            param_py_type = param_anno_args[0]
            # a flat tuple from get_args (func.Out[typing.List[foo]]) is rebuilt, as the worker does
            if isinstance(param_py_type, tuple) and _is_generic_type(param_py_type[0]):
                param_py_type = operator.getitem(param_py_type[0], *param_py_type[1:])
        else:
            param_py_type = param_anno

        if param_has_anno and not isinstance(param_py_type, type) and not _is_generic_type(param_py_type):
            raise FunctionLoadError(func_name, f"binding {param.name} has invalid non-type annotation {param_anno!r}")

        if is_binding_out and param_has_anno and not is_param_out:
            raise FunctionLoadError(
                func_name,
                f'binding {param.name} is declared to have the "out" direction, but its annotation in '
                "Python is not a subclass of azure.functions.Out")

        if not is_binding_out and is_param_out:
            raise FunctionLoadError(
                func_name,
                f'binding {param.name} is declared to have the "in" direction in the function definition '
                "(function.json or function decorators), but its annotation is azure.functions.Out in Python")

        if param_has_anno and param_py_type in (str, bytes) and not has_implicit_output(binding.type):
            param_bind_type = "generic"
        else:
            param_bind_type = binding.type

        if param_has_anno:
            if is_param_out:
                checks_out = _check_output_type_annotation(param_bind_type, param_py_type)
            else:
                checks_out = _check_input_type_annotation(param_bind_type, param_py_type)
            if not checks_out:
                # The worker tests ``binding.data_type is not protos.BindingInfo.undefined``: true for
                # an unset dataType (None) as well, so only an explicit UNDEFINED gets the second text.
                if binding.data_type is None or binding.data_type != _DATA_TYPE_UNDEFINED:
                    raise FunctionLoadError(
                        func_name,
                        f'{param.name!r} binding type "{binding.type}" and dataType "{binding.data_type}" in '
                        "function definition (function.json or function decorators) do not match the "
                        "corresponding function parameter's Python type annotation "
                        f'"{param_py_type.__name__}"')
                raise FunctionLoadError(
                    func_name,
                    f"type of {param.name} binding in function definition (function.json or function "
                    f'decorators) "{binding.type}" does not match its Python annotation '
                    f'"{param_py_type.__name__}"')

        if is_binding_out:
            sig.output_types[param.name] = (param_bind_type, param_py_type)
        else:
            sig.input_types[param.name] = (param_bind_type, param_py_type)


def _get_function_return_type(annotations: dict, has_explicit_return: bool, has_implicit_return: bool,
                              binding_name: str | None, func_name: str) -> tuple[str | None, Any] | None:
    return_pytype = None
    if has_explicit_return and "return" in annotations:
        return_anno = annotations.get("return")
        if (_is_generic_type(return_anno) and _get_origin(return_anno) is not None
                and _get_origin(return_anno).__name__ == "Out"):
            raise FunctionLoadError(func_name, "return annotation should not be azure.functions.Out")
        return_pytype = return_anno
        if not isinstance(return_pytype, type):
            raise FunctionLoadError(func_name, f"has invalid non-type return annotation {return_pytype!r}")
        # (the worker also has ``if return_pytype is (str, bytes): binding_name = 'generic'``, never true)
        if not _check_output_type_annotation(binding_name or "", return_pytype):
            raise FunctionLoadError(
                func_name,
                f'Python return annotation "{return_pytype.__name__}" does not match binding type "{binding_name}"')
    if has_implicit_return and "return" in annotations:
        return_pytype = annotations.get("return")
    if has_explicit_return or has_implicit_return:
        return (binding_name, return_pytype)
    return None


def validate_indexed_function(function: Any) -> IndexedSignature:
    """``Registry.add_indexed_function`` without the registry: check one ``azure.functions`` Function.

    ``function`` is an item of ``app.get_functions()``. Raises :class:`FunctionLoadError` with the
    worker's text; ``typing.get_type_hints`` errors (an annotation that does not resolve) propagate
    as they do in the worker.
    """
    user_fn: Callable[..., Any] = function.get_user_function()
    func_name = function.get_function_name()
    params = dict(inspect.signature(user_fn).parameters)
    annotations = typing.get_type_hints(user_fn)
    has_explicit_return = has_implicit_return = explicit_return_val_set = False
    return_binding_name: str | None = None
    bound_params: dict[str, Any] = {}
    for binding in function.get_bindings():
        _validate_binding_direction(binding.name, binding.direction, func_name)
        # get_explicit_and_implicit_return
        if binding.name == "$return":
            has_explicit_return = True
        elif has_implicit_output(binding.type):
            has_implicit_return = True
            bound_params[binding.name] = binding
        else:
            bound_params[binding.name] = binding
        # get_return_binding: an explicit $return wins over a trigger's implicit output
        if not explicit_return_val_set:
            if binding.name == "$return":
                return_binding_name = binding.type
                explicit_return_val_set = True
            elif has_implicit_output(binding.type):
                return_binding_name = binding.type

    sig = IndexedSignature(requires_context=_is_context_required(params, bound_params, annotations, func_name),
                           has_return=has_explicit_return or has_implicit_return)
    _validate_function_params(params, bound_params, annotations, func_name, sig)
    sig.return_type = _get_function_return_type(annotations, has_explicit_return, has_implicit_return,
                                                return_binding_name, func_name)
    return sig


# ----------------------------------------------------------------------------- loader.build_retry_protos
def check_retry_policy(function: Any) -> None:
    """``loader.build_retry_protos`` without the protos: an ``@app.retry`` setting must parse.

    ``max_retry_count`` goes through ``int()``; ``fixed_delay`` needs ``delay_interval``, any other
    strategy ``minimum_interval`` and ``maximum_interval``, each ``hh:mm:ss`` (``time.strptime(...,
    '%H:%M:%S')``). The worker's ``ValueError``/``TypeError`` propagate unchanged. devhost itself
    does not retry failed executions (see devhost/README.md).
    """
    try:
        retry = function.get_settings_dict("retry_policy")
    except AttributeError:  # the worker logs a warning and goes on without a policy
        return
    if not retry:
        return
    int(retry.get("max_retry_count"))
    if retry.get("strategy") == "fixed_delay":
        time.strptime(retry.get("delay_interval"), "%H:%M:%S")
    else:
        time.strptime(retry.get("minimum_interval"), "%H:%M:%S")
        time.strptime(retry.get("maximum_interval"), "%H:%M:%S")


# ----------------------------------------------------------------------------- loader.index_function_app
def find_function_app(module: Any, script_file_name: str) -> Any:
    """``loader.index_function_app``: the single top-level ``FunctionRegister`` of the module.

    As in the worker, every module-level *name* bound to a ``FunctionApp``/``DFApp`` counts (two
    names for the same object are "more than one"). Raises ``ValueError`` with the worker's text.
    """
    app = None
    for name in module.__dir__():
        value = getattr(module, name, None)
        if isinstance(value, func.FunctionRegister):
            if not app:
                app = value
            else:
                raise ValueError(f"More than one {app.__class__.__name__} or other top level function app "
                                 "instances are defined.")
    if not app:
        raise ValueError(f"Could not find top level function app instances in {script_file_name}.")
    return app
