"""Simulated Entra provisioning service: synchronization templates, jobs, secrets, cycles and logs.

The HTTP layer (``emulator.server`` and friends) routes ``/servicePrincipals/{id}/synchronization/...``
and ``/auditLogs/provisioning`` here; this package holds the behaviour only. It is pure Python and
synchronous: JSON dicts in and out, :class:`emulator.errors.GraphError` for every error answer,
simulated time from :class:`emulator.clock.Clock`. See ``README.md`` in this folder for the
scenarios and the engine's timings.
"""

from emulator.provisioning.catalog import load_catalog
from emulator.provisioning.directory_view import DirectoryView
from emulator.provisioning.scenarios import load_targets
from emulator.provisioning.service import ProvisioningService
from emulator.provisioning.settings import EngineSettings

__all__ = ["DirectoryView", "EngineSettings", "ProvisioningService", "load_catalog", "load_targets"]
