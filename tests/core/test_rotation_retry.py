"""The health sweep's follow-up rotation decision (core/steps/rotation_retry.py, issue #12 point 4): pure
functions over the Durable runtime status and report of a version's rotation and its follow-ups."""

from __future__ import annotations

import json

import pytest

from core.instance_ids import rotation_instance_id, rotation_retry_instance_id
from core.steps.rotation_retry import (DONE, RETRYABLE, ROTATION_SWEEP_RETRIES, RUNNING, SweepRotationPlan, chain_ids,
                                       plan_sweep_rotation, read_further, retryable_failures, rotation_state)

BASE = rotation_instance_id("scim-contoso-token", "0123abcd")


def report(*outcomes: str, dry_run: bool = False) -> dict:
    instances = [{"servicePrincipalId": f"sp-{n}", "outcome": o} for n, o in enumerate(outcomes)]
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    return {"rotationId": BASE, "dryRun": dry_run, "counts": counts, "instances": instances}


FAILED = ("Completed", report("rotated", "failed"))
CLEAN = ("Completed", report("rotated", "alreadyCurrent"))


def test_ids_are_derived_from_the_versions_rotation():
    assert rotation_retry_instance_id(BASE, 2) == BASE + ":retry-2"
    assert chain_ids(BASE) == [BASE] + [f"{BASE}:retry-{n}" for n in range(1, ROTATION_SWEEP_RETRIES + 1)]
    assert ROTATION_SWEEP_RETRIES == 3


@pytest.mark.parametrize("status, output, state", [
    ("Running", None, RUNNING), ("Pending", None, RUNNING), ("ContinuedAsNew", None, RUNNING),
    ("Suspended", None, RUNNING),
    ("Completed", report("rotated", "failed"), RETRYABLE),
    ("Completed", json.dumps(report("failed")), RETRYABLE),  # the output as a JSON string
    ("Completed", {"counts": {"failed": 1}}, RETRYABLE),  # a report without instances: its counts
    # an invalid version is refused by the target: retrying would only repeat the refusal
    ("Completed", report("invalid", "invalid"), DONE),
    ("Completed", report("rotated", "alreadyCurrent", "superseded", "notOurs", "notReferenced", "invalid"), DONE),
    ("Completed", report("failed", dry_run=True), DONE),  # a dry run rotates nothing: never followed up
    ("Completed", None, DONE), ("Completed", "not json", DONE),
    ("Failed", None, RETRYABLE),  # the orchestration failed: nothing is known of its instances
    ("Terminated", report("failed"), DONE), ("Canceled", None, DONE),  # a person stopped it
])
def test_the_state_of_one_rotation(status, output, state):
    assert rotation_state(status, output) == state


def test_retryable_failures_counts_failed_instances_only():
    assert retryable_failures(report("failed", "invalid", "failed", "rotated")) == 2
    assert retryable_failures([{"outcome": "failed"}]) == 0


def test_nothing_exists_starts_the_versions_rotation():
    assert plan_sweep_rotation(BASE, []) == SweepRotationPlan(BASE, True, "new")


@pytest.mark.parametrize("first", [("Running", None), ("Pending", None), CLEAN, ("Completed", report("invalid"))])
def test_a_running_or_clean_rotation_is_found_not_followed_up(first):
    plan = plan_sweep_rotation(BASE, [first])
    assert plan.rotation_id == BASE and plan.start is False and plan.retry_of is None
    assert plan.state == rotation_state(*first)


def test_a_rotation_that_left_an_instance_failed_gets_a_follow_up():
    assert plan_sweep_rotation(BASE, [FAILED]) == SweepRotationPlan(f"{BASE}:retry-1", True, "retry", BASE)
    assert plan_sweep_rotation(BASE, [("Failed", None)]) == SweepRotationPlan(f"{BASE}:retry-1", True, "retry", BASE)


def test_a_follow_up_running_or_clean_is_found_and_nothing_more_is_started():
    # a duplicate sweep (or the activity's retry) after the follow-up was started: it is found, not started again
    running = plan_sweep_rotation(BASE, [FAILED, ("Pending", None)])
    assert running == SweepRotationPlan(f"{BASE}:retry-1", False, RUNNING, BASE)
    assert plan_sweep_rotation(BASE, [FAILED, CLEAN]) == SweepRotationPlan(f"{BASE}:retry-1", False, DONE, BASE)


def test_each_follow_up_that_left_failures_gets_the_next_until_the_bound():
    assert plan_sweep_rotation(BASE, [FAILED, FAILED]) == SweepRotationPlan(f"{BASE}:retry-2", True, "retry",
                                                                            f"{BASE}:retry-1")
    assert plan_sweep_rotation(BASE, [FAILED] * 3).rotation_id == f"{BASE}:retry-3"
    exhausted = plan_sweep_rotation(BASE, [FAILED] * 4)
    assert exhausted == SweepRotationPlan(f"{BASE}:retry-3", False, "exhausted", f"{BASE}:retry-2")
    assert plan_sweep_rotation(BASE, [FAILED] * 9) == exhausted  # more than the chain holds: the same answer
    assert plan_sweep_rotation(BASE, [FAILED], retries=0) == SweepRotationPlan(BASE, False, "exhausted", None)


def test_the_activity_reads_the_chain_only_past_finished_rotations_with_failures():
    assert read_further([]) and read_further([FAILED]) and read_further([FAILED, ("Failed", None)])
    assert not read_further([CLEAN]) and not read_further([FAILED, ("Running", None)])
