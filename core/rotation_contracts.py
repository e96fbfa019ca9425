"""Typed contracts of the credential-rotation family (same rules as :mod:`core.contracts`).

``rotate_secret`` (orchestration) takes :class:`RotateSecretInput` and returns a
:class:`RotationReport`; its activities take the inputs below. Nothing here holds a secret value:
Key Vault secret names and version ids only.
"""

from __future__ import annotations

import dataclasses
import json
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


def _canary_map(value: Any, path: str) -> list[Problem]:
    if not isinstance(value, dict):
        return [Problem(path, "must be an object: application template id -> canary subject")]
    problems = []
    for template_id, subject in value.items():
        if not (isinstance(template_id, str) and GUID.match(template_id)):
            problems.append(Problem(f"{path}.{template_id}", "must be an application template id (GUID)"))
        problems += _canary(subject, f"{path}.{template_id}")
    return problems


def parse_canary_by_template(text: str, path: str = "ROTATION_CANARY_BY_TEMPLATE") -> dict[str, dict[str, str]]:
    """``{"<application template id>": "User:<object id>" | "Group:<object id>", ...}`` (JSON) -> template id
    (lower case) -> provisionOnDemand subject; empty text -> ``{}``. A bad entry is a field-level InvalidRequest."""
    text = (text or "").strip()
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise InvalidRequest([Problem(path, 'must be a JSON object {"<template id>": "User:<object id>", ...}')]) from None
    if not isinstance(raw, dict):
        raise InvalidRequest([Problem(path, 'must be a JSON object {"<template id>": "User:<object id>", ...}')])
    out: dict[str, dict[str, str]] = {}
    problems: list[Problem] = []
    for template_id, value in raw.items():
        where = f"{path}.{template_id}"
        if not GUID.match(str(template_id)):
            problems.append(Problem(where, "must be an application template id (GUID)"))
            continue
        try:
            subject = parse_canary(value if isinstance(value, str) else "?", where)
        except InvalidRequest as exc:
            problems += exc.problems
            continue
        if subject is not None:
            out[str(template_id).lower()] = subject
    if problems:
        raise InvalidRequest(problems)
    return out


SECRET = {"check": _secret_name}
CANARY_MAP = {"check": _canary_map}
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
    #: a provisionOnDemand subject ``{objectId, objectTypeName}`` run after the save (post-rotation canary):
    #: the rotation request's, which wins over the instance's own (its notes) and the two defaults below
    canary: dict[str, str] | None = dataclasses.field(default=None, metadata=CANARY)
    #: ``ROTATION_CANARY_BY_TEMPLATE`` (template id lower case -> subject), for an instance without its own
    canary_by_template: dict[str, dict[str, str]] | None = dataclasses.field(default=None, metadata=CANARY_MAP)
    #: ``ROTATION_CANARY``: the last fallback
    default_canary: dict[str, str] | None = dataclasses.field(default=None, metadata=CANARY)


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
    #: the canary: the request's (wins), else per instance its notes' ``canary``, else ``canaryByTemplate``
    #: (``ROTATION_CANARY_BY_TEMPLATE``) of its template, else ``defaultCanary`` (``ROTATION_CANARY``)
    canary: dict[str, str] | None = dataclasses.field(default=None, metadata=CANARY)
    canary_by_template: dict[str, dict[str, str]] | None = dataclasses.field(default=None, metadata=CANARY_MAP)
    default_canary: dict[str, str] | None = dataclasses.field(default=None, metadata=CANARY)
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
        names.REBUILD_FLEET_REGISTRY: (RebuildRegistryInput, RebuildRegistryOutput),
    })


_register()
