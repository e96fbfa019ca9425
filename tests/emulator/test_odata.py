"""OData ``$filter`` parsing and collection paging (pure functions, no server)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from emulator.clock import SENTINEL, Clock, iso, parse_iso
from emulator.errors import GraphError
from emulator.odata import apply_query, decode_skiptoken, encode_skiptoken, parse_filter

ROWS = [
    {"id": "1", "displayName": "O'Brien app", "tags": ["Fleet", "x"], "servicePrincipal": {"id": "SP-1"},
     "activityDateTime": "2026-01-02T00:00:00Z", "n": 3, "enabled": True, "statusInfo": {"status": "failure"}},
    {"id": "2", "displayName": "Zoë", "tags": [], "servicePrincipal": {"id": "sp-2"},
     "activityDateTime": "2026-01-05T10:00:00.1234567Z", "n": 5, "enabled": False, "statusInfo": {"status": "success"}},
    {"id": "3", "displayName": None, "tags": None, "activityDateTime": None, "n": None, "enabled": None},
]


def ids(expression: str, ignore_case: bool = True) -> list[str]:
    predicate = parse_filter(expression, ignore_case=ignore_case)
    return [row["id"] for row in ROWS if predicate(row)]


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("displayName eq 'O''Brien app'", ["1"]),
        ("displayName eq 'o''brien APP'", ["1"]),
        ("displayName ne 'Zoë'", ["1", "3"]),
        ("displayName eq null", ["3"]),
        ("startswith(displayName,'o''b')", ["1"]),
        ("endswith(displayName, 'ë')", ["2"]),
        ("contains(tolower(displayName),'brien')", ["1"]),
        ("tags/any(t:t eq 'fleet')", ["1"]),
        ("tags/any(t: startswith(t, 'x'))", ["1"]),
        ("tags/all(t:t ne 'nothing')", ["1", "2"]),
        ("servicePrincipal/id eq 'sp-1'", ["1"]),
        ("statusInfo/status eq microsoft.graph.provisioningResult'failure'", ["1"]),
        ("activityDateTime gt 2026-01-03", ["2"]),
        ("activityDateTime ge 2026-01-02T00:00:00Z and activityDateTime lt 2026-01-05T10:00:00Z", ["1"]),
        ("n gt 3 or id eq '1'", ["1", "2"]),
        ("n le 3", ["1"]),
        ("enabled eq true", ["1"]),
        ("enabled", ["1"]),
        ("not(enabled eq true)", ["2", "3"]),
        ("id in ('1', '3')", ["1", "3"]),
        ("(id eq '1' or id eq '2') and n ge 5", ["2"]),
        ("id eq 1", []),
    ],
)
def test_filter_forms(expression, expected):
    assert ids(expression) == expected


def test_case_sensitive_mode():
    assert ids("displayName eq 'o''brien app'", ignore_case=False) == []
    assert ids("displayName eq 'O''Brien app'", ignore_case=False) == ["1"]


def test_guid_literal_compares_as_string():
    guid = "00000003-0000-0000-c000-000000000000"
    predicate = parse_filter(f"appId eq {guid}")
    assert predicate({"appId": guid}) and not predicate({"appId": "other"})


@pytest.mark.parametrize(
    "expression",
    ["", "   ", "displayName eq", "eq 'x'", "substringof('a',displayName)", "displayName eq 'x", "a eq 1)",
     "(a eq 1", "tags/any(t t eq 'x')", "a eq 2026-13-45", "startswith(a)", "tolower(a, b) eq 'x'", "a # 1"],
)
def test_invalid_filters(expression):
    with pytest.raises(GraphError) as error:
        parse_filter(expression)
    assert error.value.status == 400 and error.value.code == "BadRequest"
    assert error.value.message.startswith("Invalid filter clause")


def test_paging_links_repeat_options():
    items = [{"id": str(i), "name": f"item {i:02d}"} for i in range(25)]
    page = apply_query(items, {"$top": "10", "$filter": "startswith(name,'item')", "$select": "id"}, "https://h/v1.0/x",
                       context="https://h/v1.0/$metadata#x")
    assert page["@odata.context"] == "https://h/v1.0/$metadata#x"
    assert [i["id"] for i in page["value"]] == [str(i) for i in range(10)]
    assert page["value"][0] == {"id": "0"}
    link = page["@odata.nextLink"]
    assert link.startswith("https://h/v1.0/x?") and "%24filter" not in link and "$filter=" in link
    seen, query = [], {"$top": "10", "$filter": "startswith(name,'item')"}
    while True:
        body = apply_query(items, query, "https://h/v1.0/x")
        seen.extend(i["id"] for i in body["value"])
        if "@odata.nextLink" not in body:
            break
        query = {**query, "$skiptoken": body["@odata.nextLink"].split("$skiptoken=")[1]}
    assert seen == [str(i) for i in range(25)]


def test_orderby_count_defaults_and_dollarless_names():
    items = [{"id": str(i), "n": n} for i, n in enumerate([3, 1, None, 2])]
    body = apply_query(items, {"orderby": "n desc", "count": "true"}, "https://h/x", default_top=2)
    assert body["@odata.count"] == 4
    assert [i["n"] for i in body["value"]] == [3, 2]
    asc = apply_query(items, {"$orderby": "n"}, "https://h/x")
    assert [i["n"] for i in asc["value"]] == [None, 1, 2, 3]


def test_skiptoken_round_trip_and_rejection():
    assert decode_skiptoken(encode_skiptoken(42)) == 42
    for bad in ("", "!!!", encode_skiptoken(-1)):
        with pytest.raises(GraphError):
            decode_skiptoken(bad)


def test_clock_formats_and_controls():
    assert iso(datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)) == "2026-11-27T10:00:00Z"
    assert iso(datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=timezone.utc)) == "2026-11-27T10:00:00.1234560Z"
    assert parse_iso("2026-01-05T10:00:00.1234567Z") == datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert parse_iso("2026-01-05") == datetime(2026, 1, 5, tzinfo=timezone.utc)
    assert SENTINEL == "0001-01-01T00:00:00Z"
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    clock = Clock(scale=1000.0, start=start)
    clock.advance(3600)
    assert clock.now() >= datetime(2026, 1, 1, 1, tzinfo=timezone.utc)
    clock.scale = 1.0
    assert clock.scale == 1.0
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.scale = 0
    saved = clock.to_state()
    restored = Clock(start=start)
    restored.load_state(saved)
    assert restored.now() >= parse_iso(saved["now"]) >= datetime(2026, 1, 1, 1, tzinfo=timezone.utc)
