"""Documented OData rules the emulator did not enforce (found in review): provisioning-log
paging while rows arrive, advanced queries (ConsistencyLevel) and applicationTemplates' filterable
properties."""

from __future__ import annotations

import pytest

from emulator.odata import apply_query, decode_skiptoken, encode_skiptoken
from emulator_graph import GraphClient, assert_graph_error

SCIM_CREDS = [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"},
              {"key": "SecretToken", "value": "demo-scim-token"},
              {"key": "SyncAll", "value": "true"}]


def _running_job(graph: GraphClient, name: str) -> str:
    _, sp = graph.instantiate(name)
    base = f"servicePrincipals/{sp['id']}/synchronization"
    job = graph.post(f"{base}/jobs", json={"templateId": "scim"}).json()
    assert graph.put(f"{base}/secrets", json={"value": SCIM_CREDS}).status_code == 204
    assert graph.post(f"{base}/jobs/{job['id']}/start").status_code == 204
    return job["id"]


def test_log_pages_are_one_snapshot_while_the_job_writes_rows(emulator_env, graph: GraphClient):
    emulator_env.admin.set_faults(throttling={"enabled": False})
    job_id = _running_job(graph, "Paging")
    emulator_env.admin.advance(40)  # the initial cycle is under way: some rows exist, more are coming
    query = {"$filter": f"jobId eq '{job_id}'", "$top": "5"}
    first = graph.get("auditLogs/provisioning", params=query).json()
    assert len(first["value"]) == 5 and first.get("@odata.nextLink")
    before = {row["id"] for row in graph.all_pages("auditLogs/provisioning", **{**query, "$top": "1000"})}
    emulator_env.admin.advance(20)  # more rows arrive before the client fetches page 2
    seen = [row["id"] for row in first["value"]]
    link = first["@odata.nextLink"]
    while link:
        page = graph.get(link).json()
        seen += [row["id"] for row in page["value"]]
        link = page.get("@odata.nextLink")
    assert len(seen) == len(set(seen)), "a row came back on a later page"
    assert set(seen) == before  # exactly the rows there were when the first page was served
    now = {row["id"] for row in graph.all_pages("auditLogs/provisioning", **{**query, "$top": "1000"})}
    assert now > before  # a new listing sees the new rows


def test_snapshot_paging_in_apply_query():
    items = [{"n": n} for n in range(10, 0, -1)]  # newest first, 10 ever added
    first = apply_query(items, {"$top": "4"}, "https://h/x", snapshot=10)
    token = first["@odata.nextLink"].split("$skiptoken=")[1]
    grown = [{"n": n} for n in range(13, 0, -1)]  # three rows arrived since
    second = apply_query(grown, {"$top": "4", "$skiptoken": token}, "https://h/x", snapshot=13)
    assert [i["n"] for i in first["value"]] == [10, 9, 8, 7]
    assert [i["n"] for i in second["value"]] == [6, 5, 4, 3]
    assert decode_skiptoken(encode_skiptoken(4, 10)) == 4


def test_filter_with_orderby_needs_consistency_level_and_count(graph: GraphClient):
    params = {"$filter": "startswith(displayName,'P')", "$orderby": "displayName"}
    for headers, extra in (({}, {}), ({"ConsistencyLevel": "eventual"}, {}), ({}, {"$count": "true"})):
        response = graph.get("servicePrincipals", params={**params, **extra}, headers=headers)
        assert_graph_error(response, 400, "Request_UnsupportedQuery")
    ok = graph.get("servicePrincipals", params={**params, "$count": "true"}, headers={"ConsistencyLevel": "eventual"})
    assert ok.status_code == 200, ok.text
    names = [sp["displayName"] for sp in ok.json()["value"]]
    assert names == sorted(names, key=str.lower) and ok.json()["@odata.count"] == len(names)


@pytest.mark.parametrize("expression", ["publisher eq 'Amazon'", "id eq '8b1025e4-1dd2-430b-a150-2ef79cd700f5'",
                                        "displayName eq 'Box' or publisher eq 'Box'",
                                        "supportedProvisioningTypes/any(t:t eq 'sync')"])
def test_template_filter_is_limited_to_display_name_and_categories(graph: GraphClient, expression):
    error = assert_graph_error(graph.get("applicationTemplates", params={"$filter": expression}), 400, "BadRequest")
    assert "displayName" in error["message"] and "categories" in error["message"]


@pytest.mark.parametrize("expression", ["displayName eq 'AWS Single-Account Access'", "contains(displayName,'aws')",
                                        "categories/any(c:contains(c,'developer'))",
                                        "startswith(displayName,'Box') and categories/any(c:c eq 'collaboration')"])
def test_template_filter_on_display_name_and_categories_works(graph: GraphClient, expression):
    response = graph.get("applicationTemplates", params={"$filter": expression})
    assert response.status_code == 200, response.text
