"""The one timestamp form of every output, custom status and activity result: ISO-8601 UTC with
microseconds and a ``Z`` (``2026-11-27T10:00:00.000000Z``)."""

from __future__ import annotations

import datetime as dt


def iso(value: dt.datetime) -> str:
    """ISO-8601 UTC with a ``Z``, the form used in every output."""
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_seconds(value: dt.datetime) -> str:
    """ISO-8601 UTC to the second with a ``Z`` (``2026-11-27T10:00:00Z``): Graph's own form of a job
    status time, and an OData ``DateTimeOffset`` literal for ``$filter``."""
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str | None) -> dt.datetime | None:
    """Parse an ISO-8601 time written by :func:`iso` (or any ISO time; naive ones are UTC)."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Elapsed seconds between two :func:`iso` times, rounded to milliseconds."""
    a, b = parse_iso(start), parse_iso(end)
    return round((b - a).total_seconds(), 3) if a and b else None
