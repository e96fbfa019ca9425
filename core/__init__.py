"""Provisioning core: a pure library (no Azure Functions imports) used by activities, orchestrators and triggers.

Modules: ``names`` (function names), ``settings``, ``errors``, ``odata``, ``model`` (request),
``status`` (job classification), ``secrets`` (Key Vault), ``graph/`` (transport + resources),
``clients`` (one Graph client / SecretClient per process) and ``steps`` (idempotent provisioning steps).
"""
