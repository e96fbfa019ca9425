"""In-call retry decisions for Graph requests, as small pure functions.

Modelled on kiota's ``RetryHandler`` (the Microsoft Graph SDKs' HTTP retry middleware,
https://github.com/microsoft/kiota-http-python/blob/main/kiota_http/middleware/retry_handler.py): retry only 429/503/504, prefer ``Retry-After``
(integer or decimal seconds, or an HTTP date), otherwise jittered exponential backoff, and keep a
*cumulative* sleep budget. Unlike kiota we never sleep past the budget: the caller raises
``GraphThrottled(retry_after)`` instead, so the orchestrator waits on a durable timer and no worker
is held (kiota's blocking ``time.sleep`` bug, kiota-python#505, is the lesson).
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 503, 504})
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header; ``None`` when absent or unreadable.

    Graph sends decimal seconds (``2.128``); RFC 9110 also allows an HTTP date. Negative values
    and dates in the past mean "now" (0).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Jittered exponential delay before retry number ``attempt`` (1-based) when no Retry-After came.

    ``base * 2**(attempt-1)`` capped, plus up to one base of random jitter so that many activities
    throttled together do not retry in lock-step.
    """
    rnd = rng or random
    exponential = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return exponential + rnd.uniform(0, BACKOFF_BASE_SECONDS)


def should_retry(status: int, idempotent: bool) -> bool:
    """Retry 429 always (the request was refused unprocessed); 503/504 only when safe to repeat.

    A 504 on a non-idempotent POST (``instantiate``) may hide a success: the caller must look the
    object up instead of resending (terraform-provider-azuread PR #936).
    """
    if status == 429:
        return True
    return status in RETRY_STATUSES and idempotent
