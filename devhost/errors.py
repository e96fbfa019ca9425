"""Exceptions raised by devhost.

Hierarchy (everything a caller may want to catch derives from :class:`DevhostError`)::

    DevhostError
     ├── AppLoadError          function_app.py cannot be imported or indexed
     ├── FunctionNotFoundError no function with that name (or of that kind) is indexed
     ├── ConfigError           local.settings.json / host.json / a setting reference is invalid
     └── StartupError          a dependency (Azurite, the HTTP port) could not be started

Exceptions raised *by the user's functions* are never wrapped: callers see the function's own
exception, exactly as the Python worker reports it to the host.
"""


class DevhostError(Exception):
    """Base class for devhost's own errors."""


class AppLoadError(DevhostError):
    """The app could not be imported or indexed (syntax error, no FunctionApp, duplicate names)."""


class FunctionNotFoundError(DevhostError, LookupError):
    """No indexed function has this name (or it has another trigger type)."""


class ConfigError(DevhostError):
    """A configuration file or an app setting reference (``%NAME%``) is invalid."""


class StartupError(DevhostError):
    """devhost could not start a dependency such as Azurite or bind its HTTP port."""
