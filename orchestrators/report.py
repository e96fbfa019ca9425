"""Pure functions that turn instance outcomes into the batch report and the progress counts.

Why separate: the report is what a person acts on, so its shape is worth testing on its own, and
keeping it free of Durable calls keeps the orchestrator itself short. Inputs and outputs are the
contracts of ``core.contracts`` (:class:`InstanceOutcome`, :class:`BatchReport`; a plain dict of
the same JSON is accepted too); nothing here can see a secret (outcomes carry ids, codes and
messages only).

Outcome vocabulary (``outcome`` field of every instance):

* ``steadyState`` - the job finished its initial cycle and is running. Steady state is not success by
  itself: an instance whose cycle failed objects (Graph quarantines for that only past 5,000
  failures) carries ``failedObjects`` (> 0), ``topErrorCodes`` and ``provisioningErrors``, and the
  counts list it under ``steadyWithFailures``, apart from the clean ``steadyState``.
* ``quarantined`` - the job is in quarantine; ``reason`` and ``provisioningErrors`` say why.
* ``failed``      - a setup step failed (invalid input, missing permission, bad credentials...);
  ``reason`` and ``error.step`` say which and why.
* ``timedOut``    - the job did not settle before the monitoring deadline.

An instance of a role-import template (``jobKind`` ``roleImport``, AWS Single-Account Access) also
carries ``rolesImported``: the roles its job imported into the service principal's ``appRoles``,
counted at steady state (None when they could not be read).

``configured`` is only an intermediate state: ``provision_instance`` called with ``monitor: false``
(as ``provision_batch`` does) returns it when setup succeeded, and the batch then watches the job.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Iterable

from core.contracts import (CONFIGURED, OUTCOMES, STEADY_WITH_FAILURES, UNSET, BatchReport, InstanceOutcome,
                            StepError)
from core.times import seconds_between

__all__ = ["CONFIGURED", "OUTCOMES", "STEADY_WITH_FAILURES", "batch_report", "crashed_outcome", "final_counts",
           "final_outcome", "merge_top_errors", "not_started_outcome", "progress_counts", "severity",
           "steady_with_failures", "top_errors", "worst_first"]

#: the fields a final result (``monitor_job``'s output) carries into the instance outcome, when present
_FROM_RESULT = ("polls", "status", "steady_state_at", "failed_objects", "top_error_codes", "errors_read",
                "roles_imported")


def as_outcome(outcome: InstanceOutcome | dict[str, Any]) -> InstanceOutcome:
    return outcome if isinstance(outcome, InstanceOutcome) else InstanceOutcome.from_dict(outcome)


def steady_with_failures(outcome: InstanceOutcome | dict[str, Any]) -> bool:
    """True for a ``steadyState`` instance whose cycle failed objects (or whose errors could not be read)."""
    o = as_outcome(outcome)
    return o.outcome == "steadyState" and bool(o.failed_objects or o.provisioning_errors)


def progress_counts(total: int, queued: int, configuring: int, monitoring: int,
                    outcomes: Iterable[InstanceOutcome | dict[str, Any]]) -> dict[str, int]:
    """Counts per phase for the batch's custom status while it runs."""
    counts = {"total": total, "queued": queued, "configuring": configuring, "monitoring": monitoring,
              "running": configuring + monitoring}
    tally = Counter(STEADY_WITH_FAILURES if steady_with_failures(o) else as_outcome(o).outcome for o in outcomes)
    for name in OUTCOMES[:1] + (STEADY_WITH_FAILURES,) + OUTCOMES[1:]:
        counts[name] = tally.get(name, 0)
    return counts


def top_errors(outcomes: Iterable[InstanceOutcome | dict[str, Any]], limit: int = 10) -> list[dict[str, Any]]:
    """The most frequent provisioning/setup error codes across the batch, with one example each."""
    tally: Counter[str] = Counter()
    example: dict[str, dict[str, Any]] = {}
    for o in map(as_outcome, outcomes):
        if o.top_error_codes:  # the whole cycle's counts, not only the rows kept
            for item in o.top_error_codes:
                code = str(item.code or "Unknown")
                tally[code] += int(item.count or 1)
                example.setdefault(code, {"message": item.reason, "instanceKey": o.instance_key})
            continue
        for err in o.provisioning_errors or []:
            code = str(err.get("code") or err.get("errorCode") or "Unknown")
            tally[code] += 1
            example.setdefault(code, {"message": err.get("message") or err.get("reason"),
                                      "instanceKey": o.instance_key})
        if o.outcome == "failed" and o.error:
            code = str(o.error.code or "Unknown")
            tally[code] += 1
            example.setdefault(code, {"message": o.error.message, "instanceKey": o.instance_key,
                                      "step": o.error.step})
    return [{"code": code, "count": count, **example[code]} for code, count in tally.most_common(limit)]


def batch_report(batch_id: str, request_id: str | None, started_at: str, finished_at: str,
                 outcomes: list[InstanceOutcome], duration_seconds: float | None) -> BatchReport:
    """The batch report: the orchestration output of ``provision_batch``."""
    counts = final_counts(outcomes)
    return BatchReport(batch_id=batch_id, request_id=request_id, started_at=started_at, finished_at=finished_at,
                       duration_seconds=duration_seconds, counts=counts,
                       succeeded=counts["steadyState"] == len(outcomes),  # clean steady state everywhere
                       instances=list(outcomes), top_errors=top_errors(outcomes))


def final_counts(outcomes: list[InstanceOutcome]) -> dict[str, int]:
    """The counts of a finished batch (or sub-batch): total and one per outcome, no phases."""
    counts = progress_counts(len(outcomes), 0, 0, 0, outcomes)
    for phase in ("queued", "configuring", "monitoring", "running"):
        del counts[phase]
    return counts


#: worst first: what a person acts on comes first in a large batch's output
_SEVERITY = {"failed": 0, "timedOut": 1, "quarantined": 2, STEADY_WITH_FAILURES: 3}


def severity(outcome: InstanceOutcome | dict[str, Any]) -> int | None:
    """0 failed, 1 timedOut, 2 quarantined, 3 steady with failures; None for a clean steady state."""
    o = as_outcome(outcome)
    return _SEVERITY.get(STEADY_WITH_FAILURES if steady_with_failures(o) else str(o.outcome), None)


def worst_first(outcomes: Iterable[InstanceOutcome]) -> list[InstanceOutcome]:
    """The outcomes not in a clean steady state, worst first (request order within one kind)."""
    ranked = [(rank, i, o) for i, o in enumerate(outcomes) if (rank := severity(o)) is not None]
    return [o for _, _, o in sorted(ranked, key=lambda item: (item[0], item[1]))]


def merge_top_errors(lists: Iterable[list[dict[str, Any]]], limit: int = 10) -> list[dict[str, Any]]:
    """Add up the top errors of several sub-batches (counts summed per code, the first example kept)."""
    tally: Counter[str] = Counter()
    example: dict[str, dict[str, Any]] = {}
    for items in lists:
        for item in items:
            code = str(item.get("code") or "Unknown")
            tally[code] += int(item.get("count") or 0)
            example.setdefault(code, {k: v for k, v in item.items() if k not in ("code", "count")})
    return [{"code": code, "count": count, **example[code]} for code, count in tally.most_common(limit)]


def final_outcome(outcome: InstanceOutcome | dict[str, Any], result: InstanceOutcome | dict[str, Any],
                  finished_at: str) -> InstanceOutcome:
    """Complete an instance outcome (from setup) with the final result (failed setup or ``monitor_job``).

    ``outcome`` carries the instance's ids and ``timings.startedAt``/``configuredAt``; ``result``
    has ``outcome``, ``reason`` and optionally ``error``, ``polls``, ``status``, ``steadyStateAt``,
    ``provisioningErrors``... (the shape of ``monitor_job``'s output). Neither argument is changed.
    """
    done, res = as_outcome(outcome), as_outcome(result)
    timings = dict(done.timings)
    timings["finishedAt"] = finished_at
    timings["setupSeconds"] = seconds_between(timings.get("startedAt"), timings.get("configuredAt"))
    timings["totalSeconds"] = seconds_between(timings.get("startedAt"), finished_at)
    carried = {name: getattr(res, name) for name in _FROM_RESULT if getattr(res, name) is not UNSET}
    return dataclasses.replace(
        done, timings=timings, outcome=res.outcome or "failed", reason=res.reason, error=res.error or done.error,
        provisioning_errors=res.provisioning_errors or [], job_started_at=None,
        role_import=None,  # the monitor's input (deferred assignments), not part of the report
        **carried)


def not_started_outcome(instance: dict[str, Any], child_id: str, error: StepError, at: str) -> InstanceOutcome:
    """Outcome of an instance that failed before its own orchestration started (e.g. unknown template)."""
    return InstanceOutcome(instance_key=instance.get("key"), display_name=instance.get("displayName"),
                           orchestration_id=child_id, outcome="failed", reason=error.reason(), error=error,
                           ids={}, timings={"startedAt": at, "finishedAt": at}, provisioning_errors=[])


def crashed_outcome(instance: dict[str, Any], child_id: str, message: str, at: str) -> InstanceOutcome:
    """Outcome of an instance whose orchestration itself failed (a bug or a terminated instance)."""
    return not_started_outcome(instance, child_id, StepError(kind="permanent", code="OrchestrationFailed",
                                                             message=message, step="provision_instance"), at)
