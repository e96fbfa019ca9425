"""core.contracts: every contract round-trips its camelCase JSON exactly, inputs are parsed strictly
(a bad field is named), outputs and reports leniently (a result recorded by an older version reads)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core import batch_contracts as bc
from core import contracts as c
from core import fleet_contracts as fc
from core import names
from core import profile_contracts as pc
from core import rotation_contracts as rc
from core.errors import InvalidRequest

REF = {"SecretToken": {"keyVaultSecret": "kv-token"}, "BaseAddress": "https://scim.example.com/"}

#: one JSON sample per contract, in the shape the orchestrators and activities exchange today
SAMPLES: dict[type, list[dict]] = {
    c.ResolveTemplateInput: [{"applicationTemplate": {"id": "8b1025e4-1dd2-430b-a150-2ef79cd700f5"}},
                             {"applicationTemplate": {"displayName": "AWS"}}],
    c.ResolveTemplateOutput: [{"templateId": "t1", "displayName": "AWS", "jobKind": "roleImport"}],
    c.EnsureApplicationInput: [{"batchId": "b", "instanceKey": "k", "displayName": "App", "templateId": "t",
                                "labels": {"team": "ops"}},
                               {"batchId": None, "instanceKey": "k", "displayName": "App", "templateId": "t",
                                "labels": {}}],
    c.EnsureApplicationOutput: [{"applicationId": "a", "appId": "b", "servicePrincipalId": "s", "created": True,
                                 "createdHere": True, "tagged": False},
                                {"applicationId": "a", "appId": "b", "servicePrincipalId": "s", "created": False,
                                 "tagged": True}],
    c.WaitUntilVisibleInput: [{"servicePrincipalId": "s", "applicationId": "a", "instanceKey": "k", "labels": {},
                               "credentials": REF, "syncAll": True, "displayName": "App", "templateId": "t",
                               "created": True, "notificationEmail": "ops@example.com"},
                              {"servicePrincipalId": "s", "applicationId": None, "instanceKey": "k", "labels": {},
                               "credentials": REF, "syncAll": False, "displayName": "App", "templateId": "t",
                               "created": False}],
    c.WaitUntilVisibleOutput: [{"visible": True, "reads": 5, "tagged": True, "recordedVersions": {"kv-token": "v1"},
                                "tags": ["entra-provisioning-fleet", "entra-provisioning-fleet:instance:k"]},
                               {"visible": True, "reads": 2, "tagged": False, "yielded": True,
                                "kept": {"servicePrincipalId": "s2", "appId": "b2"},
                                "discard": {"applicationId": "a1", "servicePrincipalId": "s1"}}],
    c.DiscardApplicationInput: [{"applicationId": "a", "servicePrincipalId": "s", "instanceKey": "k"}],
    c.DiscardApplicationOutput: [{"deleted": True}],
    c.EnsureJobInput: [{"servicePrincipalId": "s", "applicationTemplateId": "t"},
                       {"servicePrincipalId": "s", "applicationTemplateId": "t", "synchronizationTemplateId": "scim"}],
    c.EnsureJobOutput: [{"jobId": "j", "templateId": "scim", "created": True}],
    c.ValidateCredentialsInput: [{"servicePrincipalId": "s", "jobId": "j", "credentials": REF}],
    c.ValidateCredentialsOutput: [{"secretVersions": {"SecretToken": "v1"}}],
    c.SaveSecretsInput: [{"servicePrincipalId": "s", "credentials": REF, "syncAll": False},
                         {"servicePrincipalId": "s", "credentials": REF, "syncAll": True,
                          "notificationEmail": "a@example.com", "recordedVersions": {"kv-token": "v1"},
                          "currentTags": ["entra-provisioning-fleet"]}],
    c.SaveSecretsOutput: [{"keys": ["BaseAddress", "SecretToken"], "cleared": [], "secretVersions": {"SecretToken": "v1"},
                           "savedVersions": {"kv-token": "v1"}}],
    c.AssignPrincipalsInput: [{"servicePrincipalId": "s", "users": ["u"], "groups": [], "appRole": "Admin"},
                              {"servicePrincipalId": "s", "countImportedRoles": True, "users": [], "groups": ["g"]}],
    c.AssignPrincipalsOutput: [{"assigned": 1, "alreadyAssigned": 0}, {"assigned": 0, "alreadyAssigned": 1,
                                                                       "rolesImported": None}],
    c.StartJobInput: [{"servicePrincipalId": "s", "jobId": "j"}],
    c.StartJobOutput: [{"started": True, "alreadyRunning": False, "startedAt": "2026-11-27T10:00:00.000000Z"}],
    c.GetJobStatusInput: [{"servicePrincipalId": "s", "jobId": None, "startedAt": None}],
    c.GetJobStatusOutput: [{"jobId": "j", "status": {"state": "Running", "settled": False}},
                           {"jobId": None, "status": {"state": "MissingJob"}}],
    c.GetProvisioningErrorsInput: [{"servicePrincipalId": "s", "jobId": "j", "since": "x", "top": 10},
                                   {"servicePrincipalId": "s", "jobId": "j", "since": "x", "top": 10, "until": "y"}],
    c.GetProvisioningErrorsOutput: [{"errors": [{"code": "E"}], "failedObjects": 1, "failures": 2,
                                     "topErrorCodes": [{"code": "E", "count": 2, "reason": None}], "since": "x",
                                     "pages": 1, "complete": False}],
    c.ListManagedInstancesInput: [{}, {"pageSize": 200}, {"cursor": "https://graph.microsoft.com/next", "pageSize": 2}],
    c.ListManagedInstancesOutput: [{"instances": [{"servicePrincipalId": "s", "displayName": "d"}]},
                                   {"instances": [], "nextCursor": "https://graph.microsoft.com/next"}],
    c.ManagedInstance: [{"servicePrincipalId": "s", "displayName": "d", "applicationTemplateId": None,
                         "instanceKey": "k", "labels": {}, "credentials": REF, "syncAll": False}],
    c.RestartQuarantinedJobInput: [{"servicePrincipalId": "s", "jobId": None},
                                   {"servicePrincipalId": "s", "jobId": "j", "credentials": REF, "syncAll": True,
                                    "notificationEmail": "a@example.com"}],
    c.RestartQuarantinedJobOutput: [{"jobId": "j", "restarted": False, "reason": "not quarantined"},
                                    {"jobId": "j", "restarted": True, "reason": "r", "cause": "credentials",
                                     "restartedAt": "t", "secretVersions": {"kv": "v2"}}],
    c.StepError: [{"kind": "throttled", "code": "TooManyRequests", "message": "m", "step": "s",
                   "retryAfterSeconds": 2.5},
                  {"kind": "permanent", "code": "Forbidden", "message": "m", "step": "s", "status": 403,
                   "requestId": "r", "missingPermissions": ["AuditLog.Read.All"]},
                  {"kind": "permanent", "code": "InvalidRequest", "message": "m",
                   "problems": [{"path": "x", "message": "is required"}]}],
    c.ErrorCodeCount: [{"code": "E", "count": 3, "reason": "why"}],
    c.ServicePrincipalRef: [{"servicePrincipalId": "s", "appId": "a"}],
    c.ProvisionInstanceInput: [{"batchId": "b", "instance": {"key": "k"}, "options": {}, "monitor": False},
                               {"batchId": "b", "instance": {"key": "k"}, "options": {"pollsPerExecution": 2}}],
    c.MonitorJobInput: [{"servicePrincipalId": "s", "jobId": "j", "startedAt": "t", "deadline": "d", "options": {}},
                        {"servicePrincipalId": "s", "jobId": "j", "startedAt": "t", "deadline": "d", "options": {},
                         "roleImport": {}, "state": {"polls": 3}}],
    c.InstanceOutcome: [
        {"instanceKey": "k", "displayName": "d", "orchestrationId": "b:k", "outcome": "configured", "reason": None,
         "ids": {"applicationId": "a"}, "timings": {"startedAt": "t"}, "polls": 0, "provisioningErrors": [],
         "jobKind": "roleImport", "roleImport": {"users": []}, "jobStartedAt": "t"},
        {"instanceKey": "k", "displayName": "d", "orchestrationId": "b:k", "outcome": "timedOut", "reason": "r",
         "ids": {"applicationId": None}, "timings": {}, "polls": 3, "provisioningErrors": [], "status": None,
         "failedObjects": 0, "topErrorCodes": [], "errorsRead": {"since": "x"}, "rolesImported": None},
        {"instanceKey": "k", "displayName": "d", "orchestrationId": "b:k", "outcome": "failed", "reason": "r",
         "error": {"kind": "permanent", "code": "X", "message": "m", "step": "s"}, "ids": {}, "timings": {},
         "provisioningErrors": []}],
    c.BatchReport: [{"batchId": "b", "requestId": None, "startedAt": "t", "finishedAt": "u", "durationSeconds": None,
                     "counts": {"total": 0}, "succeeded": True, "instances": [], "topErrors": []}],
    c.SweepReport: [{"sweptAt": "t", "total": 1, "counts": {"healthy": 1}, "quarantinedByReason": {},
                     "unhealthy": [], "restarted": [{"servicePrincipalId": "s", "restarted": False, "reason": None}]},
                    {"sweptAt": "t", "total": 0, "counts": {}, "quarantinedByReason": {}, "unhealthy": [],
                     "restarted": [], "pages": 1, "unhealthyOmitted": 0, "restartedOmitted": 0,
                     "report": {"container": "c", "blobName": "b", "url": "u"}}],
}

VERSION = "0123456789abcdef0123456789abcdef"
CANARY = {"objectId": "8b1025e4-1dd2-430b-a150-2ef79cd700f5", "objectTypeName": "User"}
OUTCOME = {"instanceKey": "k", "displayName": "d", "orchestrationId": "b:k", "outcome": "configured", "reason": None,
           "ids": {"applicationId": "a"}, "timings": {}, "provisioningErrors": []}

#: the feature families' contracts (core/<family>_contracts.py), same rules
SAMPLES.update({
    fc.FleetTarget: [{"instanceKey": "k", "servicePrincipalId": "s"},
                     {"instanceKey": "k", "servicePrincipalId": "s", "displayName": "d"}],
    fc.FleetActionInput: [{"actionId": "a", "action": "restart", "params": {"scope": "Full"},
                           "targets": [{"instanceKey": "k", "servicePrincipalId": "s"}], "selector": {"label": "x"},
                           "maxInFlight": 2, "options": {"pollsPerExecution": 2}}],
    fc.FleetInstanceActionInput: [{"action": "pause", "instanceKey": "k", "servicePrincipalId": "s", "params": {}}],
    fc.FleetActionReport: [{"actionId": "a", "action": "pause", "params": {}, "selector": {}, "counts": {"done": 1},
                            "results": [{"instanceKey": "k", "outcome": "done"}], "startedAt": "t",
                            "finishedAt": None}],
    fc.FleetInstanceActionOutput: [{"instanceKey": "k", "servicePrincipalId": "s", "jobId": "j", "action": "pause",
                                    "outcome": "done", "detail": None}],
    pc.PlanSchemaProfileInput: [{"servicePrincipalId": "s", "profile": "p"},
                                {"servicePrincipalId": "s", "profile": "p", "jobId": "j"}],
    pc.ApplySchemaProfileInput: [{"servicePrincipalId": "s", "profile": "p", "jobId": "j", "dryRun": True}],
    pc.SchemaPlanOutput: [{"servicePrincipalId": "s", "jobId": "j", "profile": "p", "changes": [], "fingerprint": {}},
                          {"servicePrincipalId": "s", "jobId": "j", "templateId": "scim", "profile": "p",
                           "changes": [{"op": "add"}], "fingerprint": {"sha": "x"}, "jobScheduleState": "Active",
                           "dryRun": False, "applied": True, "restarted": True, "recorded": True}],
    pc.CheckInstanceDriftInput: [{"servicePrincipalId": "s"}],
    pc.EnforceInstanceDriftInput: [{"servicePrincipalId": "s", "instanceKey": "k", "dryRun": False}],
    pc.EnforceInstanceDriftOutput: [{"servicePrincipalId": "s", "instanceKey": "k", "profile": "p", "dryRun": True,
                                     "drifted": True, "parts": ["schema"],
                                     "actions": [{"part": "schema", "action": "apply", "outcome": "planned"}]}],
    pc.EnforceDriftInput: [{"enforceId": "e", "selector": {"env": "prod"}, "targets": [
        {"instanceKey": "k", "servicePrincipalId": "s"}], "dryRun": True, "maxInFlight": 4, "paceSeconds": 0,
        "options": {}}],
    pc.SummarizeCycleInput: [{"servicePrincipalId": "s", "jobId": "j", "windows": [
        {"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:10:00Z"}, {"since": "2026-01-01T01:00:00Z"}]}],
    pc.CycleSummary: [{"since": "x", "until": "y", "rows": 3, "failedObjects": 1, "removedObjects": 2,
                       "scopedOutObjects": 0}],
    pc.CycleSummaryOutput: [{"cycles": [{"since": "x", "rows": 1, "failedObjects": 0, "removedObjects": 0,
                                         "scopedOutObjects": 1}], "rows": 3, "pages": 1, "complete": False}],
    pc.InstanceDriftOutput: [{"servicePrincipalId": "s", "profile": None, "jobId": "j", "drifted": False, "parts": []},
                             {"servicePrincipalId": "s", "displayName": "d", "profile": "p", "jobId": "j",
                              "drifted": True, "parts": ["schema", "job"], "schema": {"changes": 1},
                              "secretKeys": {"missing": ["SecretToken"]}, "schedule": {}, "job": {"state": "x"}}],
    pc.ApplyProfileInput: [{"servicePrincipalId": "s", "profile": "p", "options": {}},
                           {"servicePrincipalId": "s", "profile": "p", "instanceKey": "k", "dryRun": True,
                            "options": {"pollsPerExecution": 2}}],
    pc.RolloutInput: [{"rolloutId": "r", "profile": "p", "instances": [{"key": "k", "servicePrincipalId": "s"}],
                       "canaries": ["k"], "waveSize": 5, "pauseSeconds": 60, "maxChecks": 10, "maxInFlight": 10, "removalThreshold": 0,
                       "canaryTestUsers": {"k": {"objectId": "u", "objectTypeName": "User"}}, "options": {}}],
    rc.ListSecretDependentsInput: [{"secretName": "kv-token"}],
    rc.SecretDependent: [{"servicePrincipalId": "s", "displayName": "d", "instanceKey": "k"}],
    rc.ListSecretDependentsOutput: [{"instances": [{"servicePrincipalId": "s"}]}],
    rc.RotateInstanceInput: [{"servicePrincipalId": "s", "secretName": "kv-token", "version": VERSION,
                              "dryRun": False},
                             {"servicePrincipalId": "s", "secretName": "kv-token", "version": VERSION,
                              "dryRun": True, "canary": CANARY}],
    rc.RotateInstanceOutput: [{"servicePrincipalId": "s", "outcome": "rotated", "restarted": True, "jobId": "j",
                               "secretVersions": {"SecretToken": VERSION}, "rotatedAt": "t",
                               "canary": {"objectId": CANARY["objectId"], "status": "success", "confirmed": True}},
                              {"servicePrincipalId": "s", "displayName": "d", "outcome": "failed", "reason": "r",
                               "restarted": False, "code": "Forbidden"}],
    rc.RebuildRegistryInput: [{}],
    rc.RebuildRegistryOutput: [{"instances": 3, "removed": ["k"]}],
    rc.RotateSecretInput: [{"secretName": "kv-token", "version": VERSION, "dryRun": False, "options": {}},
                           {"secretName": "kv-token", "version": VERSION, "dryRun": True, "source": "event",
                            "canary": CANARY, "options": {"rotationMaxInFlight": 2}}],
    rc.RotationReport: [{"rotationId": "r", "secretName": "kv-token", "version": VERSION, "source": "sweep",
                         "dryRun": False, "startedAt": "t", "finishedAt": "u", "counts": {"rotated": 1},
                         "instances": [{"servicePrincipalId": "s", "outcome": "rotated", "restarted": True}]}],
    bc.SubBatchInput: [{"batchId": "b", "index": 0, "phase": "setup", "instances": [{"key": "k"}], "outcomes": [],
                        "templates": {"aws": {"templateId": "t"}}, "options": {}, "maxInFlight": 2,
                        "keepAll": True, "keepMax": 0, "reportContainer": "reports"},
                       {"batchId": "b", "index": 1, "phase": "watch", "instances": [], "outcomes": [OUTCOME],
                        "setupBlob": "b/setup-1.json", "templates": {}, "options": {}, "maxInFlight": 1,
                        "keepAll": False, "keepMax": 50, "reportContainer": "reports"},
                       {"batchId": "b", "index": 2, "phase": "setup", "instances": [], "outcomes": [],
                        "templates": {}, "options": {}, "maxInFlight": 1, "keepAll": False, "keepMax": 50,
                        "reportContainer": "reports",
                        "requestPart": {"container": "reports", "blob": "b/request-ab.jsonl",
                                        "part": {"offset": 0, "length": 10, "count": 1, "sha256": "ab"}}}],
    bc.SubBatchSummary: [{"index": 0, "total": 1, "counts": {"configured": 1}, "topErrors": [], "instances": [OUTCOME],
                          "reportBlob": None},
                         {"index": 1, "total": 0, "counts": {}, "topErrors": [{"code": "E", "count": 1}],
                          "instances": [], "reportBlob": "b/part-1.json", "reportError": "x"}],
    bc.WriteBatchReportInput: [{"container": "reports", "blob": "b.json", "document": {"batchId": "b"}}],
    bc.ReadBatchReportInput: [{"container": "reports", "blob": "b.json"}],
    bc.WriteBatchReportOutput: [{"container": "reports", "blob": "b.json", "bytes": 12}],
    bc.ReadBatchReportOutput: [{"document": {"batchId": "b"}}],
    bc.RequestPart: [{"offset": 0, "length": 10, "count": 1, "sha256": "ab"}],
    bc.StoredRequest: [{"container": "reports", "blob": "b/request-ab.jsonl", "count": 1, "bytes": 10,
                        "templates": [{"displayName": "Custom"}],
                        "parts": [{"offset": 0, "length": 10, "count": 1, "sha256": "ab"}]}],
    bc.ReadRequestPartInput: [{"container": "reports", "blob": "b/request-ab.jsonl",
                               "part": {"offset": 10, "length": 20, "count": 2, "sha256": "cd"}}],
    bc.ReadRequestPartOutput: [{"instances": [{"key": "k", "displayName": "d"}]}],
})


def _contracts() -> set[type]:
    return {v for module in (c, fc, pc, rc, bc) for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, c.Contract) and v not in (c.Contract, c.Input)}


def test_every_contract_has_samples():
    assert _contracts() == set(SAMPLES)
    assert set(c.ACTIVITY_CONTRACTS) == set(names.ACTIVITIES)


@pytest.mark.parametrize("cls", sorted(SAMPLES, key=lambda t: t.__name__), ids=lambda t: t.__name__)
def test_round_trip_keeps_the_json_exactly(cls):
    for sample in SAMPLES[cls]:
        parsed = cls.from_dict(sample)
        assert parsed.to_dict() == sample
        assert json.dumps(parsed.to_dict(), sort_keys=True) == json.dumps(sample, sort_keys=True)
        assert cls.from_dict(parsed.to_dict()) == parsed
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(parsed, "any_field", "changed")


def test_inputs_name_every_bad_field():
    with pytest.raises(InvalidRequest) as caught:
        c.GetProvisioningErrorsInput.from_dict({"servicePrincipalId": "", "jobId": 3, "top": 0})
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("servicePrincipalId", "is required"), ("jobId", "must be a string"), ("since", "is required"),
        ("top", "must be a positive integer")]
    with pytest.raises(InvalidRequest) as caught:
        c.SaveSecretsInput.from_dict({"servicePrincipalId": "s", "credentials": {"SecretToken": "x"},
                                      "recordedVersions": {"a": 1}, "syncAll": "yes"})
    paths = [p.path for p in caught.value.problems]
    assert "syncAll" in paths and "recordedVersions" in paths and any(p.startswith("credentials") for p in paths)
    with pytest.raises(InvalidRequest) as caught:
        c.ResolveTemplateInput.from_dict({"applicationTemplate": {"id": "x", "displayName": "y"}})
    assert caught.value.problems[0].path == "applicationTemplate"
    with pytest.raises(InvalidRequest) as caught:
        c.AssignPrincipalsInput.from_dict({"servicePrincipalId": "s", "users": "u", "groups": [1]})
    assert [p.path for p in caught.value.problems] == ["users", "groups[0]"]
    with pytest.raises(InvalidRequest) as caught:
        c.StartJobInput.from_dict(["not", "an", "object"])
    assert caught.value.problems[0].path == "$"


def test_inputs_read_absent_and_empty_optionals_as_the_old_adapters_did():
    parsed = c.WaitUntilVisibleInput.from_dict({"servicePrincipalId": "s", "notificationEmail": "", "syncAll": None})
    assert parsed.notification_email is None and parsed.sync_all is False and parsed.credentials is None
    assert parsed.credential_refs() == {}
    assert c.GetProvisioningErrorsInput.from_dict({"servicePrincipalId": "s", "jobId": "j", "since": "x"}).top == 20
    refs = c.ValidateCredentialsInput.from_dict({"servicePrincipalId": "s", "jobId": "j",
                                                 "credentials": REF}).credential_refs()
    assert refs["SecretToken"].key_vault_secret == "kv-token"
    assert c.ResolveTemplateInput.from_dict({"applicationTemplate": {"displayName": "AWS"}}).template_ref.display_name


def test_outputs_are_lenient():
    assert c.EnsureJobOutput.from_dict({"jobId": "j", "extra": 1}).job_id == "j"
    assert c.StartJobOutput.from_dict(None) == c.StartJobOutput()
    assert c.AssignPrincipalsOutput.from_dict({}).roles_imported is c.UNSET
    assert not c.UNSET and repr(c.UNSET) == "UNSET"
    assert c.StepError.from_dict({"kind": "throttled"}).throttled
    assert c.StepError(code="X").reason() == "setup: X" and c.StepError(step="s", message="m").reason() == "s: m"


def test_failure_and_decode_json():
    assert c.failure("s", "C", "x" * 400) == {"ok": False, "error": {"kind": "permanent", "code": "C",
                                                                     "message": "x" * 300, "step": "s"}}
    assert c.decode_json(json.dumps(json.dumps({"a": 1}))) == {"a": 1}
    assert c.decode_json('{"a": 1}') == {"a": 1} and c.decode_json({"a": 1}) == {"a": 1}
    assert c.decode_json("not json") is None


@pytest.mark.parametrize("module", ["core.contracts", "core.fleet_contracts", "core.profile_contracts",
                                    "core.rotation_contracts", "core.batch_contracts"])
def test_registry_names_every_activity_whichever_module_is_imported_first(module):
    """A fresh interpreter importing one family's module first still gets every activity's contracts
    (no circular-import failure, no family missing from ACTIVITY_CONTRACTS)."""
    import pathlib
    import subprocess
    import sys
    code = (f"import {module}\nfrom core import contracts, names\n"
            "print(sorted(set(names.ACTIVITIES) ^ set(contracts.ACTIVITY_CONTRACTS)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=pathlib.Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_summarize_cycle_needs_one_to_ten_windows_with_a_since():
    for bad in ([], [{"until": "x"}], [{"since": 1}], [{"since": "x"}] * 11, "x"):
        with pytest.raises(InvalidRequest) as caught:
            pc.SummarizeCycleInput.from_dict({"servicePrincipalId": "s", "jobId": "j", "windows": bad})
        assert {p.path for p in caught.value.problems} == {"windows"}
