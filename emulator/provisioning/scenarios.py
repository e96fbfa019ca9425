"""Which behaviour a job's simulated target shows, chosen by data.

A job's target is identified by the credentials saved on its service principal: the template's
``address`` key (``BaseAddress`` for SCIM apps) and ``token`` key (``SecretToken``). The rules,
in order (also in README.md and ``emulator/data/targets.json``):

1. An empty or missing token is ``invalidCredentials``.
2. A ``targets.json`` entry whose ``address`` equals the address (ignoring case and a trailing
   ``/``) and whose ``templateId``, if given, equals the sync template id: its ``scenario`` when
   the entry has no ``token`` or the token matches, else ``invalidCredentials``.
3. The naming rule: split the address, then the token, at ``/ . : ? & = @ # ,`` and whitespace;
   the first piece that names a scenario (ignoring case, ``-`` and ``_``) wins, e.g.
   ``https://escrow-failures.scim.test/scim/v2`` or ``https://scim.test/never_steady``.
4. ``defaultScenario`` (``healthy``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from emulator.provisioning.catalog import DATA_DIR

TARGETS_PATH = DATA_DIR / "targets.json"
SCENARIOS = ("healthy", "invalidCredentials", "escrowFailures", "tooManyDeletes", "slowInitialCycle", "neverSteady",
             "scimNonCompliant")
_SPLIT = re.compile(r"[/.:?&=@#,\s]+")


def _norm(text: str) -> str:
    return text.replace("-", "").replace("_", "").lower()


_BY_NORM = {_norm(name): name for name in SCENARIOS}


@dataclass(frozen=True)
class Scenario:
    """The resolved behaviour of one target plus its parameters from targets.json."""

    name: str
    params: dict = field(default_factory=dict)
    source: str = "default"

    @property
    def accepts_credentials(self) -> bool:
        """Whether validateCredentials succeeds and cycles can connect."""
        return self.name != "invalidCredentials"


def load_targets(path: str | Path | None = None) -> dict:
    """Load and check ``targets.json`` (unknown scenario names are a ValueError)."""
    with open(Path(path) if path else TARGETS_PATH, encoding="utf-8") as handle:
        data = json.load(handle)
    data.setdefault("targets", [])
    data.setdefault("scenarios", {})
    data.setdefault("defaultScenario", "healthy")
    for entry in data["targets"]:
        if entry.get("scenario") not in SCENARIOS:
            raise ValueError(f"targets.json: unknown scenario {entry.get('scenario')!r} for {entry.get('address')!r}")
    if data["defaultScenario"] not in SCENARIOS:
        raise ValueError(f"targets.json: unknown defaultScenario {data['defaultScenario']!r}")
    return data


def scenario_from_name(text: str) -> str | None:
    """The scenario named by one piece of an address or token, if any."""
    for piece in _SPLIT.split(text or ""):
        name = _BY_NORM.get(_norm(piece)) if piece else None
        if name:
            return name
    return None


def resolve(targets: dict, address: str, token: str, sync_template_id: str | None = None) -> Scenario:
    """Apply the rules of this module's docstring."""

    def make(name: str, source: str) -> Scenario:
        return Scenario(name, dict(targets.get("scenarios", {}).get(name, {})), source)

    if not token:
        return make("invalidCredentials", "missing token")
    wanted = (address or "").strip().rstrip("/").lower()
    for entry in targets.get("targets", []):
        if entry.get("address", "").strip().rstrip("/").lower() != wanted or not wanted:
            continue
        if entry.get("templateId") and entry["templateId"] != sync_template_id:
            continue
        if entry.get("token") is not None and entry["token"] != token:
            return make("invalidCredentials", "targets.json (token mismatch)")
        return make(entry["scenario"], "targets.json")
    named = scenario_from_name(address) or scenario_from_name(token)
    if named:
        return make(named, "naming rule")
    return make(targets.get("defaultScenario", "healthy"), "default")


def target_identity(sync: dict, values: dict) -> tuple[str, str]:
    """(address, token) of the simulated target from credential values, per the template's roles."""
    creds = sync.get("credentials") or [{"key": "BaseAddress", "role": "address"}, {"key": "SecretToken", "role": "token"}]
    address = token = ""
    for cred in creds:
        value = values.get(cred["key"]) or cred.get("default") or ""
        if cred.get("role") == "address":
            address = value
        elif cred.get("role") == "token":
            token = value
    return address, token
