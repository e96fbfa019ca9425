"""The one exception tree of the provisioning core.

Why one tree: an activity has to turn every failure into one of three outcomes (architecture.md
section 3) - *permanent* (fail the instance at once), *throttled* (wait on a durable timer, then call
again) or *transient* (raise, so the orchestrator's retry policy retries it). Each class below says
which by its ``kind``; nothing else needs to be inspected.

::

    ProvisioningError                    base: code, message, status?, request_id?; kind
    |-- TransientError                   kind "transient": retry later with backoff
    |   |-- ThrottledError               kind "throttled": retry after ``retry_after`` seconds
    |   |   `-- GraphThrottled           Graph 429 (or 503 with Retry-After) beyond the in-call budget
    |   |-- GraphTransient               Graph 5xx / timeouts / replication lag beyond the wait
    |   `-- SecretUnavailable            Key Vault 5xx / throttled / unreachable
    `-- PermanentError                   kind "permanent": retrying cannot help; tell the operator
        |-- ConfigurationError           bad or missing settings (``problems``)
        |-- InvalidRequest               bad request document (``problems`` with field paths)
        |-- AmbiguousMatch               two or more objects match where one is expected
        |-- NotProvisionable             e.g. template without a provisioning connector
        |-- GraphPermanent               any other Graph 4xx
        |   |-- BadRequest               400
        |   |-- PermissionDenied         401 / 403 - a Graph permission or role is missing
        |   |-- NotFound                 404
        |   |-- Conflict                 409 / 412
        |   `-- InvalidCredentials       validateCredentials refused the target credentials
        `-- SecretError                  Key Vault refused: ``secret_name`` (never the value)
            |-- SecretNotFound           the named secret does not exist (or is disabled)
            `-- SecretAccessDenied       the app's identity may not read it

``GraphError`` is the mix-in every Graph-answered error carries (``status``, ``code``, ``request_id``),
so ``except GraphError`` catches exactly "Graph said no". Messages never contain secret values: the
transport scrubs known secret values out of Graph's messages before building these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One validation problem: a JSON path such as ``instances[3].displayName`` and what is wrong."""

    path: str
    message: str

    def to_dict(self) -> dict:
        return {"path": self.path, "message": self.message}


class ProvisioningError(Exception):
    """Base of every error the core raises on purpose."""

    kind = "permanent"

    def __init__(
        self,
        message: str,
        *,
        code: str = "Error",
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [f"{self.code}: {self.message}"]
        if self.status is not None:
            parts.append(f"(HTTP {self.status}")
            parts[-1] += f", request-id {self.request_id})" if self.request_id else ")"
        return " ".join(parts)

    def to_dict(self, step: str | None = None) -> dict:
        """The JSON error of an activity result (architecture.md section 3)."""
        result: dict[str, Any] = {"kind": self.kind, "code": self.code, "message": self.message}
        if step:
            result["step"] = step
        if self.status is not None:
            result["status"] = self.status
        if self.request_id:
            result["requestId"] = self.request_id
        return result


class TransientError(ProvisioningError):
    """Retrying later may succeed (5xx, timeouts, an object not replicated yet)."""

    kind = "transient"


class ThrottledError(TransientError):
    """The service asked us to wait ``retry_after`` seconds, longer than the in-call budget allows."""

    kind = "throttled"

    def __init__(self, message: str, *, retry_after: float, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = float(retry_after)

    def to_dict(self, step: str | None = None) -> dict:
        result = super().to_dict(step)
        result["retryAfterSeconds"] = round(self.retry_after, 3)
        return result


class PermanentError(ProvisioningError):
    """Retrying cannot help; an operator has to change something (the message says what)."""

    kind = "permanent"


class _WithProblems:
    problems: list[Problem]

    def problems_as_dicts(self) -> list[dict]:
        return [p.to_dict() for p in self.problems]


class ConfigurationError(PermanentError, _WithProblems):
    """Settings are missing or malformed; ``problems`` names every variable at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        text = "; ".join(f"{p.path}: {p.message}" for p in self.problems)
        super().__init__(f"invalid settings: {text}", code="InvalidConfiguration")


class InvalidRequest(PermanentError, _WithProblems):
    """A request document failed validation; ``problems`` lists every bad field with its path."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        text = "; ".join(f"{p.path}: {p.message}" for p in self.problems[:20])
        more = f" (and {len(self.problems) - 20} more)" if len(self.problems) > 20 else ""
        super().__init__(f"invalid request: {text}{more}", code="InvalidRequest")

    def to_dict(self, step: str | None = None) -> dict:
        result = super().to_dict(step)
        result["problems"] = self.problems_as_dicts()
        return result


class AmbiguousMatch(PermanentError):
    """More than one directory object matches where exactly one is expected."""

    def __init__(self, message: str, *, ids: list[str] | None = None) -> None:
        super().__init__(message, code="AmbiguousMatch")
        self.ids = list(ids or [])


class NotProvisionable(PermanentError):
    """The application (template) has no provisioning connector or no synchronization template."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="NotProvisionable")


class GraphError(ProvisioningError):
    """Mix-in: an error answered by Microsoft Graph (``status``, Graph ``code``, ``request_id``)."""


class GraphTransient(GraphError, TransientError):
    """Graph 5xx, a timeout, or an object still not visible after the bounded wait."""


class GraphThrottled(GraphError, ThrottledError):
    """Graph kept answering 429 (or 503 with Retry-After) beyond the in-call retry budget."""


class GraphPermanent(GraphError, PermanentError):
    """Any Graph 4xx that retrying will not fix."""


class BadRequest(GraphPermanent):
    """Graph answered 400: the request was malformed (a bug or a value Graph rejects)."""


class PermissionDenied(GraphPermanent):
    """Graph answered 401/403: the app lacks a Graph permission (or its token was refused).

    ``token_refused``: Graph did not accept the token itself (401 ``InvalidAuthenticationToken``)
    or none could be had (``AuthenticationFailed``) - not a missing permission. ``granted_roles``:
    the permissions the refused token carried (its ``roles`` claim), when known.
    """

    def __init__(self, message: str, *, token_refused: bool = False,
                 granted_roles: tuple[str, ...] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.token_refused = token_refused or self.code == "AuthenticationFailed"
        self.granted_roles = granted_roles
        self.missing: tuple[str, ...] = ()

    def for_step(self, step: str) -> "PermissionDenied":
        """This refusal as the permanent error of activity ``step``: names the step and the Graph
        permission(s) it needs that the identity lacks (``core.permissions``), whatever the status.

        Missing = the step's permissions not in the token's ``roles``; an unreadable token names
        every permission of the step. A token that carries them all is not told to grant them (nor
        is anything listed as missing): Graph refused for another reason. A refused token is left as is.
        """
        from core.permissions import permissions_for

        if self.token_refused:
            return self
        needed = permissions_for(step)
        if not needed:
            return self
        held = set(self.granted_roles) if self.granted_roles is not None else None
        missing = tuple(p for p in needed if held is None or p not in held)
        grant = (f"Grant {', '.join(missing)} with infra/scripts/grant_graph_permissions.py (admin consent; README "
                 "'Graph permissions and why'), then restart the function app; Azure also caches a managed "
                 "identity's tokens, so new permissions can take hours to show (docs/deploy.md, 'Grant Microsoft "
                 "Graph permissions').")
        if held is None:
            text = (f"{step} needs the Graph application permission(s) {', '.join(missing)}; Graph refused the call "
                    f"and the token's roles cannot be read. {grant}")
        elif missing:
            text = (f"{step} needs the Graph application permission(s) {', '.join(missing)}, which the function app's "
                    f"identity lacks. {grant}")
        else:
            text = (f"{step} needs the Graph application permission(s) {', '.join(needed)}, which the function app's "
                    "token carries, yet Graph refused the call: not a missing grant, but e.g. a new object still "
                    "replicating past VISIBILITY_WAIT_SECONDS or a requirement Graph does not document. Run the "
                    "instance again; if it is refused again, quote the request id to Microsoft support.")
        result = PermissionDenied(f"{text} Graph: {self.message}", code=self.code, status=self.status,
                                  request_id=self.request_id, granted_roles=self.granted_roles)
        result.missing = missing
        return result

    def to_dict(self, step: str | None = None) -> dict:
        result = super().to_dict(step)
        if self.missing:
            result["missingPermissions"] = list(self.missing)
        return result


class NotFound(GraphPermanent):
    """Graph answered 404 for an object that should exist."""


class Conflict(GraphPermanent):
    """Graph answered 409/412: the object's state conflicts with the request."""


class InvalidCredentials(GraphPermanent):
    """validateCredentials refused the target app's credentials; ``message`` is Graph's reason."""


class SecretUnavailable(TransientError):
    """Key Vault could not answer now (5xx, throttled, unreachable); names the secret, not its value."""

    def __init__(self, message: str, *, secret_name: str, **kwargs) -> None:
        super().__init__(message, code=kwargs.pop("code", "SecretUnavailable"), **kwargs)
        self.secret_name = secret_name


class SecretError(PermanentError):
    """Key Vault refused a secret; names the secret (``secret_name``), never its value."""

    def __init__(self, message: str, *, secret_name: str, code: str = "SecretError", **kwargs) -> None:
        super().__init__(message, code=code, **kwargs)
        self.secret_name = secret_name


class SecretNotFound(SecretError):
    """The named Key Vault secret does not exist, is disabled, or has no current version."""

    def __init__(self, message: str, *, secret_name: str, **kwargs) -> None:
        super().__init__(message, secret_name=secret_name, code="SecretNotFound", **kwargs)


class SecretAccessDenied(SecretError):
    """The function app's identity may not read the named secret (Key Vault 401/403)."""

    def __init__(self, message: str, *, secret_name: str, **kwargs) -> None:
        super().__init__(message, secret_name=secret_name, code="SecretAccessDenied", **kwargs)
