"""Key Vault secrets (data plane) for one vault: versions kept, Key Vault's JSON and error shapes.

Served path-based on the emulator origin (``KEY_VAULT_URL`` is the origin itself), which is how
``SecretClient`` builds its URLs (``{vault_url}/secrets/{name}/{version}?api-version=...``). The
401 bearer challenge and the per-client access flag are enforced by the route layer.
"""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path

NAME_RE = re.compile(r"^[0-9A-Za-z-]{1,127}$")


class KeyVaultError(Exception):
    """An error in Key Vault's envelope: ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, inner: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.inner = inner

    def body(self) -> dict:
        error: dict = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return {"error": error}


def load_secrets_file(path: Path) -> dict[str, dict]:
    """Read a seed file: ``{"secrets": {"name": "value" | {"value", "contentType", "tags"}}}``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    entries = data.get("secrets", data) if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: expected an object with a 'secrets' object")
    result: dict[str, dict] = {}
    for name, entry in entries.items():
        if name.startswith("_"):
            continue  # comments
        if not NAME_RE.match(name):
            raise ValueError(f"{path}: invalid secret name {name!r} (allowed: letters, digits, '-')")
        spec = {"value": entry} if isinstance(entry, str) else entry
        if not isinstance(spec, dict) or not isinstance(spec.get("value"), str):
            raise ValueError(f"{path}: secret {name!r} needs a string value")
        result[name] = spec
    return result


class SecretStore:
    """All versions of all secrets of the vault, oldest first per name."""

    def __init__(self, new_version) -> None:
        self._new_version = new_version
        self.secrets: dict[str, list[dict]] = {}

    def seed(self, entries: dict[str, dict]) -> None:
        for name, spec in entries.items():
            self.set(name, spec["value"], spec.get("contentType"), spec.get("tags"))

    def canonical(self, name: str) -> str:
        """The stored spelling of ``name``: Key Vault object names are case-insensitive (DOC).

        A secret keeps the spelling it was created with (UNCONFIRMED: the spelling real Key Vault
        echoes in ``id`` when a later call uses another case); an unknown name is returned as given.
        """
        if name in self.secrets:
            return name
        lowered = name.lower()
        return next((stored for stored in self.secrets if stored.lower() == lowered), name)

    def set(self, name: str, value: str, content_type: str | None = None, tags: dict | None = None,
            expires: int | None = None) -> dict:
        if not NAME_RE.match(name):
            raise KeyVaultError(400, "BadParameter", "The request URI contains an invalid name: " + name)
        name = self.canonical(name)
        now = int(time.time())
        taken = {v["version"] for v in self.secrets.get(name, [])}
        version_id = self._new_version()
        while version_id in taken:  # a version id names one version only
            version_id = self._new_version()
        version = {
            "version": version_id,
            "value": value,
            "contentType": content_type,
            "tags": dict(tags or {}),
            "created": now,
            "updated": now,
            "enabled": True,
        }
        if expires is not None:  # SecretAttributes.exp, unix seconds (Set Secret's request body)
            version["expires"] = int(expires)
        self.secrets.setdefault(name, []).append(version)
        return version

    def get(self, name: str, version: str | None) -> dict:
        versions = self.secrets.get(self.canonical(name))
        if not versions:
            raise KeyVaultError(
                404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
            )
        if not version:
            return versions[-1]
        for candidate in versions:
            if candidate["version"] == version.lower():
                return candidate
        raise KeyVaultError(
            404, "SecretNotFound", f"A secret with (name/id) {name}/{version} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        )

    def to_state(self) -> dict:
        return copy.deepcopy(self.secrets)

    def load_state(self, state: dict) -> None:
        self.secrets = copy.deepcopy(state)


def _attributes(version: dict) -> dict:
    attributes = {
        "enabled": version["enabled"],
        "created": version["created"],
        "updated": version["updated"],
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    }
    if version.get("expires") is not None:
        # exp: "Expiry date in UTC" as unix seconds, https://learn.microsoft.com/rest/api/keyvault/secrets/set-secret/set-secret#secretattributes
        attributes["exp"] = version["expires"]
    return attributes


def secret_bundle(vault_url: str, name: str, version: dict) -> dict:
    """The SecretBundle JSON (value included)."""
    body = {
        "value": version["value"],
        "id": f"{vault_url}/secrets/{name}/{version['version']}",
        "attributes": _attributes(version),
        "tags": version["tags"],
    }
    if version.get("contentType"):
        body["contentType"] = version["contentType"]
    return body


def secret_item(vault_url: str, name: str, version: dict, with_version: bool) -> dict:
    """A SecretItem for list answers (never the value)."""
    item_id = f"{vault_url}/secrets/{name}" + (f"/{version['version']}" if with_version else "")
    item = {"id": item_id, "attributes": _attributes(version), "tags": version["tags"]}
    if version.get("contentType"):
        item["contentType"] = version["contentType"]
    return item
