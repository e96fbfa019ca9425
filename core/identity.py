"""Why a token could not be had: a passing outage (retry later) or a configuration problem (fix it).

azure-identity reports both as ``ClientAuthenticationError``: a refused connection to the token
endpoint (a managed-identity endpoint restarting, a network blip) and a wrong client secret or a
missing identity. Failing an instance for the first would be wrong - the same outage one hop later,
talking to Graph or Key Vault, is retried - and retrying the second forever would hide it. So the
cause is looked for along the exception chain (``inner_exception``, ``__cause__``,
``__context__``): a network error, or an answer of 408/429/5xx from the token endpoint, is
transient; anything else, including a 4xx answer (``invalid_client``, ``AADSTS...``) and a
credential that is not configured, stays permanent.

``DefaultAzureCredential`` wraps what its credentials raised into one message and keeps no chain,
so its message is searched for the network failures requests/urllib3 describe (UNCONFIRMED that
every azure-identity version words them this way; a miss only makes an outage permanent, as before).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from azure.core.exceptions import ServiceRequestError, ServiceResponseError

_NETWORK_TYPES: tuple[type[BaseException], ...] = (ServiceRequestError, ServiceResponseError, ConnectionError,
                                                  TimeoutError)
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: What requests/urllib3 say about a failed connection or read, as azure-identity quotes it.
_NETWORK_WORDS = re.compile(
    r"Failed to establish a new connection|Connection refused|Connection reset|Connection aborted|"
    r"Max retries exceeded|Read timed out|timed out|Name or service not known|Temporary failure in name resolution|"
    r"RemoteDisconnected|IncompleteRead", re.IGNORECASE)
_MAX_CHAIN = 10


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) if response is not None else getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _chain(exc: BaseException):
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        yield current
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else (current.__cause__ or current.__context__)


def token_failure_is_transient(exc: BaseException) -> bool:
    """True when getting a token failed for a reason that passes (network, 408/429/5xx), not configuration."""
    for link in _chain(exc):
        status = _status(link)
        if status is not None:
            return status in _TRANSIENT_STATUS  # the token endpoint answered: its status decides
        if isinstance(link, _NETWORK_TYPES):
            return True
    return bool(_NETWORK_WORDS.search(str(exc)))


def decode_claims(token: str) -> dict[str, Any]:
    """A JWT's payload, decoded without verifying the signature (only Graph verifies our token; we read it).

    The one decoder of the app: the preflight reads the token's ``roles`` with it, and
    :meth:`core.graph.transport.GraphClient.granted_roles` names the roles of a refused call's token.
    Raises ``ValueError`` for anything that is not a JWT with a JSON object payload.
    """
    parts = token.split(".")
    if len(parts) < 2:
        raise ValueError("the token is not a JWT")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    if not isinstance(claims, dict):
        raise ValueError("the token payload is not a JSON object")
    return claims
