"""The one exception the emulator raises for every Graph-style error answer.

Raised anywhere (routing, directory, provisioning simulation, faults); the server turns it into the
OData error envelope ``{"error": {"code", "message", "innerError": {"date", "request-id",
"client-request-id"}}}`` plus the ``request-id``, ``client-request-id`` and ``date`` headers, so no
module ever has to build an error body by hand.

The other error types of the emulator, each answered in its own service's shape:
``identity.TokenRequestError`` (Entra's ``error``/``error_description``/``error_codes``),
``identity.InvalidToken`` (becomes a Graph 401 or a Key Vault 401 challenge),
``keyvault.KeyVaultError`` (``{"error": {"code", "message"}}``), and on the client side
``testing.AdminError`` (an admin API call failed).
"""

from __future__ import annotations


class GraphError(Exception):
    """An error answer: HTTP ``status``, Graph ``code`` (what clients branch on), ``message``.

    ``headers`` are extra response headers (for example ``Retry-After`` on a 429).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def not_found(object_id: str) -> GraphError:
    """The directory's standard 404 wording (as captured from real responses)."""
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
    )


def bad_request(message: str, code: str = "Request_BadRequest") -> GraphError:
    """A 400 with the directory's generic code unless the caller names a more specific one."""
    return GraphError(400, code, message)
