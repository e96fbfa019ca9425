"""Job lifecycle of the provisioning simulation (service level, hand-driven clock).

Covers the job state machine (emulator/provisioning/README.md): create -> NotConfigured, start -> NotRun -> Active
with steady state, incremental cycles, pause, restart per resetScope, delete, persistence and
determinism. HTTP-level behaviour is in test_provisioning_http.py.
"""

from __future__ import annotations

import json
import re

import pytest

from emulator.clock import SENTINEL, parse_iso
from emulator.errors import GraphError
from emulator.provisioning import load_catalog
from emulator.provisioning.testing import make_service

SCIM = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
HEALTHY = [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"}, {"key": "SecretToken", "value": "demo-scim-token"}]


def setup_app(service, directory, users=3, template=SCIM, creds=HEALTHY, name="Contoso SCIM"):
    sp = directory.add_service_principal(name, template)
    service.on_instantiate(template, sp["id"])
    for i in range(users):
        user = directory.add_user(f"{name} user {i}")
        directory.assign(sp["id"], user["id"])
    if creds is not None:
        service.put_secrets(sp["id"], {"value": creds})
    return sp


def run_until(service, clock, sp_id, job_id, predicate, step=5.0, limit=20000.0):
    waited = 0.0
    while waited <= limit:
        job = service.get_job(sp_id, job_id)
        if predicate(job):
            return job
        clock.advance(step)
        waited += step
    raise AssertionError(f"condition not reached within {limit} simulated seconds: {json.dumps(job['status'])}")


def steady(job):
    return job["status"]["code"] == "Active" and job["status"]["steadyStateLastAchievedTime"] != SENTINEL


def test_catalog_has_the_required_gallery_templates():
    catalog = load_catalog()
    names = {t["displayName"] for t in catalog["applicationTemplates"]}
    for wanted in ("AWS IAM Identity Center (successor to AWS Single Sign-On)", "AWS Single-Account Access", "Box", "ServiceNow", "Slack", "Dropbox Business", "GitHub Enterprise Managed User", "Zoom"):
        assert wanted in names
    custom = next(t for t in catalog["applicationTemplates"] if t["id"] == SCIM)
    sync = custom["synchronizationTemplates"][0]
    assert sync["id"] == "scim" and sync["schema"]["synchronizationRules"][0]["objectMappings"]
    assert {c["key"]: c["secret"] for c in sync["credentials"]} == {"BaseAddress": False, "SecretToken": True}
    for template in catalog["applicationTemplates"]:
        assert any(r["displayName"] == "msiam_access" for r in template["appRoles"])
        if template["supportedProvisioningTypes"] == ["sync"]:
            assert template["synchronizationTemplates"], template["displayName"]
        for sync_template in template["synchronizationTemplates"]:  # each names the credential keys its job needs
            keys = [c["key"] for c in sync_template["credentials"] if c.get("required")]
            assert keys and all(k[:1].isupper() for k in keys), (template["displayName"], keys)


def test_new_job_is_not_configured_with_sentinels_and_the_job_id_format():
    service, directory, _ = make_service()
    sp = setup_app(service, directory, creds=None)
    templates = service.list_templates(sp["id"])
    assert [t["id"] for t in templates] == ["scim"] and templates[0]["factoryTag"] == "customappsso"
    assert templates[0]["applicationId"] == sp["appId"]
    job = service.create_job(sp["id"], {"templateId": "scim"})
    tenant = directory.tenant_id.replace("-", "")
    assert re.fullmatch(rf"scim\.{tenant}\.[0-9a-f]{{8}}-[0-9a-f]{{4}}-4[0-9a-f]{{3}}-[89ab][0-9a-f]{{3}}-[0-9a-f]{{12}}", job["id"])
    assert job["schedule"] == {"expiration": None, "interval": "P10675199DT2H48M5.4775807S", "state": "Disabled"}
    status = job["status"]
    assert status["code"] == "NotConfigured"
    assert status["steadyStateFirstAchievedTime"] == SENTINEL == status["steadyStateLastAchievedTime"]
    for name in ("lastExecution", "lastSuccessfulExecution", "lastSuccessfulExecutionWithExports", "quarantine", "troubleshootingUrl"):
        assert status[name] is None
    assert status["progress"] == [] and status["synchronizedEntryCountByType"] == []
    assert status["countSuccessiveCompleteFailures"] == 0 and status["escrowsPruned"] is False
    assert job["synchronizationJobSettings"] == [{"name": "QuarantineTooManyDeletesThreshold", "value": "500"}]
    assert service.list_jobs(sp["id"]) == [job]


def test_job_errors_match_the_reference():
    service, directory, _ = make_service()
    sp = setup_app(service, directory, creds=None)
    for body in ({}, {"templateId": ""}, {"templateId": 5}, []):
        with pytest.raises(GraphError) as err:
            service.create_job(sp["id"], body)
        assert err.value.status == 400
    with pytest.raises(GraphError) as err:
        service.create_job(sp["id"], {"templateId": "aws"})
    assert err.value.status == 400 and "scim" in err.value.message
    with pytest.raises(GraphError) as err:
        service.get_job(sp["id"], "scim.nope")
    assert (err.value.status, err.value.code) == (404, "Request_ResourceNotFound")
    with pytest.raises(GraphError) as err:
        service.list_jobs("00000000-0000-0000-0000-000000000001")
    assert err.value.status == 404
    job = service.create_job(sp["id"], {"templateId": "scim"})
    with pytest.raises(GraphError) as err:
        service.start_job(sp["id"], job["id"])  # no secrets saved yet
    assert err.value.status == 400 and "SecretToken" in err.value.message
    toolkit = directory.add_service_principal("SAML toolkit", "a2b3c4d5-e6f7-4a8b-9c0d-1e2f3a4b5c6d")
    assert service.list_templates(toolkit["id"]) == []
    with pytest.raises(GraphError):
        service.create_job(toolkit["id"], {"templateId": "scim"})


def test_start_runs_the_initial_cycle_to_steady_state():
    service, directory, clock = make_service()
    sp = setup_app(service, directory, users=4)
    job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    started = clock.now()
    service.start_job(sp["id"], job_id)
    job = service.get_job(sp["id"], job_id)
    assert job["status"]["code"] == "NotRun"
    assert job["schedule"] == {"expiration": None, "interval": "PT40M", "state": "Active"}
    job = run_until(service, clock, sp["id"], job_id, lambda j: j["status"]["progress"], step=1)
    progress = job["status"]["progress"][0]
    assert progress["totalUnits"] == 4 and 0 <= progress["completedUnits"] < 4
    assert job["status"]["code"] == "NotRun" and job["status"]["lastExecution"] is None
    job = run_until(service, clock, sp["id"], job_id, steady, step=1)
    status = job["status"]
    assert parse_iso(status["steadyStateFirstAchievedTime"]) > started
    assert status["steadyStateFirstAchievedTime"] == status["steadyStateLastAchievedTime"]
    run = status["lastExecution"]
    assert run["state"] == "Succeeded" and run["countExported"] == 4 and run["countEntitled"] == 4
    assert run["timeEnded"] == status["steadyStateLastAchievedTime"]
    assert status["lastSuccessfulExecution"] == run == status["lastSuccessfulExecutionWithExports"]
    assert status["synchronizedEntryCountByType"] == [{"key": "User to User", "value": 4}]
    assert status["progress"] == [] and status["quarantine"] is None
    # a healthy job with 4 users reaches steady state within delay + 4 x 4.8 s (documented worst case)
    assert (parse_iso(status["steadyStateFirstAchievedTime"]) - started).total_seconds() <= 20 + 4 * 4.8
    rows = [r for r in service.provisioning_logs("v1.0") if r["jobId"] == job_id]
    assert len(rows) == 4 and {r["provisioningAction"] for r in rows} == {"create"}
    assert {r["provisioningStatusInfo"]["status"] for r in rows} == {"success"}
    assert len({r["cycleId"] for r in rows}) == 1 and len({r["changeId"] for r in rows}) == 4


def test_incremental_cycles_export_only_changes_and_groups_bring_their_direct_members():
    service, directory, clock = make_service()
    sp = setup_app(service, directory, users=2)
    job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    service.start_job(sp["id"], job_id)
    first = run_until(service, clock, sp["id"], job_id, steady)["status"]
    rows_before = len(service.provisioning_logs("v1.0"))
    clock.advance(2400 + 10)  # one idle incremental cycle: no rows, steady state renewed
    idle = service.get_job(sp["id"], job_id)["status"]
    assert len(service.provisioning_logs("v1.0")) == rows_before
    assert idle["steadyStateLastAchievedTime"] > first["steadyStateLastAchievedTime"]
    assert idle["steadyStateFirstAchievedTime"] == first["steadyStateFirstAchievedTime"]
    member = directory.add_user("Group member")
    nested = directory.add_group("Nested", [directory.add_user("Nested member")["id"]])
    group = directory.add_group("Sales", [member["id"], nested["id"]])
    directory.assign(sp["id"], group["id"])
    gone = directory.assignments[sp["id"]][0]
    directory.unassign(sp["id"], gone)
    clock.advance(2400 + 60)
    rows = [r for r in service.provisioning_logs("v1.0") if r["jobId"] == job_id][: len(service.provisioning_logs("v1.0")) - rows_before]
    by_name = {r["sourceIdentity"]["displayName"]: r for r in rows}
    assert by_name["Sales"]["provisioningAction"] == "create" and by_name["Sales"]["sourceIdentity"]["identityType"] == "Group"
    assert by_name["Group member"]["provisioningAction"] == "create"
    assert "Nested member" not in by_name  # nested groups are not provisioned (DOC)
    assert by_name[directory.users[gone]["displayName"]]["provisioningAction"] == "disable"
    status = service.get_job(sp["id"], job_id)["status"]
    assert {e["key"]: e["value"] for e in status["synchronizedEntryCountByType"]} == {"User to User": 2, "Group to Group": 1}


def test_pause_lets_the_running_cycle_finish_and_start_resumes():
    service, directory, clock = make_service()
    sp = setup_app(service, directory, users=5)
    job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    service.start_job(sp["id"], job_id)
    run_until(service, clock, sp["id"], job_id, lambda j: j["status"]["progress"], step=1)
    service.pause_job(sp["id"], job_id)
    job = service.get_job(sp["id"], job_id)
    assert job["status"]["code"] == "Paused" and job["schedule"]["state"] == "Disabled"
    clock.advance(600)
    job = service.get_job(sp["id"], job_id)
    assert job["status"]["code"] == "Paused"
    assert job["status"]["lastExecution"]["countExported"] == 5  # the in-flight cycle ran to completion
    rows = len(service.provisioning_logs("v1.0"))
    directory.assign(sp["id"], directory.add_user("Late joiner")["id"])
    clock.advance(3 * 2400)
    assert len(service.provisioning_logs("v1.0")) == rows  # no cycles while paused
    service.start_job(sp["id"], job_id)
    assert service.get_job(sp["id"], job_id)["status"]["code"] == "Active"
    clock.advance(120)
    assert service.provisioning_logs("v1.0")[0]["sourceIdentity"]["displayName"] == "Late joiner"


def test_restart_reset_scopes():
    service, directory, clock = make_service()
    sp = setup_app(service, directory, users=2)
    job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    service.start_job(sp["id"], job_id)
    run_until(service, clock, sp["id"], job_id, steady)
    with pytest.raises(GraphError) as err:
        service.restart_job(sp["id"], job_id, {"criteria": {"resetScope": "Watermark, Bogus"}})
    assert err.value.status == 400 and "Bogus" in err.value.message
    restarted_at = clock.now()
    service.restart_job(sp["id"], job_id, {"criteria": {"resetScope": "Watermark"}})
    assert service.get_job(sp["id"], job_id)["status"]["code"] == "NotRun"  # a new initial cycle
    job = run_until(service, clock, sp["id"], job_id, lambda j: steady(j) and parse_iso(j["status"]["steadyStateLastAchievedTime"]) > restarted_at)
    rows = [r for r in service.provisioning_logs("beta") if r["cycleId"] == job["status"]["lastExecution"]["activityIdentifier"]]
    assert len(rows) == 2 and {r["provisioningAction"] for r in rows} == {"other"}
    assert {r["provisioningStatusInfo"]["status"] for r in rows} == {"skipped"} and rows[0]["action"] == "Other"
    # Full clears the connector data store: the next initial cycle re-creates (re-links) everyone
    service.restart_job(sp["id"], job_id, {"criteria": {"resetScope": "Full"}})
    job = run_until(service, clock, sp["id"], job_id, lambda j: steady(j) and j["status"]["lastExecution"]["countExported"] == 2)
    # no body at all = the portal's Restart (QuarantineState, Watermark, Escrows)
    service.restart_job(sp["id"], job_id, None)
    assert service.get_job(sp["id"], job_id)["status"]["code"] == "NotRun"


def test_delete_job_keeps_secrets_and_sp_deletion_forgets_everything():
    service, directory, _ = make_service()
    sp = setup_app(service, directory)
    job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    service.start_job(sp["id"], job_id)
    service.delete_job(sp["id"], job_id)
    with pytest.raises(GraphError) as err:
        service.get_job(sp["id"], job_id)
    assert err.value.status == 404
    assert [s["key"] for s in service.get_secrets(sp["id"])["value"]] == ["BaseAddress", "SecretToken"]
    second = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    del directory.service_principals[sp["id"]]
    service.on_service_principal_deleted(sp["id"])
    with pytest.raises(GraphError):
        service.get_job(sp["id"], second)


def test_state_round_trips_through_json_and_continues_identically():
    def scenario(service, directory, clock):
        sp = setup_app(service, directory, users=3)
        job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
        service.start_job(sp["id"], job_id)
        clock.advance(21)
        return sp["id"], job_id

    a, dir_a, clock_a = make_service(seed=5)
    sp_id, job_id = scenario(a, dir_a, clock_a)
    service_state = json.loads(json.dumps(a.to_state()))
    assert service_state["jobs"][0]["cycle"] is not None  # saved in the middle of a cycle
    b, _, clock_b = make_service(seed=99, directory=dir_a)
    clock_b.advance((clock_a.now() - clock_b.now()).total_seconds())
    b.load_state(service_state)
    assert b.get_job(sp_id, job_id) == a.get_job(sp_id, job_id)
    for clock in (clock_a, clock_b):
        clock.advance(3000)
    assert b.get_job(sp_id, job_id) == a.get_job(sp_id, job_id)
    assert b.provisioning_logs("beta") == a.provisioning_logs("beta")
    assert b.get_secrets(sp_id) == a.get_secrets(sp_id)


def test_same_seed_same_history():
    results = []
    for _ in range(2):
        service, directory, clock = make_service(seed=11)
        sp = setup_app(service, directory, users=6)
        job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
        service.start_job(sp["id"], job_id)
        clock.advance(5000)
        results.append((service.get_job(sp["id"], job_id), service.provisioning_logs("v1.0")))
    assert results[0] == results[1]


def test_hundreds_of_jobs_and_a_long_clock_jump_stay_cheap():
    service, directory, clock = make_service(settings={"logCapacity": 500})
    jobs = []
    for i in range(200):
        sp = setup_app(service, directory, users=3, name=f"App {i}")
        job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
        service.start_job(sp["id"], job_id)
        jobs.append((sp["id"], job_id))
    clock.advance(120)
    assert all(steady(service.get_job(s, j)) for s, j in jobs)
    assert len(service.provisioning_logs("v1.0")) == 500  # ring buffer bound (600 rows were written)
    clock.advance(30 * 86400)  # 30 days: idle cycles are coalesced, not replayed one by one
    service.advance()
    assert len(service.engine._heap) <= 2 * len(jobs)
    status = service.get_job(*jobs[0])["status"]
    assert (clock.now() - parse_iso(status["steadyStateLastAchievedTime"])).total_seconds() <= 2400
