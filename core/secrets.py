"""Resolve credential references against Key Vault, inside the activity that needs the values.

Why here: orchestration inputs, outputs and exceptions are stored in the task hub in clear, and
Microsoft's advice is to fetch secrets inside activities and never pass them to or from orchestrators
("Working with sensitive data" in
https://learn.microsoft.com/azure/azure-functions/durable/durable-functions-serialization-and-persistence),
so requests carry only Key Vault secret *names*. The activity that PUTs
the secrets to Graph calls :meth:`SecretResolver.resolve`, hands the values straight to the Graph
call, and returns only the Key Vault *versions* (so freshness can be tracked and a rotation seen).

Key Vault errors become :mod:`core.errors` classes that name the secret, never its value:
missing/disabled -> SecretNotFound, 401/403 -> SecretAccessDenied (both permanent),
429/5xx/network -> SecretUnavailable (transient).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from core import errors
from core.identity import token_failure_is_transient
from core.model import SecretRef

logger = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class ResolvedCredentials:
    """Credential values ready for Graph, plus the Key Vault version of every referenced secret.

    ``repr`` hides the values, so an accidental log line or traceback cannot show them.
    """

    values: dict[str, str] = field(repr=False)
    versions: dict[str, str]
    #: ``{key: ISO 8601 expiry}`` of the referenced versions that have one (Key Vault's ``exp``)
    expires: dict[str, str] = field(default_factory=dict)

    def secret_values(self) -> list[str]:
        """The values that came from Key Vault (to scrub from Graph error messages)."""
        return [self.values[k] for k in self.versions]


class SecretResolver:
    """Reads referenced secrets with one ``SecretClient`` (built once per process by :mod:`core.clients`)."""

    def __init__(self, secret_client: Any) -> None:
        self._client = secret_client

    def read(self, name: str) -> tuple[str, str]:
        """``(value, version)`` of the current version of secret ``name``."""
        value, version, _ = self.read_with_expiry(name)
        return value, version

    def read_with_expiry(self, name: str) -> tuple[str, str, str | None]:
        """``(value, version, expires)`` of the current version (``expires``: ISO 8601 of Key Vault's ``exp``, or None)."""
        try:
            secret = self._client.get_secret(name)
        except ResourceNotFoundError:
            raise errors.SecretNotFound(
                f"Key Vault secret '{name}' does not exist; create it or fix the reference", secret_name=name,
                status=404) from None
        except ClientAuthenticationError as exc:
            if token_failure_is_transient(exc):  # the token endpoint is unreachable or busy: try again later
                raise errors.SecretUnavailable(
                    f"could not get a Key Vault token to read secret '{name}' now: {type(exc).__name__}",
                    secret_name=name) from None
            raise errors.SecretAccessDenied(
                f"could not authenticate to Key Vault to read secret '{name}': {type(exc).__name__}",
                secret_name=name) from None
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status in (401, 403):
                raise errors.SecretAccessDenied(
                    f"Key Vault refused to return secret '{name}' (HTTP {status}): grant the function app's identity "
                    "'Key Vault Secrets User' on the vault, or enable the secret", secret_name=name,
                    status=status) from None
            if status == 429 or status >= 500:
                raise errors.SecretUnavailable(f"Key Vault could not return secret '{name}' now (HTTP {status})",
                                               secret_name=name, status=status) from None
            raise errors.SecretError(f"Key Vault refused secret '{name}' (HTTP {status})", secret_name=name,
                                     status=status) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise errors.SecretUnavailable(f"Key Vault unreachable while reading secret '{name}': {type(exc).__name__}",
                                           secret_name=name) from None
        if secret.value is None or secret.value == "":
            raise errors.SecretNotFound(f"Key Vault secret '{name}' has no value", secret_name=name)
        version = str(secret.properties.version or "")
        logger.info("read Key Vault secret %s (version %s)", name, version)
        expires_on = getattr(secret.properties, "expires_on", None)
        return secret.value, version, (expires_on.isoformat() if expires_on is not None else None)

    def current_properties(self, name: str) -> dict[str, Any] | None:
        """``{version, expires, enabled}`` of the current version of ``name``: properties only, never the value.

        The current version is the newest enabled one (what Get Secret without a version returns);
        read with List Secret Versions, which answers SecretItems without values
        (https://learn.microsoft.com/rest/api/keyvault/secrets/get-secret-versions/get-secret-versions).
        None when the secret does not exist.
        """
        items = self._version_properties(name)
        enabled = [p for p in items if p.enabled is not False]
        if not enabled:
            return None
        epoch = _EPOCH
        current = sorted(enabled, key=lambda p: p.created_on or epoch)[-1]  # stable: the last listed wins a tie
        return {"version": str(current.version or ""),
                "expires": current.expires_on.isoformat() if current.expires_on else None}

    def version_expires(self, name: str, version: str) -> str | None:
        """``expires`` (ISO 8601) of one version of ``name`` (properties only), None when it has none or is unknown."""
        for item in self._version_properties(name):
            if str(item.version or "") == version:
                return item.expires_on.isoformat() if item.expires_on else None
        return None

    def _version_properties(self, name: str) -> list[Any]:
        try:
            return list(self._client.list_properties_of_secret_versions(name))
        except ResourceNotFoundError:
            return []
        except HttpResponseError as exc:
            raise errors.SecretUnavailable(f"Key Vault could not list versions of secret '{name}' "
                                           f"(HTTP {exc.status_code})", secret_name=name,
                                           status=exc.status_code or 0) from None

    def resolve(self, credentials: Mapping[str, "str | SecretRef"]) -> ResolvedCredentials:
        """Literal values pass through; references are read from Key Vault (each secret name once)."""
        values: dict[str, str] = {}
        versions: dict[str, str] = {}
        expires: dict[str, str] = {}
        cache: dict[str, tuple[str, str, str | None]] = {}
        for key, ref in credentials.items():
            if isinstance(ref, SecretRef):
                if ref.key_vault_secret not in cache:
                    cache[ref.key_vault_secret] = self.read_with_expiry(ref.key_vault_secret)
                values[key], versions[key], expiry = cache[ref.key_vault_secret]
                if expiry:
                    expires[key] = expiry
            else:
                values[key] = str(ref)
        return ResolvedCredentials(values=values, versions=versions, expires=expires)
