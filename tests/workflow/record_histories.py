"""Record the histories replayed by test_history_replay.py. Run by hand, from the repository root, with
the test folders on the path as pytest puts them (pyproject.toml ``pythonpath``)::

    PYTHONPATH=.:tests:tests/devhost:tests/workflow:tests/workflow/stub_app .venv/bin/python tests/workflow/record_histories.py

Each scenario runs the real orchestrators on devhost's engine with scripted activities (replay_support)
and stores, per orchestration instance, its name, input, full history and output. The stored file is
the contract the orchestrators keep: a history recorded by an older version must replay to the same
activity calls and the same output (Durable replays running orchestrations with the new code).
"""

from __future__ import annotations

import json
from pathlib import Path

from replay_support import run, script

OUT = Path(__file__).resolve().parent / "histories" / "before_contracts.json"

RUNNING = {"ok": True, "jobId": "job1", "status": {"state": "Running", "settled": False, "code": "Active"}}
STEADY_ERRORS = {"ok": True, "jobId": "job1", "status": {
    "state": "SteadyState", "settled": True, "code": "Active",
    "lastExecution": {"state": "EntryLevelErrors", "timeBegan": "2026-11-27T10:00:05Z",
                      "timeEnded": "2026-11-27T10:05:00Z"}}}
STEADY = {"ok": True, "jobId": "job1", "status": {"state": "SteadyState", "settled": True, "code": "Active"}}
CRED_QUARANTINE = {"ok": True, "jobId": "job1", "status": {
    "state": "Quarantined", "settled": True, "code": "Quarantine",
    "quarantine": {"reason": "EncounteredQuarantineException", "cause": "credentials", "credentialProblem": True}}}
THROTTLED = {"ok": False, "error": {"kind": "throttled", "code": "TooManyRequests", "retryAfterSeconds": 3.0,
                                    "message": "throttled", "step": "ensure_job"}}
FAST = {"pollFirstInterval": 10, "pollMaxInterval": 10, "pollsPerExecution": 2}


def _setup_script() -> None:
    script(resolve_application_template=[{"ok": True, "templateId": "t-aws", "displayName": "AWS",
                                          "jobKind": "roleImport"}],
           ensure_application=lambda p, n: {"ok": True, "applicationId": f"app-{p['instanceKey']}", "appId": "a1",
                                            "servicePrincipalId": f"sp-{p['instanceKey']}", "created": True,
                                            "createdHere": True, "tagged": False},
           wait_until_visible=[{"ok": True, "visible": True, "reads": 2, "tagged": True,
                                "recordedVersions": {"kv-token": "v1"}}],
           ensure_job=[THROTTLED, {"ok": True, "jobId": "job1", "created": True}],
           validate_credentials=[{"ok": True, "secretVersions": {"kv-token": "v2"}}],
           save_secrets=[{"ok": True, "secretVersions": {"kv-token": "v2"}}],
           assign_principals=[{"ok": True, "assigned": 1, "alreadyAssigned": 0, "rolesImported": 2}],
           start_job=[{"ok": True, "started": True, "alreadyRunning": False, "startedAt": "2026-11-27T10:00:00Z"}],
           get_job_status=[RUNNING, RUNNING, RUNNING, STEADY_ERRORS],
           get_provisioning_errors=[{"ok": True, "errors": [{"code": "E1", "message": "m"}], "failedObjects": 1,
                                     "topErrorCodes": [{"code": "E1", "count": 1, "reason": "m"}], "pages": 1,
                                     "complete": True, "since": "2026-11-27T10:00:05Z"}],
           list_managed_instances=[{"ok": True, "instances": [
               {"servicePrincipalId": "sp1", "displayName": "One", "jobId": "job1",
                "credentials": {"SecretToken": {"keyVaultSecret": "s"}}, "syncAll": True},
               {"servicePrincipalId": "sp2", "displayName": "Two", "labels": {"team": "x"}}]}],
           restart_quarantined_job=[{"ok": True, "jobId": "job1", "restarted": True, "reason": "restarted"}])


INSTANCE = {"key": "k1", "displayName": "AWS Account", "applicationTemplate": {"displayName": "AWS"},
            "credentials": {"SecretToken": {"keyVaultSecret": "kv-token"}}, "syncAll": True,
            "notificationEmail": "ops@example.com", "labels": {"team": "x"},
            "assignments": {"users": ["u1"], "groups": ["g1"], "appRole": "Admin,WAAD"}}


def record(tmp: Path) -> list[dict]:
    _setup_script()

    async def scenario(engine):
        starts = [("provision_batch", {"requestId": "r1", "request": {"instances": [INSTANCE, {
                      **INSTANCE, "key": "k2", "displayName": "Other", "assignments": {"users": ["u2"]}}]},
                   "options": FAST}, "batch1"),
                  ("provision_instance", {"batchId": "b", "options": FAST,
                                          "instance": {**INSTANCE, "templateId": "t1"}}, "inst1"),
                  ("health_sweep", {"options": {"restartCredentialQuarantine": True}}, "sweep1")]
        for name, data, iid in starts:
            if name == "health_sweep":
                script(list_managed_instances=[{"ok": True, "instances": [
                           {"servicePrincipalId": "sp1", "displayName": "One", "jobId": "job1",
                            "credentials": {"SecretToken": {"keyVaultSecret": "s"}}, "syncAll": True},
                           {"servicePrincipalId": "sp2", "displayName": "Two", "labels": {"team": "x"}}]}],
                       get_job_status=lambda p, n: CRED_QUARANTINE if p["servicePrincipalId"] == "sp1" else STEADY,
                       restart_quarantined_job=[{"ok": True, "jobId": "job1", "restarted": True,
                                                 "reason": "restarted"}])
            await engine.start_orchestration(name, data, instance_id=iid)
            await engine.wait_for_instance(iid, 120)
        return [_dump(engine, iid) for iid in _all_ids(engine)]

    return run(tmp, scenario)


def _all_ids(engine) -> list[str]:
    rows = engine.store.db.execute("SELECT instance_id FROM instances ORDER BY instance_id").fetchall()
    return [r[0] for r in rows]


def _dump(engine, iid: str) -> dict:
    row = engine.get_instance(iid)
    return {"instanceId": iid, "name": row.name, "status": row.status, "input": row.input,
            "output": row.output, "history": engine.get_history(iid)}


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        data = record(Path(tmp))
    OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"{len(data)} instances -> {OUT}")
