"""Orchestration instance ids: derived, never random, so a replay, a restart or a re-submission of
the same request addresses the same orchestration and never starts a second one."""

from __future__ import annotations

import hashlib
import json
import re

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._:-]")
#: suffix of an instance's ``monitor_job`` orchestration
MONITOR_SUFFIX = ":monitor"
#: suffix of a sub-batch's watch phase
WATCH_SUFFIX = ":watch"
#: suffix of a rotation's dry run (never the id of the real rotation of that version)
DRY_RUN_SUFFIX = ":dryrun"
#: infix of a health sweep's follow-up rotation of a version (core/steps/rotation_retry.py)
RETRY_INFIX = ":retry-"
#: prefix of a fleet action's ``fleet_action`` orchestration
FLEET_ACTION_PREFIX = "fleet-action:"


def batch_instance_id(request_id: str) -> str:
    """``batch-<requestId>``: the prefix keeps batches apart from other orchestrations (health-sweep)."""
    return "batch-" + _UNSAFE_ID_CHARS.sub("_", request_id)[:200]


def child_instance_id(batch_id: str, key: str) -> str:
    """Id of one instance's ``provision_instance`` orchestration: ``<batchId>:<key>`` (key: hex,
    from ``core.model.instance_key``)."""
    return f"{batch_id}:{key}"


def monitor_instance_id(child_id: str) -> str:
    """Id of the ``monitor_job`` orchestration of one instance: ``<child id>:monitor``."""
    return child_id + MONITOR_SUFFIX


def rotation_instance_id(secret_name: str, version: str, *, dry_run: bool = False) -> str:
    """``rotation-<secret name>-<version>``: one rotation per Key Vault secret version, whoever starts it
    (an Event Grid event, its redelivery, the health sweep, a person); a dry run adds ``:dryrun``."""
    base = f"rotation-{_UNSAFE_ID_CHARS.sub('_', secret_name.lower())[:127]}-{version.lower()}"
    return base + DRY_RUN_SUFFIX if dry_run else base


def rotation_retry_instance_id(rotation_id: str, attempt: int) -> str:
    """``<rotation id>:retry-<n>``: the health sweep's n-th follow-up rotation of a version whose rotation
    left instances ``failed`` (:mod:`core.steps.rotation_retry`)."""
    return f"{rotation_id}{RETRY_INFIX}{attempt}"


def sub_batch_instance_id(batch_id: str, index: int) -> str:
    """Id of one sub-batch (``provision_sub_batch``) of a batch: ``<batchId>:part-00000``. Instance keys
    are hex, so this never names an instance's orchestration."""
    return f"{batch_id}:part-{index:05d}"


def sub_batch_watch_instance_id(batch_id: str, index: int) -> str:
    """Id of a sub-batch's watch phase: ``<batchId>:part-00000:watch``."""
    return sub_batch_instance_id(batch_id, index) + WATCH_SUFFIX


def rollout_instance_id(rollout_id: str) -> str:
    """``rollout-<rolloutId>``: one ``schema_rollout`` per rollout id."""
    return f"rollout-{rollout_id}"


def action_instance_id(action: str, params: dict, targets: list[dict], action_id: str | None) -> str:
    """The orchestration id of a fleet action: the caller's ``actionId``, else a hash of what it does.

    A retried request (same action, parameters and targets) reaches the same orchestration and
    starts nothing new; to repeat an action on purpose, give a new ``actionId``.
    """
    if action_id:
        return f"{FLEET_ACTION_PREFIX}{action_id}"
    canonical = json.dumps({"action": action, "params": params, "targets": sorted(t["servicePrincipalId"] for t in targets)},
                           sort_keys=True, separators=(",", ":"))
    return f"{FLEET_ACTION_PREFIX}{action}:{hashlib.sha256(canonical.encode()).hexdigest()[:24]}"
