"""Exception tree of the durable engine.

DurableEngineError
├── UnknownFunctionError      start of / call to a function the app does not define (HTTP 400)
├── InvalidInstanceIdError    instance id the extension would refuse (HTTP 400)
├── InstanceExistsError       start_new on an instance that is still running (HTTP 500, as Azure)
├── InstanceNotFound          no instance with that id (HTTP 404)
├── InstanceGone              the instance already finished (HTTP 410)
├── NonDeterminismError       orchestrator replay diverges from its history (instance fails)
└── TooManyActionsError       more actions than host.json maxOrchestrationActions (instance fails)
"""


class DurableEngineError(Exception):
    """Base class of every error the durable engine raises on purpose."""


class UnknownFunctionError(DurableEngineError):
    """The named orchestrator or activity is not defined by the app."""


class InvalidInstanceIdError(DurableEngineError):
    """Instance ids are at most 256 characters, never start with '@' nor contain / \\ # ? or control characters."""


class InstanceExistsError(DurableEngineError):
    """An instance with that id is Pending, Running or Suspended (not an overridable state)."""


class NonDeterminismError(DurableEngineError):
    """The actions the orchestrator returned do not match what its history says it did before."""


class InstanceNotFound(DurableEngineError):
    """No instance with that id (HTTP 404)."""


class InstanceGone(DurableEngineError):
    """The instance already finished, so it cannot take events or be terminated again (HTTP 410)."""


class TooManyActionsError(DurableEngineError):
    """The orchestration scheduled more actions than ``maxOrchestrationActions`` allows (default 100,000)."""
