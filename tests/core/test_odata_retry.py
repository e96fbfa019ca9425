"""Pure helpers: OData filter building and the retry decisions (Retry-After parsing, backoff)."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from core import odata
from core.graph.retry import backoff_delay, parse_retry_after, should_retry
from core.graph.transport import path_template, scrub


@pytest.mark.parametrize("value, expected", [
    ("plain", "'plain'"),
    ("O'Brien", "'O''Brien'"),
    ("''", "''''''"),
    ("Zoë Ångström & Søren #1 100%", "'Zoë Ångström & Søren #1 100%'"),
])
def test_literal_doubles_quotes(value, expected):
    assert odata.literal(value) == expected


def test_literal_refuses_control_characters_and_non_strings():
    with pytest.raises(ValueError):
        odata.literal("a\nb")
    with pytest.raises(TypeError):
        odata.literal(5)  # type: ignore[arg-type]


def test_clauses():
    assert odata.eq("displayName", "it's") == "displayName eq 'it''s'"
    assert odata.any_eq("tags", "x:y") == "tags/any(t:t eq 'x:y')"
    assert odata.gt("activityDateTime", "2026-01-01T00:00:00Z") == "activityDateTime gt 2026-01-01T00:00:00Z"
    assert odata.and_("a eq 'b'", "", "c eq 'd'") == "a eq 'b' and c eq 'd'"
    assert odata.or_(odata.any_eq("tags", "it's"), "", odata.group(odata.and_("a eq 'b'", "c eq 'd'"))) == \
        "tags/any(t:t eq 'it''s') or (a eq 'b' and c eq 'd')"
    with pytest.raises(ValueError):
        odata.eq("displayName eq 'x' or 1", "y")
    with pytest.raises(ValueError):
        odata.gt("activityDateTime", "1 or true")


NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("header, expected", [
    ("5", 5.0),
    ("2.128", 2.128),
    (" 0 ", 0.0),
    ("-3", 0.0),
    ("Fri, 27 Nov 2026 12:00:30 GMT", 30.0),
    ("Fri, 27 Nov 2026 11:00:00 GMT", 0.0),
    (None, None),
    ("", None),
    ("soon", None),
    ("nan", None),
    ("inf", None),
])
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header, now=NOW) == expected


def test_backoff_is_exponential_jittered_and_capped():
    rng = random.Random(7)
    delays = [backoff_delay(n, rng) for n in range(1, 5)]
    for n, delay in enumerate(delays, start=1):
        assert 2 ** (n - 1) <= delay <= 2 ** (n - 1) + 1
    assert backoff_delay(30, rng) <= 61
    assert len({round(backoff_delay(1), 6) for _ in range(20)}) > 1  # jitter


@pytest.mark.parametrize("status, idempotent, expected", [
    (429, False, True), (429, True, True), (503, True, True), (504, True, True),
    (503, False, False), (504, False, False), (500, True, False), (404, True, False),
])
def test_should_retry(status, idempotent, expected):
    assert should_retry(status, idempotent) is expected


def test_path_template_and_scrub():
    assert path_template("/servicePrincipals/5b31c38c-1111-2222-3333-444455556666/synchronization?x=1") == \
        "/servicePrincipals/{id}/synchronization"
    assert scrub("token abc123 and abc123xyz", ["abc123", "abc123xyz", ""]) == "token *** and ***"
