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


# -- the sweep's duties (orchestrators/health_sweep_page.py): the pure parts, with in-memory stand-ins

V1, V2, V3 = "1" * 32, "2" * 32, "3" * 32

SWEEP_SAMPLES.update({
    "CheckSweepPageLagInput": [{"instances": [{"servicePrincipalId": "s", "savedVersions": {"kv": V1, "other": None}}]}],
    "CheckSweepPageLagOutput": [{"lagging": [{"servicePrincipalId": "s", "secrets": {"kv": {"saved": V1, "current": V2}}}],
                                 "rotations": [{"secretName": "kv", "version": V2}], "secretsRead": 1},
                                {"lagging": [], "rotations": [], "secretsRead": 1, "unreadable": {"kv": "refused"}}],
    "StartSweepRotationInput": [{"secretName": "kv", "version": V2, "dryRun": False, "source": "sweep",
                                 "options": {"sweepPageSize": 2}}],
    "StartSweepRotationOutput": [{"rotationId": "rotation-kv-" + V2, "secretName": "kv", "version": V2, "started": True}],
    "RecordSweepResultsInput": [{"runId": "s@t", "sweptAt": "t", "results": [
        {"servicePrincipalId": "s", "category": "quarantined", "reason": "EncounteredQuarantineException",
         "cause": "credentials", "lags": False}]}],
    "RecordSweepResultsOutput": [{"recorded": True, "changes": [{"servicePrincipalId": "s", "from": "healthy",
                                                                 "to": "quarantined"}]},
                                 {"recorded": False, "changes": [], "error": "fleet registry not written (X)"}],
    "CheckCredentialExpiryInput": [{"now": "2026-12-06T00:00:00+00:00", "warningDays": 30}],
    "CheckCredentialExpiryOutput": [{"checked": 2, "secrets": [{"secretName": "kv", "state": "expired"}]}],
})


@pytest.mark.parametrize("name", sorted(set(SWEEP_SAMPLES) - {"HealthSweepPageInput", "HealthSweepPageOutput",
                                                              "StageSweepReportInput", "StageSweepReportOutput",
                                                              "CommitSweepReportInput", "CommitSweepReportOutput"}))
def test_the_duty_contracts_round_trip_their_json(name):
    test_the_sweep_contracts_round_trip_their_json(name)


class _Vault:
    """Key Vault properties by secret name (never values), counting reads."""

    def __init__(self, current: dict[str, str | None]) -> None:
        self.current, self.reads = current, []

    def current_properties(self, name: str):
        self.reads.append(name)
        version = self.current.get(name.lower())
        return None if version is None else {"version": version, "expires": None}


def test_the_lag_check_reads_key_vault_once_per_secret_name_of_a_page():
    from types import SimpleNamespace

    from core.steps import sweep
    from core.sweep_contracts import CheckSweepPageLagInput

    vault = _Vault({"shared": V2, "own": V1})
    page = CheckSweepPageLagInput.from_dict({"instances": [
        {"servicePrincipalId": f"sp{i}", "savedVersions": {"shared": V1 if i < 3 else V2, "Own": V1, "gone": V3}}
        for i in range(6)]})
    found = sweep.page_lag(SimpleNamespace(secrets=vault), page.instances)
    assert sorted(vault.reads, key=str.lower) == ["gone", "Own", "shared"]  # 6 instances, 3 names: 3 reads
    assert [(e["servicePrincipalId"], e["secrets"]) for e in found["lagging"]] == [
        (f"sp{i}", {"shared": {"saved": V1, "current": V2}}) for i in range(3)]
    # one rotation per lagging version, however many instances lag; a secret Key Vault lacks is no lag
    assert found["rotations"] == [{"secretName": "shared", "version": V2}] and found["secretsRead"] == 3


def test_saved_versions_are_the_referenced_secrets_kv_saved_tags():
    from types import SimpleNamespace

    from core.steps import sweep

    ctx = SimpleNamespace(tag="fleet")
    tags = ["fleet", f"fleet:kv-saved:Token={V1}", f"fleet:kv-saved:unreferenced={V2}"]
    credentials = {"SecretToken": {"keyVaultSecret": "token"}, "Other": {"keyVaultSecret": "new"}, "Url": "https://x"}
    assert sweep.saved_versions(ctx, credentials, tags) == {"new": None, "token": V1}


class _Registry:
    def __init__(self, fail: bool = False) -> None:
        self.rows: dict[str, dict] = {}
        self.fail, self.reads, self.writes = fail, 0, 0

    def get_many(self, sp_ids, select=None):
        self.reads += 1
        if self.fail:
            raise OSError("storage down")
        return {sp: dict(self.rows[sp]) for sp in sp_ids if sp in self.rows}

    def upsert_many(self, rows):
        self.writes += 1
        for sp, fields in rows.items():
            self.rows.setdefault(sp, {}).update({k: v for k, v in fields.items() if v is not None})


def _record(registry, run: str, **categories):
    from core.steps import sweep
    from core.sweep_contracts import SweepResult

    results = [SweepResult(service_principal_id=sp, category=c) for sp, c in categories.items()]
    return sweep.record_sweep_results(None, run_id=run, swept_at=run, results=results, registry=registry)


def test_a_classification_change_is_reported_once_with_the_rules_of_the_registry_record():
    registry = _Registry()
    first = _record(registry, "r1", a="healthy", b="running", c="quarantined", d="unreadable")
    assert first == {"recorded": True, "changes": []}  # no previous classification: no event
    assert registry.reads == 1 and registry.writes == 1 and "d" not in registry.rows  # per page; unreadable not kept
    assert registry.rows["a"]["lastSweepResult"] == {"runId": "r1", "sweptAt": "r1", "category": "healthy"}
    second = _record(registry, "r2", a="running", b="quarantined", c="quarantined", d="healthy")
    # healthy <-> running is one classification; d was never observed before
    assert second["changes"] == [{"servicePrincipalId": "b", "from": "running", "to": "quarantined"}]
    again = _record(registry, "r2", a="running", b="quarantined", c="quarantined", d="healthy")
    assert again["changes"] == second["changes"]  # a retry of the same run reports it again, not lost
    third = _record(registry, "r3", a="healthy", b="quarantined", c="failing", d="unreadable")
    assert third["changes"] == [{"servicePrincipalId": "c", "from": "quarantined", "to": "failing"}]
    assert registry.rows["d"]["lastSweepResult"]["category"] == "healthy"  # unreadable left the record alone


def test_a_registry_failure_records_nothing_and_reports_no_change():
    failed = _record(_Registry(fail=True), "r1", a="healthy")
    assert failed == {"recorded": False, "changes": [], "error": "fleet registry not written (OSError)"}


def test_a_registry_failure_after_a_committed_transaction_loses_no_change_and_repeats_none():
    """Rows go in transactions of at most 100 (each atomic): when a later one fails, the changes of the rows
    already written are reported now (the next sweep compares with the new record), the others next time."""
    class FailsSecondWrite(_Registry):
        def upsert_many(self, rows):
            assert len(rows) <= 100, "one entity group transaction per call"
            if self.writes == 1:
                self.writes += 1
                raise OSError("storage down")
            super().upsert_many(rows)

    registry = FailsSecondWrite()
    ids = [f"sp{i:03d}" for i in range(150)]
    registry.rows = {sp: {"lastSweepResult": {"runId": "r1", "category": "healthy"}} for sp in ids}
    second = _record(registry, "r2", **{sp: "quarantined" for sp in ids})
    assert second["recorded"] is False
    third = _record(registry, "r3", **{sp: "quarantined" for sp in ids})
    assert third["recorded"] is True
    reported = [c["servicePrincipalId"] for c in second["changes"] + third["changes"]]
    assert sorted(reported) == ids  # each change once: none lost, none repeated


def test_the_sweep_starts_a_rotation_under_the_event_paths_id_with_the_canary_setting(ctx, monkeypatch):
    import dataclasses

    from activities import BODIES, run
    from core import names
    from core.instance_ids import rotation_instance_id

    guid = "8b1025e4-1dd2-430b-a150-2ef79cd700f5"
    template = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
    group = "0b4d2a49-5f0c-4bd6-9d0e-1a6b1c0f2e11"
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(
        ctx.settings, rotation_canary=f"User:{guid}", rotation_canary_by_template=f'{{"{template}": "Group:{group}"}}'))
    body = BODIES[names.START_SWEEP_ROTATION]
    done = run(names.START_SWEEP_ROTATION, {"secretName": "kv-token", "version": V2, "options": {"a": 1}}, body, ctx)
    assert done["rotationId"] == rotation_instance_id("kv-token", V2)
    # the settings' canaries are defaults (an instance's own canary wins), as on the Event Grid path
    rotation = done["rotation"]
    assert "canary" not in rotation and rotation["defaultCanary"] == {"objectId": guid, "objectTypeName": "User"}
    assert rotation["canaryByTemplate"] == {template: {"objectId": group, "objectTypeName": "Group"}}
    assert {k: rotation[k] for k in ("secretName", "version", "dryRun", "source", "options")} == {
        "secretName": "kv-token", "version": V2, "dryRun": False, "source": "sweep", "options": {"a": 1}}
    bad = run(names.START_SWEEP_ROTATION, {"secretName": "bad name", "version": "v1"}, body, ctx)
    assert bad["ok"] is False and bad["error"]["code"] == "InvalidRequest"


def test_the_parent_counts_a_rotation_started_by_any_page_once():
    from core.sweep_contracts import HealthSweepPageOutput
    from orchestrators.health_sweep_page import _SweepDuties

    duties = _SweepDuties()
    rotation = {"rotationId": "rotation-kv-" + V2, "secretName": "kv", "version": V2}
    duties.add(HealthSweepPageOutput(rotations=[{**rotation, "started": True}], lagging=[{"servicePrincipalId": "a"}],
                                     lagging_count=1, classification_changes=1), bound=1)
    duties.add(HealthSweepPageOutput(rotations=[{**rotation, "started": False}], lagging=[{"servicePrincipalId": "b"}],
                                     lagging_count=1, classification_changes=0), bound=1)
    fields = duties.report_fields()
    assert fields["rotations_started"] == 1 and fields["rotations"] == [{**rotation, "started": True}]
    assert fields["lagging"] == [{"servicePrincipalId": "a"}] and fields["lagging_omitted"] == 1
    assert fields["classification_changes"] == 1


def test_the_expiry_check_flags_expiring_and_expired_secrets_with_their_dependents_counted():
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from core.steps import sweep

    now = datetime(2026, 12, 6, tzinfo=timezone.utc)

    class Vault:
        def current_properties(self, name):
            expires = {"soon": "2026-12-16T00:00:00+00:00", "gone": "2026-12-05T00:00:00+00:00",
                       "later": "2027-06-01T00:00:00+00:00", "never": None}[name]
            return {"version": V1, "expires": expires}

    class Rows:
        def all(self):
            ref = {"keyVaultSecret": None}
            return [{"servicePrincipalId": f"sp{i}", "credentials": {"T": {**ref, "keyVaultSecret": name}}}
                    for i, name in enumerate(["soon", "soon", "gone", "later", "never"])]

    found = sweep.credential_expiry(SimpleNamespace(secrets=Vault()), now=now, warning_days=30, registry=Rows())
    assert found["checked"] == 4
    assert [(s["secretName"], s["state"], s["daysLeft"], s["instances"]) for s in found["secrets"]] == [
        ("gone", "expired", -1, 1), ("soon", "expiring", 10, 2)]


def test_a_secret_key_vault_refuses_to_describe_does_not_blind_the_lag_check_of_the_others():
    from types import SimpleNamespace

    from core.steps import sweep
    from core.sweep_contracts import CheckSweepPageLagInput

    class Vault(_Vault):
        def current_properties(self, name):
            if name == "locked":
                raise errors.SecretUnavailable("no", secret_name=name, status=403)
            if name == "busy":
                raise errors.SecretUnavailable("busy", secret_name=name, status=503)
            return super().current_properties(name)

    page = CheckSweepPageLagInput.from_dict({"instances": [
        {"servicePrincipalId": "sp", "savedVersions": {"locked": V1, "shared": V1}}]})
    found = sweep.page_lag(SimpleNamespace(secrets=Vault({"shared": V2})), page.instances)
    assert found["rotations"] == [{"secretName": "shared", "version": V2}]
    assert found["unreadable"] == {"locked": "Key Vault refused to list its versions (HTTP 403)"}
    busy = CheckSweepPageLagInput.from_dict({"instances": [{"servicePrincipalId": "sp", "savedVersions": {"busy": V1}}]})
    with pytest.raises(errors.SecretUnavailable):  # transient: the activity is retried
        sweep.page_lag(SimpleNamespace(secrets=Vault({})), busy.instances)
