"""Shared fixtures: the local Microsoft cloud emulator, over real HTTPS on loopback.

* ``emulator`` (session): one in-process emulator on a free port for the whole run
  (``emulator.testing.RunningEmulator``: ``.url``, ``.env``, ``.admin``, ``.state``).
* ``emulator_env`` (function): resets the emulator's tenant (seeded directory, Key Vault, default
  faults, empty request log) and sets its environment variables for the test (azure-identity's
  ``AZURE_*``, ``GRAPH_BASE_URL``, ``KEY_VAULT_URL``, ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``...);
  returns the same ``RunningEmulator``.
"""

from __future__ import annotations

import pytest

from emulator.testing import RunningEmulator, start_emulator


@pytest.fixture(scope="session")
def emulator() -> RunningEmulator:
    running = start_emulator(port=0)
    yield running
    running.stop()


@pytest.fixture
def emulator_env(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> RunningEmulator:
    emulator.admin.reset()
    for key, value in emulator.env.items():
        monkeypatch.setenv(key, value)
    return emulator
