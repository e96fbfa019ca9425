"""Process-wide clients: one credential, one Graph client, one SecretClient, one log pacer.

Why: building SDK clients per activity call wastes TLS handshakes and token requests (Functions'
guidance is one client reused by every invocation:
https://learn.microsoft.com/azure/azure-functions/manage-connections#static-clients), and reading
the environment at import time breaks tests (a test sets its environment after importing). Each getter builds its object
on first use from :func:`core.settings.get_settings` and caches it; :func:`reset` forgets them (tests).

One code path for Azure and local: ``DefaultAzureCredential`` picks the managed identity in Azure
and the emulator's ``AZURE_CLIENT_ID/SECRET/TENANT_ID`` + ``AZURE_AUTHORITY_HOST`` locally.
"""

from __future__ import annotations

import functools
from typing import Any

from core.settings import Settings, get_settings


def make_credential(settings: Settings) -> Any:
    """A new ``DefaultAzureCredential`` as the app uses it (its own token cache; the preflight check)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(
        exclude_interactive_browser_credential=True,
        disable_instance_discovery=settings.azure_disable_instance_discovery,
    )


@functools.lru_cache(maxsize=1)
def get_credential() -> Any:
    """The app's token credential (managed identity in Azure, environment credentials locally)."""
    return make_credential(get_settings())


@functools.lru_cache(maxsize=1)
def get_graph() -> Any:
    """The process's :class:`core.graph.transport.GraphClient`."""
    from core.graph.transport import GraphClient

    return GraphClient(get_settings(), get_credential())


def make_secret_client(settings: Settings, credential: Any, **options: Any) -> Any:
    """A Key Vault ``SecretClient`` for the configured vault (``options``: azure-core, e.g. ``retry_total``)."""
    from azure.keyvault.secrets import SecretClient

    return SecretClient(settings.key_vault_url, credential,
                        verify_challenge_resource=settings.key_vault_verify_challenge_resource, **options)


@functools.lru_cache(maxsize=1)
def get_secret_resolver() -> Any:
    """The process's :class:`core.secrets.SecretResolver`."""
    from core.secrets import SecretResolver

    return SecretResolver(make_secret_client(get_settings(), get_credential()))


@functools.lru_cache(maxsize=1)
def get_log_pacer() -> Any:
    """One pacer for provisioning-log reads (Graph allows 5 per 10 s per app and tenant)."""
    from core.graph.provisioning_logs import Pacer

    return Pacer(get_settings().provisioning_log_min_interval_seconds)


def reset() -> None:
    """Forget every cached client and the settings (tests that change the environment)."""
    from core.graph import synchronization, templates, write_limit

    for getter in (get_credential, get_graph, get_secret_resolver, get_log_pacer, get_settings):
        getter.cache_clear()
    templates.clear_cache()
    synchronization.clear_cache()
    write_limit.reset()
    from core import registry

    registry.get_registry.cache_clear()
