"""``monitor_job``: watch one provisioning job on durable timers until it settles.

Contract
--------
Input: ``{"servicePrincipalId", "jobId", "startedAt" (when we started the job), "deadline" (ISO
time), "options": {...}, "state"?: {polls, interval, lastStatus}}`` - ``state`` is only present in
the input of a continued-as-new execution.

Output: ``{"outcome": steadyState|quarantined|timedOut|failed, "reason", "polls", "status" (the
last classification), "provisioningErrors": [...], "steadyStateAt"?, "failedObjects"?,
"topErrorCodes"?, "errorsRead"?, "rolesImported"?}``. Steady state is not success by itself: Graph quarantines for
failed objects only past 5,000 failures, so a small job with half its users failing reaches steady
state. When the cycle that reached it did not end ``Succeeded`` (``lastExecution.state``
``EntryLevelErrors``), that cycle's failures are read and the outcome carries ``failedObjects`` (distinct
objects that failed), ``topErrorCodes`` and ``provisioningErrors``; the outcome stays ``steadyState``.
Should the logs show no failed row yet (they arrive with a latency), ``provisioningErrors`` holds one
entry with the cycle's state as its code, so the instance is still not counted as a clean steady state.

``roleImport`` in the input (a role-import template such as AWS Single-Account Access): at steady
state the monitor calls ``assign_principals`` once more, with ``countImportedRoles`` and the
assignments that name an imported role (``{users, groups, appRole}``), and adds ``rolesImported``.

Never past the deadline: throttle waits are cut at it (``call_step(deadline=...)``), and a status
that cannot be read then gives ``timedOut`` with the last status read. A read that fails for a
passing reason (transient errors or throttling outliving their budgets) is tried again at the next
poll; only the third in a row, or a permanent error, fails the monitor.

Custom status: ``{"polls", "phase", "nextPollAt"}``.

Loop: read the status (activity ``get_job_status``) and classify; steady state → read the cycle's
errors if it had any → done; paused or disabled → done as failed (it will not move by itself); quarantined
→ read the job's provisioning errors (``get_provisioning_errors``; Graph allows 5 such requests per
10 s per app and tenant, so the activity reports throttling and we wait it out on a timer) → done;
deadline passed → timed out (with the errors of the latest cycle); otherwise sleep on a durable timer whose interval grows from
``pollFirstInterval`` by ``pollBackoff`` up to ``pollMaxInterval``. Every ``pollsPerExecution``
polls it continues as new, carrying its state, so its history stays bounded however long it runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Generator, cast

import azure.durable_functions as df

from core import names
from core.contracts import (AssignPrincipalsInput, AssignPrincipalsOutput, GetJobStatusInput, GetJobStatusOutput,
                            GetProvisioningErrorsInput, GetProvisioningErrorsOutput, MonitorJobInput, StepError)
from core.times import iso, parse_iso
from core.workflow_options import WorkflowOptions
from orchestrators.activity_calls import call_step
from orchestrators.blueprint import bp
from orchestrators.job_status_view import QUARANTINED, STEADY, is_settled, phase_of, quarantine_error, quarantine_reason


@bp.function_name(names.MONITOR_JOB)
@bp.orchestration_trigger(context_name="context")
def monitor_job(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any] | None]:
    """Poll one job until steady state, quarantine or deadline (continue-as-new every few polls)."""
    data: dict[str, Any] = context.get_input() or {}
    monitor = MonitorJobInput.from_dict(data)
    options = WorkflowOptions.from_dict(monitor.options)
    state: dict[str, Any] = dict(monitor.state or {})
    polls = int(state.get("polls", 0))
    failed_reads = int(state.get("failedReads", 0))
    last_status: dict[str, Any] | None = state.get("lastStatus")
    interval = float(state.get("interval") or options.poll_first_interval)
    deadline = parse_iso(monitor.deadline) or (
        context.current_utc_datetime + dt.timedelta(seconds=options.monitor_deadline))
    job = GetJobStatusInput(service_principal_id=cast(str, monitor.service_principal_id), job_id=monitor.job_id,
                            started_at=monitor.started_at)

    for _ in range(max(1, options.polls_per_execution)):
        result = yield from call_step(context, names.GET_JOB_STATUS, job, options, deadline=deadline)
        polls += 1
        now = context.current_utc_datetime
        if not result.get("ok"):
            error = StepError.from_dict(result["error"])
            if error.kind == "deadline" or (now >= deadline and error.kind in _PASSING):
                return _timed_out(last_status, polls, f"status unreadable at the deadline ({error.code})")
            failed_reads += 1
            if error.kind not in _PASSING or failed_reads >= _MAX_FAILED_READS:
                return {"outcome": "failed", "reason": f"{error.step}: {error.message or error.code}",
                        "error": result["error"], "polls": polls, "status": last_status, "provisioningErrors": []}
            # a passing failure (retries or throttle waits used up): the job is unaffected, look again later
            next_poll = min(now + dt.timedelta(seconds=interval), deadline)
            context.set_custom_status({"polls": polls, "phase": "unreadable", "nextPollAt": iso(next_poll)})
            yield context.create_timer(next_poll)
            continue
        failed_reads = 0
        status = GetJobStatusOutput.from_dict(result).status or {}
        last_status = status
        phase = phase_of(status)
        if phase == STEADY:
            done: dict[str, Any] = {"outcome": "steadyState", "reason": None, "polls": polls, "status": status,
                    "steadyStateAt": iso(now), "provisioningErrors": []}
            if _cycle_had_errors(status):
                read = yield from _provisioning_errors(context, job, options, status)
                done.update(read)
                if read.get("failedObjects"):
                    done["reason"] = _with_failures_reason(read)
                elif "failedObjects" in read:
                    # the cycle says it failed entries, the logs show none (yet): Entra's logs arrive with
                    # a latency (learn.microsoft.com/entra/identity/monitoring-health/reference-log-latency),
                    # so this is not a clean steady state either
                    ended = (status.get("lastExecution") or {}).get("state")
                    done["provisioningErrors"] = [{"code": ended, "message": _NO_ROWS_YET.format(state=ended)}]
                    done["reason"] = f"steady state, the latest cycle ended {ended}: {_NO_ROWS_YET.format(state=ended)}"
            if monitor.role_import is not None:
                done = yield from _complete_role_import(context, monitor, done, options)
            return done
        if phase == QUARANTINED:
            read = yield from _provisioning_errors(context, job, options, status)
            reason = quarantine_reason(status) or "Quarantine"
            graph_error = quarantine_error(status)
            if graph_error and graph_error.get("code"):
                reason = f"{reason} ({graph_error['code']})"
            return {"outcome": "quarantined", "reason": reason, "polls": polls, "status": status, **read}
        if is_settled(status):  # paused or disabled: it will not reach steady state by itself
            return {"outcome": "failed", "reason": f"job is {phase} (code {status.get('code')})", "polls": polls,
                    "status": status, "provisioningErrors": []}
        if now >= deadline:
            timed_out = _timed_out(status, polls, f"job still {phase} at the deadline")
            # read once: a throttled answer is not waited out past the deadline
            read = yield from _provisioning_errors(context, job, options, status, deadline=deadline)
            return {**timed_out, **read}
        next_poll = min(now + dt.timedelta(seconds=interval), deadline)
        context.set_custom_status({"polls": polls, "phase": phase, "nextPollAt": iso(next_poll)})
        yield context.create_timer(next_poll)
        interval = min(interval * max(1.0, options.poll_backoff), options.poll_max_interval)

    context.continue_as_new({**data, "state": {"polls": polls, "interval": interval, "failedReads": failed_reads,
                                               "lastStatus": last_status}})
    return None


#: a steady cycle that ended with entry errors (``lastExecution.state``) whose failure rows were not found
_NO_ROWS_YET = ("no failed object is in its provisioning logs yet (they can appear minutes late); "
                "read them later with the job's id")
#: error kinds of a status read that say nothing about the job (Graph busy or briefly unreachable)
_PASSING = ("transient", "throttled")
#: consecutive passing failures (each after its own retries) before the monitor gives up
_MAX_FAILED_READS = 3


def _timed_out(status: dict[str, Any] | None, polls: int, reason: str) -> dict[str, Any]:
    return {"outcome": "timedOut", "reason": reason, "polls": polls, "status": status, "provisioningErrors": []}


def _cycle_had_errors(status: dict[str, Any] | None) -> bool:
    """True when the latest cycle did not end ``Succeeded`` (Graph's synchronizationTaskExecution
    states: Succeeded, Failed, EntryLevelErrors): only then is reading its errors worth a log request."""
    last = (status or {}).get("lastExecution")
    return isinstance(last, dict) and last.get("state") not in (None, "Succeeded")


def _cycle_window(status: dict[str, Any] | None, started_at: str | None) -> tuple[str | None, str | None]:
    """``(since, until)`` of the latest cycle's log rows, from the job status Graph documents.

    ``lastExecution`` (synchronizationTaskExecution) is the latest completed cycle: its ``timeBegan``
    is where the read starts and its ``timeEnded`` (plus a second: rows carry their own timestamps)
    where it stops, so rows of the next cycle already running are not counted twice. A cycle that
    began before we started the job is not ours: then the read starts at our start, unbounded.
    """
    last = (status or {}).get("lastExecution")
    began = parse_iso(last.get("timeBegan")) if isinstance(last, dict) else None
    ended = parse_iso(last.get("timeEnded")) if isinstance(last, dict) else None
    ours = parse_iso(started_at)
    if began is None or (ours is not None and began < ours - dt.timedelta(seconds=1)):
        return started_at, None
    return iso(began), (iso(ended + dt.timedelta(seconds=1)) if ended else None)


def _with_failures_reason(read: dict[str, Any]) -> str:
    codes = ", ".join(f"{c.get('code')} x{c.get('count')}" for c in (read.get("topErrorCodes") or [])[:3])
    more = "" if (read.get("errorsRead") or {}).get("complete", True) else " (at least; the read was cut short)"
    return f"steady state with {read['failedObjects']} failed objects{more}: {codes}"


def _complete_role_import(context: df.DurableOrchestrationContext, monitor: MonitorJobInput, steady: dict[str, Any],
                          options: WorkflowOptions) -> Generator[Any, Any, dict[str, Any]]:
    """A role-import job at steady state: its first cycle wrote the app's roles into the SP, so now
    make the assignments that name one of them and count what was imported (``rolesImported``).
    A named role that is still missing fails the instance with the roles there are."""
    pending = monitor.role_import or {}
    request = AssignPrincipalsInput(service_principal_id=cast(str, monitor.service_principal_id), count_imported_roles=True,
                                    users=list(pending.get("users") or []), groups=list(pending.get("groups") or []),
                                    app_role=pending.get("appRole") or None)
    context.set_custom_status({"polls": steady["polls"], "phase": names.ASSIGN_PRINCIPALS})
    result = yield from call_step(context, names.ASSIGN_PRINCIPALS, request, options)
    if result.get("ok"):
        roles = AssignPrincipalsOutput.from_dict(result).roles_imported
        return {**steady, "rolesImported": roles if roles is not None else None}
    error = StepError.from_dict(result["error"])
    return {**steady, "outcome": "failed", "rolesImported": None, "error": result["error"],
            "reason": f"{error.step}: {error.message or error.code}"}


def _provisioning_errors(context: df.DurableOrchestrationContext, job: GetJobStatusInput, options: WorkflowOptions,
                         status: dict[str, Any] | None,
                         deadline: dt.datetime | None = None) -> Generator[Any, Any, dict[str, Any]]:
    """The errors of the job's latest cycle: ``{"provisioningErrors", "failedObjects", "topErrorCodes",
    "errorsRead"}``; a placeholder error (not a failure) if they cannot be read."""
    since, until = _cycle_window(status, job.started_at)
    request = GetProvisioningErrorsInput(service_principal_id=job.service_principal_id, job_id=cast(str, job.job_id),
                                         since=cast(str, since), top=options.provisioning_errors_top, until=until or None)
    result = yield from call_step(context, names.GET_PROVISIONING_ERRORS, request, options, deadline=deadline)
    if not result.get("ok"):
        return {"provisioningErrors": [{
            "code": "ProvisioningErrorsUnavailable",
            "message": (result.get("error") or {}).get("message") or "could not read provisioning logs"}]}
    read = GetProvisioningErrorsOutput.from_dict(result)
    return {"provisioningErrors": list(read.errors or [])[: options.provisioning_errors_top],
            "failedObjects": int(read.failed_objects or 0),
            "topErrorCodes": [c.to_dict() for c in read.top_error_codes or []],
            "errorsRead": {"since": read.since or since, "until": until, "pages": read.pages,
                           "complete": bool(read.complete)}}
