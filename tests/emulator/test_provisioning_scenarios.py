"""Target scenarios of the provisioning simulation, chosen by data (targets.json + naming rule).

Each scenario's observable behaviour per Microsoft's docs: validateCredentials answers, quarantine
reason and fields (synchronizationQuarantine; backoff 6 h/12 h/24 h per the quarantine article), lastExecution states, log failures, and how
start/restart get a job out of quarantine.
"""

from __future__ import annotations

import pytest

from emulator.clock import SENTINEL, parse_iso
from emulator.errors import GraphError
from emulator.provisioning import load_targets
from emulator.provisioning.scenarios import resolve
from emulator.provisioning.testing import make_service

SCIM = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
HOUR = 3600.0


def creds(base: str, token: str = "tok", extra: list | None = None) -> list[dict]:
    return [{"key": "BaseAddress", "value": base}, {"key": "SecretToken", "value": token}] + (extra or [])


def started_job(base: str, token: str = "tok", users: int = 4, extra: list | None = None, settings: dict | None = None):
    service, directory, clock = make_service(settings=settings)
    sp = directory.add_service_principal("Scenario app", SCIM)
    service.on_instantiate(SCIM, sp["id"])
    for i in range(users):
        directory.assign(sp["id"], directory.add_user(f"Person {i}")["id"])
    service.put_secrets(sp["id"], {"value": creds(base, token, extra)})
    job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    service.start_job(sp["id"], job_id)
    return service, directory, clock, sp["id"], job_id


@pytest.mark.parametrize(
    ("address", "token", "expected", "source"),
    [
        ("https://scim.contoso.test/scim/v2", "demo-scim-token", "healthy", "targets.json"),
        ("https://SCIM.contoso.test/scim/v2/", "demo-scim-token", "healthy", "targets.json"),
        ("https://scim.contoso.test/scim/v2", "wrong-token", "invalidCredentials", "targets.json (token mismatch)"),
        ("https://scim.wingtip.test/scim/v2", "wingtip-token", "escrowFailures", "targets.json"),
        ("https://escrow-failures.scim.test/scim/v2", "x", "escrowFailures", "naming rule"),
        ("https://scim.test/Too_Many_Deletes", "x", "tooManyDeletes", "naming rule"),
        ("https://scim.test/v2", "invalid-credentials", "invalidCredentials", "naming rule"),
        ("https://slow-initial-cycle.example/scim", "x", "slowInitialCycle", "naming rule"),
        ("https://app.example/never-steady/scim", "x", "neverSteady", "naming rule"),
        ("https://scim-non-compliant.scim.test/scim/v2", "x", "scimNonCompliant", "naming rule"),
        ("https://anything.example/scim", "x", "healthy", "default"),
        ("https://anything.example/scim", "", "invalidCredentials", "missing token"),
    ],
)
def test_scenario_resolution_rules(address, token, expected, source):
    scenario = resolve(load_targets(), address, token, "scim")
    assert (scenario.name, scenario.source) == (expected, source)


def test_scim_non_compliant_target_validates_but_quarantines_with_its_own_error_code():
    """The quarantine article's SCIM Compliance issue: the credentials pass, the cycle's requests get 404."""
    service, _, clock, sp_id, job_id = started_job("https://scim-non-compliant.scim.test/scim/v2")
    assert service.validate_credentials(sp_id, job_id, {"useSavedCredentials": True}) is None
    clock.advance(60)
    status = service.get_job(sp_id, job_id)["status"]
    q = status["quarantine"]
    assert status["code"] == "Quarantine" and q["reason"] == "EncounteredQuarantineException"
    assert q["error"]["code"] == "SystemForCrossDomainIdentityManagementServiceIncompatible"
    assert "404" in q["error"]["message"] and status["lastExecution"]["state"] == "Failed"
    rows = [r for r in service.provisioning_logs("v1.0") if r["jobId"] == job_id]
    assert len(rows) == 4 and {r["provisioningStatusInfo"]["errorInformation"]["errorCode"] for r in rows} == \
        {"SystemForCrossDomainIdentityManagementServiceIncompatible"}
    # new credentials do not change the target: the re-evaluation quarantines again
    service.put_secrets(sp_id, {"value": creds("https://scim-non-compliant.scim.test/scim/v2", "another")})
    service.restart_job(sp_id, job_id, {"criteria": {"resetScope": "QuarantineState"}})
    clock.advance(HOUR)
    again = service.get_job(sp_id, job_id)["status"]
    assert again["code"] == "Quarantine" and again["quarantine"]["error"]["code"] == q["error"]["code"]


def test_invalid_credentials_validate_400_and_a_started_job_is_quarantined():
    service, _, clock, sp_id, job_id = started_job("https://scim.test/invalid-credentials")
    with pytest.raises(GraphError) as err:
        service.validate_credentials(sp_id, job_id, {"useSavedCredentials": True})
    assert err.value.status == 400 and err.value.code == "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable"
    assert "tok" not in err.value.message
    clock.advance(60)
    job = service.get_job(sp_id, job_id)
    status = job["status"]
    assert status["code"] == "Quarantine" and job["schedule"]["state"] == "Active"
    q = status["quarantine"]
    assert q["reason"] == "EncounteredQuarantineException" and q["seriesCount"] == 1
    assert q["seriesBegan"] == q["currentBegan"]
    assert (parse_iso(q["nextAttempt"]) - parse_iso(q["currentBegan"])).total_seconds() == 6 * HOUR
    assert q["error"]["code"] and q["error"]["tenantActionable"] is True
    assert status["countSuccessiveCompleteFailures"] == 1
    assert status["lastExecution"]["state"] == "Failed" and status["lastSuccessfulExecution"] is None
    assert status["steadyStateLastAchievedTime"] == SENTINEL
    failures = [r for r in service.provisioning_logs("v1.0") if r["jobId"] == job_id]
    assert len(failures) == 4 and {r["provisioningStatusInfo"]["status"] for r in failures} == {"failure"}
    assert failures[0]["provisioningStatusInfo"]["errorInformation"]["errorCategory"] == "nonServiceFailure"
    # the re-evaluation 6 h later fails again: series continues, backoff grows to 12 h, then 24 h
    clock.advance(6 * HOUR)
    q2 = service.get_job(sp_id, job_id)["status"]["quarantine"]
    assert q2["seriesCount"] == 2 and q2["seriesBegan"] == q["seriesBegan"]
    assert (parse_iso(q2["nextAttempt"]) - parse_iso(q2["currentBegan"])).total_seconds() == 12 * HOUR
    clock.advance(12 * HOUR + 60)
    q3 = service.get_job(sp_id, job_id)["status"]["quarantine"]
    assert (parse_iso(q3["nextAttempt"]) - parse_iso(q3["currentBegan"])).total_seconds() == 24 * HOUR
    assert service.get_job(sp_id, job_id)["status"]["countSuccessiveCompleteFailures"] == 3
    # fix the credentials, then Start clears the quarantine (DOC) and the job reaches steady state
    service.put_secrets(sp_id, {"value": creds("https://scim.contoso.test/scim/v2", "demo-scim-token")})
    service.validate_credentials(sp_id, job_id, {"useSavedCredentials": True})
    service.start_job(sp_id, job_id)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["quarantine"] is None and status["code"] == "NotRun"
    clock.advance(60)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Active" and status["steadyStateLastAchievedTime"] != SENTINEL
    assert status["countSuccessiveCompleteFailures"] == 0


def test_quarantine_longer_than_four_weeks_disables_the_job():
    service, _, clock, sp_id, job_id = started_job("https://scim.test/invalid-credentials", users=1)
    for _ in range(40):
        clock.advance(86400)
    job = service.get_job(sp_id, job_id)
    assert job["schedule"]["state"] == "Disabled" and job["status"]["code"] == "Quarantine"
    rows = len(service.provisioning_logs("v1.0"))
    clock.advance(10 * 86400)
    assert len(service.provisioning_logs("v1.0")) == rows
    service.restart_job(sp_id, job_id, {"criteria": {"resetScope": "QuarantineState"}})
    job = service.get_job(sp_id, job_id)
    assert job["status"]["quarantine"] is None and job["schedule"]["state"] == "Active"


def test_escrow_failures_quarantine_with_escrow_proportion_threshold():
    # the documented evaluation threshold is 5,000 failures: a five-user job needs it set low
    service, _, clock, sp_id, job_id = started_job("https://scim.wingtip.test/scim/v2", "wingtip-token", users=5,
                                                   settings={"escrowQuarantineMinFailures": 1})
    service.validate_credentials(sp_id, job_id, {"useSavedCredentials": True})  # credentials are fine
    clock.advance(120)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Quarantine"
    assert status["quarantine"]["reason"] == "EncounteredEscrowProportionThreshold"
    assert status["lastExecution"]["state"] == "EntryLevelErrors"
    assert status["lastExecution"]["countEscrowed"] == 3  # ceil(0.6 x 5)
    assert status["countSuccessiveCompleteFailures"] == 0
    rows = [r for r in service.provisioning_logs("beta") if r["jobId"] == job_id]
    failed = [r for r in rows if r["provisioningStatusInfo"]["status"] == "failure"]
    assert len(failed) == 3 and len(rows) == 5
    assert failed[0]["statusInfo"]["errorCode"] == failed[0]["provisioningStatusInfo"]["errorInformation"]["errorCode"]
    assert failed[0]["provisioningSteps"][-1]["status"] == "failure"
    # restart with Escrows + QuarantineState drops the failed entries and lifts the quarantine;
    # the target still fails most exports, so the next cycle quarantines the job again
    service.restart_job(sp_id, job_id, {"criteria": {"resetScope": "Escrows, QuarantineState"}})
    status = service.get_job(sp_id, job_id)["status"]
    assert status["quarantine"] is None and status["code"] == "NotRun"  # no clean initial cycle yet
    clock.advance(120)
    assert service.get_job(sp_id, job_id)["status"]["quarantine"]["seriesCount"] == 1


def test_escrow_failures_below_the_evaluation_threshold_are_logged_and_the_job_reaches_steady_state():
    """DOC: 5,000 failures are the minimum to start evaluating an escrow quarantine (the default)."""
    service, _, clock, sp_id, job_id = started_job("https://scim.wingtip.test/scim/v2", "wingtip-token", users=5)
    assert service.settings.escrow_quarantine_min_failures == 5000
    clock.advance(120)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Active" and status["quarantine"] is None
    assert status["steadyStateLastAchievedTime"] != SENTINEL  # 3 of 5 users failed, and still steady
    assert status["lastExecution"]["state"] == "EntryLevelErrors" and status["lastExecution"]["countEscrowed"] == 3
    failed = [r for r in service.provisioning_logs("v1.0")
              if r["jobId"] == job_id and r["provisioningStatusInfo"]["status"] == "failure"]
    assert len(failed) == 3 and all(r["provisioningStatusInfo"]["errorInformation"]["errorCode"] for r in failed)
    # the next cycles retry the escrowed users, fail again, log again, and still do not quarantine
    clock.advance(2 * 2400)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Active" and status["quarantine"] is None
    again = [r for r in service.provisioning_logs("v1.0")
             if r["jobId"] == job_id and r["provisioningStatusInfo"]["status"] == "failure"]
    assert len(again) == 3 * 3 and len({r["cycleId"] for r in again}) == 3


@pytest.mark.parametrize(("minimum", "quarantined"), [(3, True), (4, False)])
def test_escrow_quarantine_is_evaluated_from_the_failure_count_setting(minimum, quarantined):
    # 3 of 5 exports fail (60 % > 40 %): evaluated when 3 failures reach the minimum, not when they are below it
    service, _, clock, sp_id, job_id = started_job("https://scim.wingtip.test/scim/v2", "wingtip-token", users=5,
                                                   settings={"escrowQuarantineMinFailures": minimum})
    clock.advance(120)
    status = service.get_job(sp_id, job_id)["status"]
    assert (status["code"] == "Quarantine") is quarantined
    assert ((status["quarantine"] or {}).get("reason") == "EncounteredEscrowProportionThreshold") is quarantined


def test_credential_failures_quarantine_at_once_whatever_the_failure_count_setting():
    service, _, clock, sp_id, job_id = started_job("https://scim.test/v2", "invalid-credentials", users=2)
    assert service.settings.escrow_quarantine_min_failures == 5000
    clock.advance(120)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Quarantine" and status["quarantine"]["reason"] == "EncounteredQuarantineException"


def test_a_disabled_user_is_logged_as_skipped_not_effectively_entitled():
    service, directory, clock = make_service()
    sp = directory.add_service_principal("Skip app", SCIM)
    service.on_instantiate(SCIM, sp["id"])
    active = directory.add_user("Active Person")
    disabled = directory.add_user("Disabled Person", accountEnabled=False)
    for user in (active, disabled):
        directory.assign(sp["id"], user["id"])
    service.put_secrets(sp["id"], {"value": creds("https://scim.contoso.test/scim/v2", "demo-scim-token")})
    job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    service.start_job(sp["id"], job_id)
    clock.advance(120)
    status = service.get_job(sp["id"], job_id)["status"]
    assert status["code"] == "Active" and status["steadyStateLastAchievedTime"] != SENTINEL
    assert status["lastExecution"]["state"] == "Succeeded"
    assert status["lastExecution"]["countExports"] == 1 and status["lastExecution"]["countExported"] == 1
    assert status["synchronizedEntryCountByType"] == [{"key": "User to User", "value": 1}]
    rows = {r["sourceIdentity"]["id"]: r for r in service.provisioning_logs("v1.0") if r["jobId"] == job_id}
    assert rows[active["id"]]["provisioningStatusInfo"] == {"status": "success", "errorInformation": None}
    skipped = rows[disabled["id"]]
    assert skipped["provisioningAction"] == "create"  # DOC: "filter the log to the action Create and status Skipped"
    assert skipped["provisioningStatusInfo"] == {"status": "skipped", "errorInformation": None}
    assert skipped["targetIdentity"]["id"] == ""
    skip_step = skipped["provisioningSteps"][-1]
    assert skip_step["name"] == "EntrySynchronizationSkip" and skip_step["status"] == "skipped"
    # the skip step's details as a user's provisioning log shows them (https://learn.microsoft.com/answers/a/12571236)
    assert skip_step["details"] == {"SkipReason": "NotEffectivelyEntitled", "IsActive": "False",
                                    "Assigned to the application": "True", "IsInProvisioningScope": "True"}
    beta = {r["sourceIdentity"]["id"]: r for r in service.provisioning_logs("beta") if r["jobId"] == job_id}
    assert beta[disabled["id"]]["action"] == "Create"
    assert beta[disabled["id"]]["statusInfo"] == {"@odata.type": "#microsoft.graph.statusBase", "status": "skipped"}
    # an incremental cycle has nothing to do for the disabled user: no second row
    clock.advance(2400 + 120)
    again = [r for r in service.provisioning_logs("v1.0") if r["sourceIdentity"]["id"] == disabled["id"]]
    assert len(again) == 1
    # once enabled, the next cycle provisions the user
    directory.users[disabled["id"]]["accountEnabled"] = True
    clock.advance(2400)
    latest = [r for r in service.provisioning_logs("v1.0") if r["sourceIdentity"]["id"] == disabled["id"]][0]
    assert latest["provisioningAction"] == "create" and latest["provisioningStatusInfo"]["status"] == "success"


@pytest.mark.parametrize("lifts", ["always", "withQuarantineState"])
def test_too_many_deletes_then_force_deletes(lifts):
    notify = {"key": "SyncNotificationSettings", "value": '{"Enabled":true,"Recipients":"ops@contoso.test","DeleteThresholdEnabled":true,"DeleteThresholdValue":3}'}
    service, _, clock, sp_id, job_id = started_job("https://scim.test/too-many-deletes", users=2, extra=[notify],
                                                   settings={"restartLiftsQuarantine": lifts})
    clock.advance(120)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Quarantine" and status["quarantine"]["reason"] == "TooManyDeletes"
    assert "3" in status["quarantine"]["error"]["message"]
    rows = [r for r in service.provisioning_logs("v1.0") if r["jobId"] == job_id]
    assert {r["provisioningAction"] for r in rows} == {"create"}  # the deletes were held back
    # Start alone does not help: the next cycle trips the threshold again
    service.start_job(sp_id, job_id)
    clock.advance(120)
    assert service.get_job(sp_id, job_id)["status"]["quarantine"]["reason"] == "TooManyDeletes"
    service.restart_job(sp_id, job_id, {"criteria": {"resetScope": "ForceDeletes"}})
    clock.advance(300)
    status = service.get_job(sp_id, job_id)["status"]
    if lifts == "withQuarantineState":
        # ForceDeletes alone: the deletes are allowed but the job waits for its next attempt in quarantine
        assert status["code"] == "Quarantine" and status["quarantine"]["reason"] == "TooManyDeletes"
        clock.advance(2 * 86400)
        status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Active" and status["quarantine"] is None
    disabled = [r for r in service.provisioning_logs("v1.0") if r["jobId"] == job_id and r["provisioningAction"] == "disable"]
    assert len(disabled) == 4  # threshold + 1 stale accounts
    assert disabled[0]["modifiedProperties"] == [{"displayName": "accountEnabled", "oldValue": "True", "newValue": "False"}]


def test_default_delete_threshold_comes_from_the_job_setting():
    service, _, clock, sp_id, job_id = started_job("https://scim.test/too-many-deletes", users=0)
    clock.advance(200)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["quarantine"]["reason"] == "TooManyDeletes" and "500" in status["quarantine"]["error"]["message"]


def test_slow_initial_cycle():
    service, _, clock, sp_id, job_id = started_job("https://scim.slow.test/scim/v2", users=3)
    clock.advance(20 + 2 * 60 + 1)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "NotRun" and status["progress"][0]["completedUnits"] == 2
    clock.advance(60)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Active" and status["steadyStateFirstAchievedTime"] != SENTINEL
    assert (parse_iso(status["lastExecution"]["timeEnded"]) - parse_iso(status["lastExecution"]["timeBegan"])).total_seconds() == 180


def test_never_steady():
    service, _, clock, sp_id, job_id = started_job("https://app.example/never-steady", users=4)
    clock.advance(10 * 2400)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Active" and status["quarantine"] is None
    assert status["steadyStateFirstAchievedTime"] == SENTINEL == status["steadyStateLastAchievedTime"]
    assert status["lastExecution"]["state"] == "EntryLevelErrors" and status["lastExecution"]["countEscrowed"] == 1
    retries = [r for r in service.provisioning_logs("v1.0") if r["provisioningStatusInfo"]["status"] == "failure"]
    assert len(retries) >= 10 and len({r["sourceIdentity"]["id"] for r in retries}) == 1


def test_start_without_secrets_can_be_configured_to_quarantine():
    service, directory, clock = make_service(settings={"startWithoutSecrets": "quarantine"})
    sp = directory.add_service_principal("No secrets", SCIM)
    job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    service.start_job(sp["id"], job_id)
    clock.advance(60)
    assert service.get_job(sp["id"], job_id)["status"]["quarantine"]["reason"] == "EncounteredQuarantineException"


def test_a_disabled_user_stays_skipped_when_the_credentials_are_invalid():
    """The skip is decided from the source alone (scoping), before the target is called, so a target
    that refuses the credentials does not turn it into a failed, escrowed entry (found in review)."""
    service, directory, clock = make_service()
    sp = directory.add_service_principal("Skip app", SCIM)
    service.on_instantiate(SCIM, sp["id"])
    active = directory.add_user("Active Person")
    disabled = directory.add_user("Disabled Person", accountEnabled=False)
    for user in (active, disabled):
        directory.assign(sp["id"], user["id"])
    service.put_secrets(sp["id"], {"value": creds("https://scim.test/v2", "invalid-credentials")})
    job_id = service.create_job(sp["id"], {"templateId": "scim"})["id"]
    service.start_job(sp["id"], job_id)
    clock.advance(120)
    status = service.get_job(sp["id"], job_id)["status"]
    assert status["quarantine"]["reason"] == "EncounteredQuarantineException"
    assert status["lastExecution"]["countEscrowed"] == 1  # the active user only
    rows = {r["sourceIdentity"]["id"]: r for r in service.provisioning_logs("v1.0") if r["jobId"] == job_id}
    assert rows[active["id"]]["provisioningStatusInfo"]["status"] == "failure"
    skipped = rows[disabled["id"]]
    assert skipped["provisioningStatusInfo"] == {"status": "skipped", "errorInformation": None}
    assert skipped["provisioningSteps"][-1]["details"]["SkipReason"] == "NotEffectivelyEntitled"


def test_force_deletes_with_quarantine_state_goes_through_at_once():
    """allowDeletes as the fleet sends it (ForceDeletes,QuarantineState): the same under both settings."""
    notify = {"key": "SyncNotificationSettings", "value": '{"Enabled":true,"Recipients":"","DeleteThresholdEnabled":true,"DeleteThresholdValue":2}'}
    service, _, clock, sp_id, job_id = started_job("https://scim.test/too-many-deletes", users=1, extra=[notify])
    clock.advance(120)
    assert service.get_job(sp_id, job_id)["status"]["quarantine"]["reason"] == "TooManyDeletes"
    service.restart_job(sp_id, job_id, {"criteria": {"resetScope": "ForceDeletes,QuarantineState"}})
    assert service.get_job(sp_id, job_id)["status"]["quarantine"] is None
    clock.advance(300)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Active" and status["quarantine"] is None
    disabled = [r for r in service.provisioning_logs("v1.0") if r["jobId"] == job_id and r["provisioningAction"] == "disable"]
    assert len(disabled) == 3


@pytest.mark.parametrize("scope", ["Watermark", "Escrows", "ConnectorDataStore", "ForceDeletes"])
def test_restart_without_quarantine_state_keeps_a_quarantine_until_its_next_attempt(scope):
    """Graph: QuarantineState "temporarily lifts the quarantine"; the other scopes clear their own state only."""
    service, _, clock, sp_id, job_id = started_job("https://scim.test/invalid-credentials", users=1)
    clock.advance(120)
    before = service.get_job(sp_id, job_id)["status"]["quarantine"]
    assert before["reason"] == "EncounteredQuarantineException"
    service.restart_job(sp_id, job_id, {"criteria": {"resetScope": scope}})
    after = service.get_job(sp_id, job_id)["status"]
    assert after["code"] == "Quarantine" and after["quarantine"]["nextAttempt"] == before["nextAttempt"]
    for lifting in ("QuarantineState", "Full", "None"):
        service.restart_job(sp_id, job_id, {"criteria": {"resetScope": lifting}})
        assert service.get_job(sp_id, job_id)["status"]["quarantine"] is None, lifting
        clock.advance(120)  # the credentials are still wrong: quarantined again
        assert service.get_job(sp_id, job_id)["status"]["code"] == "Quarantine"


@pytest.mark.parametrize("lifts", ["always", "withQuarantineState"])
def test_allow_deletes_scope_lifts_the_quarantine_under_both_readings(lifts):
    """The fleet's allowDeletes sends ForceDeletes,QuarantineState (core.fleet.ALLOW_DELETES_SCOPE): under
    either restartLiftsQuarantine reading the held deletes go through in the next cycle, not days later."""
    from core.fleet import ALLOW_DELETES_SCOPE

    notify = {"key": "SyncNotificationSettings", "value": '{"Enabled":true,"DeleteThresholdEnabled":true,"DeleteThresholdValue":3}'}
    service, _, clock, sp_id, job_id = started_job("https://scim.test/too-many-deletes", users=2, extra=[notify],
                                                   settings={"restartLiftsQuarantine": lifts})
    clock.advance(120)
    assert service.get_job(sp_id, job_id)["status"]["quarantine"]["reason"] == "TooManyDeletes"
    service.restart_job(sp_id, job_id, {"criteria": {"resetScope": ALLOW_DELETES_SCOPE}})
    clock.advance(300)
    status = service.get_job(sp_id, job_id)["status"]
    assert status["code"] == "Active" and status["quarantine"] is None
    disabled = [r for r in service.provisioning_logs("v1.0") if r["jobId"] == job_id and r["provisioningAction"] == "disable"]
    assert len(disabled) == 4


def test_deletion_prevention_off_lets_the_cycle_delete_everything():
    """SyncNotificationSettings as in Graph's own example (``{"Enabled":false,"DeleteThresholdEnabled":false}``,
    https://learn.microsoft.com/graph/api/synchronization-serviceprincipal-put-synchronization): no threshold,
    so the stale accounts the tooManyDeletes target holds (default threshold + 1 = 501) are disabled in the
    first cycle and nothing is quarantined."""
    notify = {"key": "SyncNotificationSettings", "value": '{"Enabled":false,"DeleteThresholdEnabled":false}'}
    service, _, clock, sp_id, job_id = started_job("https://scim.test/too-many-deletes", users=1, extra=[notify])
    for _ in range(40):
        clock.advance(3600)
        status = service.get_job(sp_id, job_id)["status"]
        if status["steadyStateLastAchievedTime"] != "0001-01-01T00:00:00Z" or status["quarantine"]:
            break
    assert status["quarantine"] is None and status["code"] == "Active"
    disabled = [r for r in service.provisioning_logs("v1.0") if r["jobId"] == job_id and r["provisioningAction"] == "disable"]
    assert len(disabled) == 501
