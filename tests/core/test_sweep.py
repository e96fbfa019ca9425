"""core.steps.sweep.list_managed_page: the fleet listed one Graph page at a time (the cursor is Graph's nextLink), and
get_job_status without a job id costing one Graph read (the job list carries each job's status)."""

from __future__ import annotations

import pytest
from core_support import CUSTOM_TEMPLATE_ID, graph_requests

from core import errors, steps


def test_pages_follow_the_next_link_until_the_fleet_is_listed_once(ctx, core_env):
    seeded = core_env.admin.seed_fleet(7, ctx.tag, CUSTOM_TEMPLATE_ID, prefix="Paged", returnIds=True,
                                       labels={"env": "prod"})["servicePrincipalIds"]
    core_env.admin.seed_fleet(2, "someone-else", CUSTOM_TEMPLATE_ID, prefix="Foreign")
    seen, cursor, pages = [], None, 0
    while True:
        page = steps.list_managed_page(ctx, cursor, page_size=3)
        pages += 1
        assert len(page["instances"]) <= 3
        seen += page["instances"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 3 and sorted(i["servicePrincipalId"] for i in seen) == sorted(seeded)
    assert all(i["labels"] == {"env": "prod"} and i["instanceKey"].startswith("paged-") for i in seen)
    assert all(i["applicationTemplateId"] == CUSTOM_TEMPLATE_ID and "credentials" not in i for i in seen)


@pytest.mark.parametrize("cursor, page_size, field", [
    ("http://elsewhere.example/servicePrincipals", 3, "cursor"),
    (None, 0, "pageSize"),
    (None, 1000, "pageSize"),
])
def test_a_bad_cursor_or_page_size_is_refused_naming_the_field(ctx, cursor, page_size, field):
    with pytest.raises(errors.InvalidRequest) as caught:
        steps.list_managed_page(ctx, cursor, page_size)
    assert field in str(caught.value)


def test_a_job_status_without_job_id_is_one_graph_read(ctx, core_env):
    (sp_id,) = core_env.admin.seed_fleet(1, ctx.tag, CUSTOM_TEMPLATE_ID, prefix="One", returnIds=True,
                                         states={"quarantined": 1})["servicePrincipalIds"]
    (none_id,) = core_env.admin.seed_fleet(1, ctx.tag, CUSTOM_TEMPLATE_ID, prefix="None", returnIds=True,
                                           states={"missingJob": 1})["servicePrincipalIds"]
    core_env.admin.clear_requests()
    status = steps.get_job_status(ctx, service_principal_id=sp_id, job_id=None, started_at=None)
    assert status["status"]["state"] == "Quarantined" and status["jobId"]
    assert status["status"]["quarantine"]["cause"] == "credentials"
    assert len(graph_requests(core_env)) == 1
    assert steps.get_job_status(ctx, service_principal_id=none_id, job_id=None, started_at=None)["jobId"] is None


SWEEP_SAMPLES = {
    "HealthSweepPageInput": [{"options": {"sweepPageSize": 2}, "cursor": None, "page": 0, "sweepId": "s",
                              "blobName": "s/t.jsonl", "reportLimit": 500},
                             {"options": {}, "cursor": "https://graph.microsoft.com/next", "page": 3, "sweepId": "s",
                              "blobName": "s/t.jsonl", "restageOnly": True}],
    "HealthSweepPageOutput": [{"counts": {"healthy": 2}, "quarantinedByReason": {}, "unhealthy": [],
                               "unhealthyOmitted": 0, "restarted": [], "staged": True, "block": 0,
                               "nextCursor": None}],
    "StageSweepReportInput": [{"blobName": "b", "block": 0, "entries": [{"servicePrincipalId": "s"}]}],
    "StageSweepReportOutput": [{"block": 1, "bytes": 120}],
    "CommitSweepReportInput": [{"blobName": "b", "blocks": [0, 1]}],
    "CommitSweepReportOutput": [{"missing": [1]}, {"container": "c", "blobName": "b", "url": "u"}],
}


@pytest.mark.parametrize("name", sorted(SWEEP_SAMPLES))
def test_the_sweep_contracts_round_trip_their_json(name):
    from core import sweep_contracts

    cls = getattr(sweep_contracts, name)
    for sample in SWEEP_SAMPLES[name]:
        assert cls.from_dict(sample).to_dict() == sample


def test_the_sweep_report_activities_name_every_bad_field():
    from core import contracts, names
    from core.sweep_contracts import CommitSweepReportInput, StageSweepReportInput

    assert contracts.ACTIVITY_CONTRACTS[names.STAGE_SWEEP_REPORT][0] is StageSweepReportInput
    with pytest.raises(errors.InvalidRequest) as caught:
        StageSweepReportInput.from_dict({"blobName": "", "block": -1, "entries": ["x"]})
    assert sorted(p.path for p in caught.value.problems) == ["blobName", "block", "entries[0]"]
    with pytest.raises(errors.InvalidRequest) as caught:
        CommitSweepReportInput.from_dict({"blobName": "b", "blocks": [0, -2]})
    assert [p.path for p in caught.value.problems] == ["blocks"]
    with pytest.raises(errors.InvalidRequest) as caught:
        contracts.ListManagedInstancesInput.from_dict({"pageSize": 0})
    assert [p.path for p in caught.value.problems] == ["pageSize"]
