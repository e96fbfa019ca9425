"""Durable engine of devhost: the local stand-in for the Durable Functions extension.

It replays orchestrators through the real ``azure-functions-durable`` SDK, plays the extension's
action shim (see ``replayer``), persists instances, histories and work queues in SQLite
(``store``), runs activities on a bounded worker pool and serves the Durable HTTP management API
(``http_api``, wired by devhost/server.py). ``DurableEngine`` in ``engine`` is the entry point; it is
composed of ``dispatch``, ``activity_workers``, ``episodes`` and ``client_ops`` (module map in README.md).
"""
from devhost.durable.errors import (
    DurableEngineError,
    InstanceExistsError,
    InstanceGone,
    InstanceNotFound,
    InvalidInstanceIdError,
    NonDeterminismError,
    UnknownFunctionError,
)

__all__ = ["DurableEngineError", "InstanceExistsError", "InstanceGone", "InstanceNotFound", "InvalidInstanceIdError",
           "NonDeterminismError", "UnknownFunctionError"]
