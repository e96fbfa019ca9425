"""Orchestrator-side helpers for calling activities under the activity contract (docs/architecture.md §3).

Why a helper: every step of every orchestrator handles the same three outcomes the same way, and
getting it wrong is easy: a *transient* failure (the activity raised) is retried by Durable with
``call_activity_with_retry``; a *throttled* result is waited out on a durable timer and the call is
made again, a bounded number of times; a *permanent* result ends the step at once. Everything here
is deterministic (context time and durable timers only) and used with ``yield from``.

Failures never carry secrets: activities guarantee that their error messages hold none, and
:func:`failure_message` keeps only the first line of a Durable failure (the traceback stays in the
host's own log).
"""

from __future__ import annotations

import datetime as dt
import zlib
from typing import Any, Generator, Iterable

import azure.durable_functions as df

from core.contracts import MAX_MESSAGE, Contract, failure
from core.workflow_options import WorkflowOptions

#: cap of the doubling minimum wait between throttled calls (seconds)
_MAX_THROTTLE_FLOOR = 8.0


def failure_message(exc: BaseException) -> str:
    """First line of a Durable task failure, without the ``Details`` part (a stack trace).

    The SDK raises ``Exception(f"{Reason} \\n {Details}")`` for failed activities and
    sub-orchestrations; only the reason is useful (and safe) in a report.
    """
    text = str(exc).split(" \n ", 1)[0].strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text[:MAX_MESSAGE]


def call_step(
    context: df.DurableOrchestrationContext,
    activity: str,
    payload: Contract | dict[str, Any],
    options: WorkflowOptions,
    deadline: dt.datetime | None = None,
) -> Generator[Any, Any, dict[str, Any]]:
    """Call one activity until it succeeds, fails permanently, or its budgets run out.

    Returns the activity's result dict (``ok`` true or false); never raises for activity failures.
    With ``deadline``, throttling is not waited out past it: the wait is cut at the deadline, and a
    call still throttled then ends with kind ``deadline`` (the caller's own time is up).
    """
    policy = options.retry_for(activity)
    retry = df.RetryOptions(policy.first_retry_interval_ms, policy.max_attempts)
    if isinstance(payload, Contract):
        payload = payload.to_dict()
    waits = 0
    while True:
        try:
            result = yield context.call_activity_with_retry(activity, retry, payload)
        except Exception as exc:  # transient failures outlived the retry budget
            return failure(activity, "TransientErrorsExhausted", failure_message(exc), kind="transient")
        if not isinstance(result, dict):
            return failure(activity, "InvalidActivityResult", f"{activity} returned {type(result).__name__}")
        if result.get("ok"):
            return result
        error = result.get("error") or {}
        if error.get("kind") != "throttled":
            error.setdefault("step", activity)
            return result
        if waits >= options.max_throttle_waits:
            return failure(activity, error.get("code") or "TooManyRequests",
                           f"still throttled after {waits} waits", kind="throttled")
        now = context.current_utc_datetime
        if deadline is not None and now >= deadline:
            return failure(activity, "DeadlineReached", f"still throttled at the deadline after {waits} waits",
                           kind="deadline")
        waits += 1
        delay = throttle_delay(error.get("retryAfterSeconds"), waits, f"{context.instance_id}:{activity}", options)
        wake = now + dt.timedelta(seconds=delay)
        yield context.create_timer(min(wake, deadline) if deadline is not None else wake)


def throttle_delay(retry_after: Any, wait_number: int, seed: str, options: WorkflowOptions) -> float:
    """How long to wait before calling a throttled activity again (seconds).

    At least Graph's ``Retry-After``, and at least a floor that doubles with every wait (0.5 s, 1 s,
    2 s, ... up to 8 s): when many instances compete for one write budget, Retry-After is tiny for
    each of them and a fixed floor would spend the wait budget in seconds, while an uncapped one
    leaves a straggler asleep long after the others are done. A deterministic jitter of up to
    50 % (a hash of the instance, the step and the wait number - never a random number, which
    would break replay) spreads the contenders apart.
    """
    try:
        delay = float(retry_after)
    except (TypeError, ValueError):
        delay = options.default_throttle_wait
    floor = min(0.5 * 2 ** max(0, wait_number - 1), _MAX_THROTTLE_FLOOR)
    jitter = 1 + (zlib.crc32(f"{seed}:{wait_number}".encode()) % 1000) / 2000
    return round(min(max(delay, float(floor)) * jitter, float(options.max_throttle_wait)), 3)


def gather_settled(context: df.DurableOrchestrationContext, tasks: list) -> Generator[Any, Any, list]:
    """Wait for *every* task, successful or not; return ``[(succeeded, value_or_exception), ...]``.

    Why not just ``task_all``: it raises at the first failure while the .NET extension's WhenAll
    keeps waiting for the other children (.NET's ``Task.WhenAll``: complete when all complete, then
    surface the first fault, as https://github.com/microsoft/durabletask-python/pull/173 describes);
    scheduling new work before they settle could desynchronise the task ids (retry timers of the others). So after a failure
    we keep waiting on each unfinished task before returning.
    """
    if tasks:
        try:
            yield context.task_all(tasks)
        except Exception:  # one child failed; the others are awaited below
            pass
        for task in tasks:
            while not task.is_completed:
                try:
                    yield task
                except Exception:
                    pass
    return [(task.state.name == "SUCCEEDED", task.result) for task in tasks]


def chunks(items: list, size: int) -> Iterable[list]:
    """Consecutive slices of at most ``size`` items."""
    size = max(1, size)
    for i in range(0, len(items), size):
        yield items[i:i + size]
