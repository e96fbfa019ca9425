"""Pure functions that turn instance outcomes into the batch report and the progress counts.

Why separate: the report is what a person acts on, so its shape is worth testing on its own, and
keeping it free of Durable calls keeps the orchestrator itself short. All inputs and outputs are
plain JSON dicts; nothing here can see a secret (outcomes carry ids, codes and messages only).

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

from collections import Counter
from typing import Any

from core import model
from orchestrators.steps import seconds_between

OUTCOMES = ("steadyState", "quarantined", "failed", "timedOut")
CONFIGURED = "configured"
#: the count of steady instances whose cycle failed objects (``counts.steadyState`` holds the clean ones)
STEADY_WITH_FAILURES = "steadyWithFailures"


def steady_with_failures(outcome: dict[str, Any]) -> bool:
    """True for a ``steadyState`` instance whose cycle failed objects (or whose errors could not be read)."""
    return outcome.get("outcome") == "steadyState" and bool(outcome.get("failedObjects")
                                                           or outcome.get("provisioningErrors"))


def child_instance_id(batch_id: str, instance_key: str) -> str:
    """Deterministic id of one instance's ``provision_instance`` orchestration: ``<batchId>:<key>``.

    Derived from the batch id and the instance key (hex, from ``core.model.instance_key``), so a
    replay, a restart or a re-submission of the same request addresses the same child and never
    starts a second one. The rule itself is ``core.model.child_instance_id``.
    """
    return model.child_instance_id(batch_id, str(instance_key))


def monitor_instance_id(child_id: str) -> str:
    """Deterministic id of the ``monitor_job`` orchestration of one instance."""
    return f"{child_id}:monitor"


def progress_counts(total: int, queued: int, configuring: int, monitoring: int,
                    outcomes: list[dict[str, Any]]) -> dict[str, int]:
    """Counts per phase for the batch's custom status while it runs."""
    counts = {"total": total, "queued": queued, "configuring": configuring, "monitoring": monitoring,
              "running": configuring + monitoring}
    tally = Counter(STEADY_WITH_FAILURES if steady_with_failures(o) else o.get("outcome") for o in outcomes)
    for name in OUTCOMES[:1] + (STEADY_WITH_FAILURES,) + OUTCOMES[1:]:
        counts[name] = tally.get(name, 0)
    return counts


def top_errors(outcomes: list[dict[str, Any]], limit: int = 10) -> list[dict[str, Any]]:
    """The most frequent provisioning/setup error codes across the batch, with one example each."""
    tally: Counter[str] = Counter()
    example: dict[str, dict[str, Any]] = {}
    for outcome in outcomes:
        if outcome.get("topErrorCodes"):  # the whole cycle's counts, not only the rows kept
            for item in outcome["topErrorCodes"]:
                code = str(item.get("code") or "Unknown")
                tally[code] += int(item.get("count") or 1)
                example.setdefault(code, {"message": item.get("reason"), "instanceKey": outcome.get("instanceKey")})
            continue
        for err in outcome.get("provisioningErrors") or []:
            code = str(err.get("code") or err.get("errorCode") or "Unknown")
            tally[code] += 1
            example.setdefault(code, {"message": err.get("message") or err.get("reason"),
                                      "instanceKey": outcome.get("instanceKey")})
        error = outcome.get("error")
        if outcome.get("outcome") == "failed" and error:
            code = str(error.get("code") or "Unknown")
            tally[code] += 1
            example.setdefault(code, {"message": error.get("message"), "instanceKey": outcome.get("instanceKey"),
                                      "step": error.get("step")})
    return [{"code": code, "count": count, **example[code]} for code, count in tally.most_common(limit)]


def batch_report(batch_id: str, request_id: str | None, started_at: str, finished_at: str,
                 outcomes: list[dict[str, Any]], duration_seconds: float | None) -> dict[str, Any]:
    """The batch report: the orchestration output of ``provision_batch``."""
    counts = progress_counts(len(outcomes), 0, 0, 0, outcomes)
    for phase in ("queued", "configuring", "monitoring", "running"):
        del counts[phase]
    return {
        "batchId": batch_id,
        "requestId": request_id,
        "startedAt": started_at,
        "finishedAt": finished_at,
        "durationSeconds": duration_seconds,
        "counts": counts,
        "succeeded": counts["steadyState"] == len(outcomes),  # clean steady state everywhere
        "instances": outcomes,
        "topErrors": top_errors(outcomes),
    }


def final_outcome(outcome: dict[str, Any], result: dict[str, Any], finished_at: str) -> dict[str, Any]:
    """Complete an instance outcome (from setup) with the final result (failed setup or ``monitor_job``).

    ``outcome`` carries the instance's ids and ``timings.startedAt``/``configuredAt``; ``result``
    has ``outcome``, ``reason`` and optionally ``error``, ``polls``, ``status``, ``steadyStateAt``,
    ``provisioningErrors``. Returns a new dict; neither argument is changed.
    """
    done = {**outcome, "timings": dict(outcome.get("timings") or {})}
    timings = done["timings"]
    timings["finishedAt"] = finished_at
    timings["setupSeconds"] = seconds_between(timings.get("startedAt"), timings.get("configuredAt"))
    timings["totalSeconds"] = seconds_between(timings.get("startedAt"), finished_at)
    done["outcome"] = result.get("outcome") or "failed"
    done["reason"] = result.get("reason")
    if result.get("error"):
        done["error"] = result["error"]
    for key in ("polls", "status", "steadyStateAt", "failedObjects", "topErrorCodes", "errorsRead", "rolesImported"):
        if key in result:
            done[key] = result[key]
    done["provisioningErrors"] = result.get("provisioningErrors") or []
    done.pop("jobStartedAt", None)
    done.pop("roleImport", None)  # the monitor's input (deferred assignments), not part of the report
    return done


def not_started_outcome(instance: dict[str, Any], child_id: str, error: dict[str, Any], at: str) -> dict[str, Any]:
    """Outcome of an instance that failed before its own orchestration started (e.g. unknown template)."""
    return {
        "instanceKey": instance.get("key"),
        "displayName": instance.get("displayName"),
        "orchestrationId": child_id,
        "outcome": "failed",
        "reason": f"{error.get('step', 'setup')}: {error.get('message') or error.get('code')}",
        "error": error,
        "ids": {},
        "timings": {"startedAt": at, "finishedAt": at},
        "provisioningErrors": [],
    }


def crashed_outcome(instance: dict[str, Any], child_id: str, message: str, at: str) -> dict[str, Any]:
    """Outcome of an instance whose orchestration itself failed (a bug or a terminated instance)."""
    return not_started_outcome(instance, child_id, {"kind": "permanent", "code": "OrchestrationFailed",
                                                     "message": message, "step": "provision_instance"}, at)
