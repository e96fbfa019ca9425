"""Orchestration instance ids: derived, never random, so a replay, a restart or a re-submission of
the same request addresses the same orchestration and never starts a second one."""

from __future__ import annotations

import re

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._:-]")
#: suffix of an instance's ``monitor_job`` orchestration
MONITOR_SUFFIX = ":monitor"


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


def rotation_instance_id(secret_name: str, version: str) -> str:
    """``rotation-<secret name>-<version>``: one rotation per Key Vault secret version, whoever starts it
    (an Event Grid event, its redelivery, the health sweep, a person)."""
    return f"rotation-{_UNSAFE_ID_CHARS.sub('_', secret_name.lower())[:127]}-{version.lower()}"
def sub_batch_instance_id(batch_id: str, index: int) -> str:
    """Id of one sub-batch (``provision_sub_batch``) of a batch: ``<batchId>:part-00000``. Instance keys
    are hex, so this never names an instance's orchestration."""
    return f"{batch_id}:part-{index:05d}"
