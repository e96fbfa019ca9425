"""Everything one running emulator holds: clock, directory, Key Vault, faults, provisioning
simulation and request log, plus reset and JSON persistence (``--state-dir``).

Persistence writes one file, ``tenant.json``, atomically (temporary file + rename), so a crash
mid-write never leaves a torn tenant behind.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.clock import Clock
from emulator.directory import Directory
from emulator.faults import Faults
from emulator.keyvault import SecretStore, load_secrets_file
from emulator.rng import rng_from_state, rng_state

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_SECRETS_FILE = DATA_DIR / "secrets.json"
STATE_FILE = "tenant.json"
STATE_VERSION = 1
REQUEST_LOG_CAPACITY = 100_000

# Used until the provisioning package provides the catalog (keeps the server usable on its own).
_FALLBACK_CATALOG = {
    "applicationTemplates": [
        {
            "id": "8adf8e6e-67b2-4cf2-a259-e3dc5476c621",
            "displayName": "Non-gallery application",
            "homePageUrl": None,
            "supportedSingleSignOnModes": ["password", "saml", "notSupported", "oidc"],
            "supportedProvisioningTypes": ["sync"],
            "logoUrl": None,
            "categories": [],
            "publisher": "Microsoft Corporation",
            "description": None,
        }
    ]
}


@dataclass
class Options:
    """Start options (the CLI flags); all optional."""

    host: str = "127.0.0.1"
    port: int = 8443
    state_dir: Path | None = None
    cert_dir: Path | None = None
    env_file: Path | None = None
    seed: int = 0
    time_scale: float = 1.0
    faults: dict | None = None
    secrets_file: Path | None = None
    directory_settings: dict = field(default_factory=dict)
    provisioning_settings: dict = field(default_factory=dict)


def _load_provisioning():
    """The provisioning package, or None while it is not available (tests of the server alone)."""
    try:
        import emulator.provisioning as provisioning
    except ImportError:
        return None
    return provisioning if hasattr(provisioning, "ProvisioningService") else None


class EmulatorState:
    """The whole mutable world of one emulator process."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.clock = Clock(scale=options.time_scale)
        self.provisioning_module = _load_provisioning()
        if self.provisioning_module is not None:
            self.catalog = self.provisioning_module.load_catalog()
        else:
            self.catalog = _FALLBACK_CATALOG
        self.secret_seed = load_secrets_file(options.secrets_file or DEFAULT_SECRETS_FILE)
        self.request_log: list[dict] = []
        self.directory = Directory(self.clock, options.seed, options.directory_settings)
        self.reset(options.seed, keep_faults=False)

    # -- lifecycle ----------------------------------------------------------------------------
    def reset(self, seed: int | None = None, keep_faults: bool = False) -> None:
        """Back to the seeded initial tenant (same seed: same ids and client secrets)."""
        seed = self.options.seed if seed is None else seed
        self.seed = seed
        self.directory.reset(seed)
        self.clock.scale = self.options.time_scale
        self.kv_rng = random.Random(f"kv-{seed}")
        self.key_vault = SecretStore(lambda: uuid.UUID(int=self.kv_rng.getrandbits(128)).hex)
        self.key_vault.seed(self.secret_seed)
        if not keep_faults:
            self.faults = Faults(self.clock, seed, self.options.faults)
        self.provisioning = self._new_provisioning(seed)
        self.request_log.clear()

    def _new_provisioning(self, seed: int):
        if self.provisioning_module is None:
            return None
        return self.provisioning_module.ProvisioningService(
            self.clock,
            random.Random(f"provisioning-{seed}"),
            self.directory,
            self.catalog,
            dict(self.options.provisioning_settings),
        )

    def advance(self) -> None:
        """Let the provisioning simulation catch up with the clock (called before each request)."""
        if self.provisioning is not None:
            self.provisioning.advance()

    # -- catalog ------------------------------------------------------------------------------
    def templates(self) -> list[dict]:
        if self.provisioning_module is not None:
            from emulator.provisioning.catalog import public_template

            return [public_template(t) for t in self.catalog.get("applicationTemplates", [])]
        return [dict(t) for t in self.catalog["applicationTemplates"]]

    def find_template(self, template_id: str) -> dict | None:
        for template in self.templates():
            if template["id"].lower() == template_id.lower():
                return template
        return None

    # -- request log --------------------------------------------------------------------------
    def log_request(self, entry: dict) -> None:
        if len(self.request_log) >= REQUEST_LOG_CAPACITY:
            del self.request_log[: REQUEST_LOG_CAPACITY // 10]
        self.request_log.append(entry)

    def request_summary(self, entries: list[dict]) -> dict:
        return {
            "byStatus": dict(Counter(str(e["status"]) for e in entries)),
            "byRoute": dict(Counter(f"{e['method']} {e['route']}" for e in entries)),
            "byCaller": dict(Counter(e["caller"] or "anonymous" for e in entries)),
            "byKind": dict(Counter(e["kind"] for e in entries)),
        }

    # -- summary and persistence --------------------------------------------------------------
    def summary(self) -> dict:
        d = self.directory
        summary: dict[str, Any] = {
            "tenantId": d.tenant_id,
            "seed": self.seed,
            "clock": self.clock.to_state(),
            "counts": {
                "applications": len(d.applications),
                "servicePrincipals": len(d.service_principals),
                "users": len(d.users),
                "groups": len(d.groups),
                "appRoleAssignments": len(d.assignments),
                "keyVaultSecrets": len(self.key_vault.secrets),
                "requests": len(self.request_log),
            },
            "clients": [
                {
                    "name": c["name"],
                    "clientId": c["clientId"],
                    "displayName": c["displayName"],
                    "servicePrincipalId": c["servicePrincipalId"],
                    "keyVault": c["keyVault"],
                    "roles": d.roles_of(c["servicePrincipalId"]) if c["servicePrincipalId"] in d.service_principals else [],
                }
                for c in d.clients.values()
            ],
            "graphServicePrincipalId": d.graph_sp_id,
            "directorySettings": dict(d.settings),
            "faults": self.faults.config,
            "provisioningAvailable": self.provisioning is not None,
        }
        return summary

    def to_state(self) -> dict:
        return {
            "version": STATE_VERSION,
            "clock": self.clock.to_state(),
            "directory": self.directory.to_state(),
            "keyVault": self.key_vault.to_state(),
            # The version-id generator continues where it stopped, so a restart never reissues an id.
            "keyVaultRng": rng_state(self.kv_rng),
            "faults": self.faults.config,
            "provisioning": self.provisioning.to_state() if self.provisioning is not None else None,
        }

    def load_state(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state file version {state.get('version')!r}")
        self.clock.load_state(state["clock"])
        self.directory.load_state(state["directory"])
        self.seed = self.directory.seed
        self.key_vault.load_state(state["keyVault"])
        if state.get("keyVaultRng") is not None:
            self.kv_rng.setstate(rng_from_state(state["keyVaultRng"]))
        else:  # a state file from before the generator was saved: fresh ids rather than repeats
            self.kv_rng.seed(uuid.uuid4().int)
        if self.options.faults is None:  # a --faults file given at this start wins over the saved settings
            self.faults.update(state.get("faults") or {}, replace=True)
        self.provisioning = self._new_provisioning(self.seed)
        if self.provisioning is not None and state.get("provisioning") is not None:
            self.provisioning.load_state(state["provisioning"])

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / STATE_FILE
        tmp = folder / (STATE_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.to_state(), handle, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)

    def load(self, folder: Path) -> bool:
        target = folder / STATE_FILE
        if not target.exists():
            return False
        self.load_state(json.loads(target.read_text(encoding="utf-8")))
        return True
