"""Drift in the paged health sweep (orchestrators/sweep_drift.py), replayed by the real SDK on devhost's engine
with scripted activities: off by default (no drift read at all); with ``sweepDriftCheck`` each instance's drift
is read once, the drifted ones are marked in the blob lines and the sweep report counts them per part over
every page."""

from __future__ import annotations

import pytest
from replay_support import calls, output, run, script

pytestmark = pytest.mark.timeout(180)

STEADY = {"ok": True, "jobId": "job1", "status": {"state": "SteadyState", "settled": True, "code": "Active"}}
PAGES = {None: (["sp0", "sp1", "sp2"], "https://graph.test/next"), "https://graph.test/next": (["sp3", "sp4"], None)}
DRIFT = {"sp1": ["schema"], "sp3": ["provisioningSettings", "schedule"], "sp4": ["schema"]}


def _listing(payload, n):
    ids, next_cursor = PAGES[payload.get("cursor")]
    return {"ok": True, "instances": [{"servicePrincipalId": i, "displayName": i.upper()} for i in ids],
            "nextCursor": next_cursor}


def _drift(payload, n):
    sp = payload["servicePrincipalId"]
    if sp == "sp2":
        return {"ok": False, "error": {"kind": "permanent", "code": "NotManaged", "message": "x", "step": "d"}}
    parts = DRIFT.get(sp, [])
    return {"ok": True, "servicePrincipalId": sp, "profile": "custom-scim.v1" if sp != "sp0" else None,
            "jobId": "job1", "drifted": bool(parts), "parts": parts}


def _sweep(tmp_path, options: dict) -> dict:
    script(list_managed_instances=_listing, get_job_status=lambda payload, n: STEADY, check_instance_drift=_drift,
           stage_sweep_report=lambda payload, n: {"ok": True, "block": payload["block"]},
           commit_sweep_report=lambda payload, n: {"ok": True, "container": "c", "blobName": payload["blobName"],
                                                   "url": "http://blob"})

    async def scenario(engine):
        iid = await engine.start_orchestration("health_sweep", {"options": {"sweepPageSize": 3, **options}},
                                               instance_id="sweep-drift")
        return await engine.wait_for_instance(iid, 60)

    row = run(tmp_path, scenario)
    assert row.status == "Completed"
    return output(row)


def test_drift_is_not_read_unless_switched_on(tmp_path):
    report = _sweep(tmp_path, {})
    assert report["total"] == 5 and not calls("check_instance_drift") and "driftCounts" not in report
    assert not any("drift" in line for _, p in calls("stage_sweep_report") for line in p["entries"])


def test_the_sweep_counts_drift_per_part_and_marks_the_blob_lines(tmp_path):
    report = _sweep(tmp_path, {"sweepDriftCheck": True})
    assert sorted(p["servicePrincipalId"] for _, p in calls("check_instance_drift")) == ["sp0", "sp1", "sp2", "sp3", "sp4"]
    assert report["driftCounts"] == {"checked": 5, "drifted": 3, "provisioningSettings": 1, "schedule": 1,
                                     "schema": 2, "unreadable": 1}
    lines = {line["servicePrincipalId"]: line for _, p in calls("stage_sweep_report") for line in p["entries"]}
    assert lines["sp3"]["drift"] == {"parts": ["provisioningSettings", "schedule"], "profile": "custom-scim.v1"}
    assert lines["sp2"]["drift"] == {"error": "drift could not be read"} and "drift" not in lines["sp0"]
    assert report["counts"]["healthy"] == 5  # drift does not change the health categories
