"""Reading a cycle's provisioning errors: filtered by Graph, paged back to the cycle's start, counted.

The emulator's Wingtip target fails 60 % of the exports; under the documented escrow-quarantine
threshold (5,000 failures, the emulator's default) the job reaches steady state with those
failures logged, and every later cycle retries and logs them again.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import unquote

import pytest
from core_support import CUSTOM_TEMPLATE_ID, graph_requests

from core import errors, model, steps
from core import status as job_status
from core.graph import provisioning_logs as logs
from core.times import iso_seconds

WINGTIP = {"BaseAddress": "https://scim.wingtip.test/scim/v2", "SecretToken": {"keyVaultSecret": "scim-wingtip-token"}}


def wingtip_job(ctx, core_env, name: str, cycles: int = 1) -> tuple[str, str, str]:
    """A started Wingtip job over every user (SyncAll), ``cycles`` cycles run: (sp id, job id, startedAt)."""
    found = steps.ensure_application(ctx, batch_id="b1", instance_key=model.instance_key(name), display_name=name,
                                     template_id=CUSTOM_TEMPLATE_ID)
    sp_id = found["servicePrincipalId"]
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id)["jobId"]
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=model.parse_credentials(WINGTIP), sync_all=True)
    started = steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)["startedAt"]
    core_env.admin.advance(600 + (cycles - 1) * 2400)
    return sp_id, job_id, started


def all_failures(ctx, job_id: str) -> list[dict]:
    rows = ctx.graph.get_all("/auditLogs/provisioning", {"$top": "1000"})
    return [r for r in rows if r["jobId"] == job_id and r["provisioningStatusInfo"]["status"] == "failure"]


def test_a_cycles_errors_are_read_back_to_its_start_across_pages(core_env, make_ctx):
    ctx = make_ctx("workflow", provisioning_log_page_size=6, provisioning_log_min_interval_seconds=0.0)
    sp_id, job_id, started = wingtip_job(ctx, core_env, "Paged errors app", cycles=3)
    status = steps.get_job_status(ctx, service_principal_id=sp_id, job_id=job_id, started_at=started)["status"]
    assert status["state"] == "SteadyState" and status["lastExecution"]["state"] == "EntryLevelErrors"
    failures = all_failures(ctx, job_id)
    failing_users = {r["sourceIdentity"]["id"] for r in failures}
    cycles = {r["cycleId"] for r in failures}
    assert len(failing_users) >= 5 and len(cycles) == 3  # the same users fail in every cycle

    last = status["lastExecution"]
    core_env.admin.clear_requests()
    # as monitor_job asks: from the cycle's timeBegan to a second past its timeEnded (Graph's status
    # shows whole seconds, rows carry fractions)
    until = iso_seconds(job_status.parse_time(last["timeEnded"]) + timedelta(seconds=1))
    read = steps.get_provisioning_errors(ctx, service_principal_id=sp_id, job_id=job_id, since=last["timeBegan"],
                                         until=until, top=3)
    # exactly the latest cycle: every failed object once, nothing from the earlier cycles
    assert read["failedObjects"] == len(failing_users) and read["failures"] == len(failing_users)
    assert read["complete"] is True and read["pages"] == -(-len(failing_users) // 6) >= 3  # pages of 6 rows
    assert len(read["errors"]) == 3 and {r["cycleId"] for r in read["errors"]} == {max(
        cycles, key=lambda c: max(r["activityDateTime"] for r in failures if r["cycleId"] == c))}
    assert read["topErrorCodes"] == [{"code": "SystemForCrossDomainIdentityManagementServiceError",
                                      "count": len(failing_users), "reason": read["topErrorCodes"][0]["reason"]}]
    assert "HTTP 500" in read["topErrorCodes"][0]["reason"]
    # Graph did the filtering: job, time window and status are in every $filter; later pages follow nextLink
    sent = graph_requests(core_env, pathContains="/auditLogs/provisioning", status=200)  # 429s were retried
    assert len(sent) == read["pages"]
    first = unquote(sent[0]["query"])
    assert all("$skiptoken=" in unquote(r["query"]) for r in sent[1:])
    for clause in (f"jobId eq '{job_id}'", "activityDateTime gt ", "activityDateTime lt ",
                   "provisioningStatusInfo/status eq 'failure'"):
        assert clause in first, (clause, first)

    # from our start instead: three cycles' rows, the same objects
    wide = make_ctx("workflow", provisioning_log_min_interval_seconds=0.0)  # pages of 500
    since_start = steps.get_provisioning_errors(wide, service_principal_id=sp_id, job_id=job_id, since=started, top=3)
    assert since_start["failures"] == len(failures) and since_start["failedObjects"] == len(failing_users)
    assert since_start["complete"] is True and since_start["pages"] == 1


def test_the_page_bound_cuts_a_long_read_short_and_says_so(core_env, make_ctx):
    ctx = make_ctx("workflow", provisioning_log_page_size=2, provisioning_log_min_interval_seconds=0.0,
                   provisioning_log_max_pages=2)
    sp_id, job_id, started = wingtip_job(ctx, core_env, "Bounded errors app")
    read = steps.get_provisioning_errors(ctx, service_principal_id=sp_id, job_id=job_id, since=started, top=10)
    assert read["pages"] == 2 and read["complete"] is False and read["failures"] == 4


class RefusesStatusFilter:
    """The real client, except that a $filter on the status enum is answered 400 (as a Graph that
    wanted the typed literal ``microsoft.graph.provisioningResult'failure'`` would)."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.refused = 0

    def get(self, path, params=None):
        if params and logs.STATUS_PROPERTY in params.get("$filter", ""):
            self.refused += 1
            raise errors.BadRequest("Invalid filter clause", code="BadRequest", status=400)
        return self.graph.get(path, params)


def test_a_refused_status_clause_falls_back_to_filtering_the_status_here(core_env, make_ctx):
    ctx = make_ctx("workflow", provisioning_log_min_interval_seconds=0.0)
    sp_id, job_id, started = wingtip_job(ctx, core_env, "Fallback errors app")
    pacer = logs.Pacer(0.0)
    client = RefusesStatusFilter(ctx.graph)
    read = logs.read_rows(client, pacer, job_id, job_status.parse_time(started), 50, status="failure")  # type: ignore[arg-type]
    assert client.refused == 1 and read["serverStatusFilter"] is False and read["complete"] is True
    expected = all_failures(ctx, job_id)
    assert sorted(r["id"] for r in read["rows"]) == sorted(r["id"] for r in expected)
    assert all(r["status"] == "failure" for r in read["rows"])


def test_a_user_supplied_job_id_is_escaped_in_the_filter(core_env, make_ctx):
    ctx = make_ctx("workflow", provisioning_log_min_interval_seconds=0.0)
    core_env.admin.clear_requests()
    read = logs.read_rows(ctx.graph, logs.Pacer(0.0), "x' or jobId ne 'y", job_status.parse_time("2026-01-01T00:00:00Z"),
                          50, status="failure")
    assert read["rows"] == []
    sent = graph_requests(core_env, pathContains="/auditLogs/provisioning", status=200)[0]
    assert "jobId eq 'x'' or jobId ne ''y'" in unquote(sent["query"])


@pytest.mark.parametrize("rows, expected", [
    ([], {"failedObjects": 0, "failures": 0, "topErrorCodes": []}),
    ([{"source": {"id": "u1"}, "errorCode": "A", "reason": "a"}, {"source": {"id": "u1"}, "errorCode": "A"},
      {"source": {"id": "u2"}, "errorCode": "B", "reason": "b"}],
     {"failedObjects": 2, "failures": 3, "topErrorCodes": [{"code": "A", "count": 2, "reason": "a"},
                                                            {"code": "B", "count": 1, "reason": "b"}]}),
])
def test_error_summary_counts_distinct_objects(rows, expected):
    assert logs.error_summary(rows, 5) == expected
