"""Local stand-in for the Microsoft cloud: Entra token endpoint, Microsoft Graph, Key Vault.

Run it with ``python -m emulator``; use it from tests with :func:`emulator.testing.start_emulator`.
This package file stays import-free on purpose: the provisioning simulation
(``emulator.provisioning``) imports the small shared modules (``errors``, ``clock``, ``odata``)
and must not pull in the HTTP server with them.
"""
