"""The step context (Graph, settings, Key Vault, clock) and the replication-lag wait every step uses."""


from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

from core import errors
from core.graph.transport import GraphClient
from core.settings import Settings

logger = logging.getLogger("core.steps")
T = TypeVar("T")

#: Graph answers that right after a create usually mean "not replicated yet" (Terraform retries 403/409).
_LAG_ERRORS = (errors.NotFound, errors.PermissionDenied, errors.Conflict)
#: instantiate answers after which the app may exist anyway (https://github.com/hashicorp/terraform-provider-azuread/issues/1406 and /issues/936).
_MAYBE_CREATED_STATUSES = frozenset({404, 500, 502, 503, 504})
#: Entra's 400 message for an app role assignment that exists already (lower case).
_DUPLICATE_ASSIGNMENT = "already exists on the object"


@dataclass
class StepContext:
    """What a step needs: Graph, settings, Key Vault, and injectable time (tests observe waits)."""

    graph: GraphClient
    settings: Settings
    secrets: Any = None  # core.secrets.SecretResolver
    pacer: Any = None  # core.graph.provisioning_logs.Pacer
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    #: the activity running the step (set by ``activities.run``): its Graph permissions tell a
    #: refusal from replication lag in :func:`_wait_for`
    step: str | None = None

    @property
    def tag(self) -> str:
        return self.settings.provisioning_correlation_tag


def default_context() -> StepContext:
    """The process-wide context (clients built once per process by :mod:`core.clients`)."""
    from core import clients

    settings = clients.get_settings()
    return StepContext(graph=clients.get_graph(), settings=settings, secrets=clients.get_secret_resolver(),
                       pacer=clients.get_log_pacer())


def _wait_for(ctx: StepContext, what: str, call: Callable[[], T],
              retry_on: tuple[type[errors.ProvisioningError], ...] = _LAG_ERRORS) -> T:
    """Call until it stops failing with a replication-lag error, bounded by VISIBILITY_WAIT_SECONDS.

    After the bound: 403 stays a (permanent) PermissionDenied - a missing permission looks the same
    as lag, and an operator must look; 404/409 become a transient error so the orchestrator retries.
    A 401 is never waited out: it is not a replication answer (Terraform retries 403/404/409 only)
    but the synchronization API's refusal of a missing permission (401 ``UnknownError``) or a
    refused token, so it fails the step at once. Nor is a 403 whose token lacks one of the
    step's permissions (``core.permissions``): the step cannot succeed, waiting only delays that.
    """
    deadline = ctx.monotonic() + ctx.settings.visibility_wait_seconds
    while True:
        try:
            return call()
        except retry_on as caught:
            if isinstance(caught, errors.PermissionDenied) and (caught.status == 401 or caught.token_refused
                                                                or _lacks_step_permission(ctx, caught)):
                raise
            exc = caught if isinstance(caught, errors.ProvisioningError) else errors.ProvisioningError(str(caught))
            if ctx.monotonic() + ctx.settings.visibility_poll_seconds > deadline:
                if isinstance(exc, errors.PermissionDenied):
                    raise
                raise errors.GraphTransient(
                    f"{what}: still {exc.code} after {ctx.settings.visibility_wait_seconds:g} s (replication lag?)",
                    code="NotYetVisible", status=exc.status, request_id=exc.request_id) from None
            logger.info("%s: %s, waiting %.1f s for replication", what, exc.code, ctx.settings.visibility_poll_seconds)
            ctx.sleep(ctx.settings.visibility_poll_seconds)


def _lacks_step_permission(ctx: StepContext, refused: errors.PermissionDenied) -> bool:
    """Whether the refused call's token (its ``roles``) lacks a Graph permission of the running step."""
    from core.permissions import permissions_for

    if refused.granted_roles is None or not ctx.step:
        return False
    return any(p not in refused.granted_roles for p in permissions_for(ctx.step))
