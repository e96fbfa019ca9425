"""Typed contracts of the credential-rotation family (same rules as :mod:`core.contracts`).

``rotate_secret`` (orchestration) takes :class:`RotateSecretInput` and returns a
:class:`RotationReport`; its activities take the inputs below. Nothing here holds a secret value:
Key Vault secret names and version ids only.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from core.contracts import Contract, Input, listed, mapped
from core.errors import InvalidRequest, Problem

#: Key Vault object names: 1-127 of 0-9 a-z A-Z - (https://learn.microsoft.com/azure/key-vault/general/about-keys-secrets-certificates#object-identifiers)
SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
#: a version id is 32 hex characters
VERSION = re.compile(r"^[0-9A-Fa-f]{32}$")


def _secret_name(value: Any, path: str) -> list[Problem]:
    return [] if isinstance(value, str) and SECRET_NAME.match(value) else [
        Problem(path, "must be a Key Vault secret name (1-127 letters, digits and dashes)")]


def _version(value: Any, path: str) -> list[Problem]:
    return [] if isinstance(value, str) and VERSION.match(value) else [
        Problem(path, "must be a Key Vault version id (32 hexadecimal characters)")]


def _canary(value: Any, path: str) -> list[Problem]:
    ok = (isinstance(value, dict) and set(value) == {"objectId", "objectTypeName"}
          and isinstance(value.get("objectId"), str) and GUID.match(value["objectId"])
          and value.get("objectTypeName") in ("User", "Group"))
    return [] if ok else [Problem(path, 'must be {"objectId": <object id>, "objectTypeName": "User" or "Group"}')]


GUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
CANARY = {"check": _canary}


def parse_canary(text: str, path: str = "ROTATION_CANARY") -> dict[str, str] | None:
    """``User:<object id>`` / ``Group:<object id>`` -> a provisionOnDemand subject; ``none`` or empty -> None."""
    text = (text or "").strip()
    if not text or text.lower() == "none":
        return None
    kind, _, object_id = text.partition(":")
    subject = {"objectId": object_id.strip(), "objectTypeName": kind.strip().capitalize()}
    problems = _canary(subject, path)
    if problems:
        raise InvalidRequest(problems)
    return subject


SECRET = {"check": _secret_name}
VERSION_ID = {"check": _version}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ListSecretDependentsInput(Input):
    secret_name: str = dataclasses.field(metadata=SECRET)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SecretDependent(Contract):
    service_principal_id: str | None = None
    display_name: str | None = None
    instance_key: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ListSecretDependentsOutput(Contract):
    instances: list[SecretDependent] = listed()


@dataclasses.dataclass(frozen=True, kw_only=True)
class RotateInstanceInput(Input):
    service_principal_id: str
    secret_name: str = dataclasses.field(metadata=SECRET)
    version: str = dataclasses.field(metadata=VERSION_ID)
    dry_run: bool = False
    #: a provisionOnDemand subject ``{objectId, objectTypeName}`` run after the save (post-rotation canary)
    canary: dict[str, str] | None = dataclasses.field(default=None, metadata=CANARY)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RotateInstanceOutput(Contract):
    service_principal_id: str | None = None
    display_name: str | None = None
    outcome: str | None = None
    reason: str | None = None
    restarted: bool = False
    job_id: str | None = None
    code: str | None = None
    secret_versions: dict[str, str] | None = None
    rotated_at: str | None = None
    #: the post-rotation canary: ``{objectId, status, errorCode?, confirmed}``
    canary: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckInstanceLagInput(Input):
    service_principal_id: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class SecretRotation(Contract):
    secret_name: str | None = None
    version: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckInstanceLagOutput(Contract):
    service_principal_id: str | None = None
    lags: bool = False
    secrets: dict[str, Any] = mapped()
    #: one ``rotate_secret`` input per lagging secret; start each with ``rotation_instance_id``
    rotations: list[SecretRotation] = listed()


@dataclasses.dataclass(frozen=True, kw_only=True)
class RebuildRegistryInput(Input):
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class RebuildRegistryOutput(Contract):
    instances: int = 0
    removed: list[str] = listed()


@dataclasses.dataclass(frozen=True, kw_only=True)
class RotateSecretInput(Input):
    """``rotate_secret``'s input: the secret and the version to bring every referencing instance to."""

    secret_name: str = dataclasses.field(metadata=SECRET)
    version: str = dataclasses.field(metadata=VERSION_ID)
    dry_run: bool = False
    #: what started it: ``event`` (Event Grid), ``sweep``, ``http``
    source: str | None = None
    canary: dict[str, str] | None = dataclasses.field(default=None, metadata=CANARY)
    options: dict[str, Any] = mapped()


@dataclasses.dataclass(frozen=True, kw_only=True)
class RotationReport(Contract):
    rotation_id: str | None = None
    secret_name: str | None = None
    version: str | None = None
    source: str | None = None
    dry_run: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    counts: dict[str, int] = mapped()
    instances: list[RotateInstanceOutput] = listed()


def _register() -> None:
    from core import names
    from core.contracts import ACTIVITY_CONTRACTS

    ACTIVITY_CONTRACTS.update({
        names.LIST_SECRET_DEPENDENTS: (ListSecretDependentsInput, ListSecretDependentsOutput),
        names.ROTATE_INSTANCE: (RotateInstanceInput, RotateInstanceOutput),
        names.CHECK_INSTANCE_LAG: (CheckInstanceLagInput, CheckInstanceLagOutput),
        names.REBUILD_FLEET_REGISTRY: (RebuildRegistryInput, RebuildRegistryOutput),
    })


_register()
