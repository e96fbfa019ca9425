"""The health sweep's follow-up rotations (issue #12 point 4, "a missed event changes nothing for long").

The sweep's rotation safety net starts the rotation of a lagging Key Vault secret version under the
Event Grid path's id (:func:`core.instance_ids.rotation_instance_id`) and starts nothing when that
rotation exists. A rotation that completed but left an instance ``failed`` (a transient failure
beyond the activity's retries: Graph unavailable, a throttle beyond its budget, the registry not
read) would leave that instance lagging until the next Key Vault version, reported every sweep with
``started: false``. So when the rotation under that id has finished with retryable failures, the
sweep starts a follow-up rotation of the same version under a derived deterministic id
(:func:`core.instance_ids.rotation_retry_instance_id`: ``<rotation id>:retry-<n>``, n = 1 ..
:data:`ROTATION_SWEEP_RETRIES`), one per sweep at most, never while one of the chain still runs.

Retryable: an instance whose outcome is ``failed``, or the orchestration itself ``Failed`` (nothing
is known of its instances). Not retryable: ``invalid`` (the target refused the version's set:
retrying hourly would only repeat the refusal), ``superseded``, ``notOurs``, ``notReferenced``,
``rotated``, ``alreadyCurrent``; and a rotation a person ``Terminated`` (their decision stands).
A follow-up rotation is the same ``rotate_secret`` input: per instance it is idempotent
(``alreadyCurrent`` writes nothing), so it touches only what still lags.

Pure functions over the Durable statuses (runtime status and output) of the chain; the activity
``start_sweep_rotation`` reads them with the Durable client and starts what :func:`plan_sweep_rotation`
says. Idempotent under activity retries and duplicate sweeps: the ids are deterministic and a start
finds an existing instance instead of starting a second one.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from core.instance_ids import rotation_retry_instance_id

#: the most follow-up rotations the sweep starts for one version (after that the instance is reported
#: as lagging, as before, until a person or a newer Key Vault version rotates it)
ROTATION_SWEEP_RETRIES = 3

#: the rotation is still running (or will): start nothing
RUNNING = "running"
#: finished with nothing the sweep should retry
DONE = "done"
#: finished with instances left ``failed`` (or failed as an orchestration)
RETRYABLE = "retryable"

_RUNNING_STATUSES = frozenset({"Pending", "Running", "ContinuedAsNew", "Suspended"})
#: the per-instance outcome a follow-up rotation may fix (core.steps.rotation's outcomes are final)
RETRYABLE_OUTCOME = "failed"


def rotation_state(runtime_status: str | None, output: Any) -> str:
    """``running``, ``done`` or ``retryable`` for one rotation's Durable runtime status and output
    (:class:`core.rotation_contracts.RotationReport` JSON; a JSON string is parsed)."""
    status = str(runtime_status or "")
    if status in _RUNNING_STATUSES:
        return RUNNING
    if status == "Failed":
        return RETRYABLE
    if status != "Completed":
        return DONE  # Terminated or Canceled: a person stopped it
    return RETRYABLE if retryable_failures(output) else DONE


def retryable_failures(output: Any) -> int:
    """How many instances a finished rotation's report left ``failed``."""
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except ValueError:
            return 0
    if not isinstance(output, dict) or output.get("dryRun"):
        return 0
    instances = output.get("instances")
    if isinstance(instances, list):
        return sum(1 for i in instances if isinstance(i, dict) and i.get("outcome") == RETRYABLE_OUTCOME)
    counts = output.get("counts")
    return int((counts or {}).get(RETRYABLE_OUTCOME) or 0) if isinstance(counts, dict) else 0


@dataclasses.dataclass(frozen=True)
class SweepRotationPlan:
    """What ``start_sweep_rotation`` does: start ``rotation_id`` (``start``) or report it (found).

    ``retry_of``: the rotation of the chain before ``rotation_id`` (None for the version's own
    rotation); ``state``: ``new`` (nothing exists: the version's rotation), ``retry`` (a follow-up),
    ``running``, ``done`` or ``exhausted`` (the last follow-up also left failures)."""

    rotation_id: str
    start: bool
    state: str
    retry_of: str | None = None


def chain_ids(rotation_id: str, retries: int = ROTATION_SWEEP_RETRIES) -> list[str]:
    """The version's rotation id, then its follow-up ids in order."""
    return [rotation_id] + [rotation_retry_instance_id(rotation_id, n) for n in range(1, max(0, retries) + 1)]


def read_further(chain: list[tuple[str | None, Any]]) -> bool:
    """Whether the activity reads the next id of the chain: only past a finished rotation with failures."""
    return not chain or rotation_state(*chain[-1]) == RETRYABLE


def plan_sweep_rotation(rotation_id: str, chain: list[tuple[str | None, Any]],
                        retries: int = ROTATION_SWEEP_RETRIES) -> SweepRotationPlan:
    """The sweep's decision for one lagging version.

    ``chain``: ``(runtime status, output)`` of the version's rotation, then of ``:retry-1``, ... in
    order, as far as they exist (the caller stops reading at the first missing id or the first one
    not :data:`RETRYABLE`: :func:`read_further`). Deterministic in its input."""
    ids = chain_ids(rotation_id, retries)
    if not chain:
        return SweepRotationPlan(rotation_id, True, "new")
    for n, (status, output) in enumerate(chain[:len(ids)]):
        state = rotation_state(status, output)
        if state != RETRYABLE:
            return SweepRotationPlan(ids[n], False, state, ids[n - 1] if n else None)
    found = min(len(chain), len(ids))
    if found >= len(ids):
        return SweepRotationPlan(ids[-1], False, "exhausted", ids[-2] if len(ids) > 1 else None)
    return SweepRotationPlan(ids[found], True, "retry", ids[found - 1])
