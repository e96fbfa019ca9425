"""Steady state is not success by itself: a small job whose target fails 40 % of its users reaches
steady state on Graph (escrow quarantine is only evaluated from 5,000 failures, Entra's quarantine
article), and the report must say so - outcome ``steadyState``, ``failedObjects`` and the errors,
counted apart as ``steadyWithFailures``. Under a low evaluation threshold the same target quarantines.

The emulator gets its own targets file: the escrowFailures scenario with failureRate 0.4.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest
from support import Stack

from emulator.provisioning.scenarios import TARGETS_PATH

pytestmark = pytest.mark.timeout(240)

ADDRESS = "https://scim.wingtip.test/scim/v2"  # escrowFailures in targets.json; its token is seeded in Key Vault


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("workflow-steady-failures")
    targets = json.loads(TARGETS_PATH.read_text())
    targets["scenarios"]["escrowFailures"]["failureRate"] = 0.4
    path = root / "targets.json"
    path.write_text(json.dumps(targets))
    running = Stack(root, time_scale=30.0, provisioning_settings={"targetsPath": str(path)})
    yield running
    running.stop()


def users(stack, count: int) -> list[str]:
    enabled = [u for u in stack.emulator.state.directory.users.values() if u.get("accountEnabled", True)]
    return sorted(u["userPrincipalName"] for u in enabled)[:count]


def batch(request_id: str, name: str, assigned: list[str]) -> dict:
    return {"requestId": request_id, "instances": [{
        "applicationTemplate": {"displayName": "Custom"}, "displayName": name,
        "credentials": {"BaseAddress": ADDRESS, "SecretToken": {"keyVaultSecret": "scim-wingtip-token"}},
        "assignments": {"users": assigned}}]}


def test_a_40_percent_failing_small_job_is_steady_with_failures(stack):
    assert stack.emulator.admin.provisioning_settings()["escrowQuarantineMinFailures"] == 5000  # the documented default
    assigned = users(stack, 5)
    batch_id = stack.submit(batch("steady-failures-001", "Forty Percent Failing", assigned))
    status = stack.wait(batch_id, timeout=150)
    assert status["runtimeStatus"] == "Completed"
    report = status["output"]
    (inst,) = report["instances"]
    assert inst["outcome"] == "steadyState", inst
    assert inst["failedObjects"] == 2  # ceil(0.4 x 5) users, each counted once
    assert inst["status"]["lastExecution"]["state"] == "EntryLevelErrors"
    assert inst["topErrorCodes"][0] == {"code": "SystemForCrossDomainIdentityManagementServiceError", "count": 2,
                                        "reason": inst["topErrorCodes"][0]["reason"]}
    assert "HTTP 500" in inst["topErrorCodes"][0]["reason"]
    errors = inst["provisioningErrors"]
    assert len(errors) == 2 and all(e["status"] == "failure" and e["errorCode"] for e in errors)
    assert len({e["source"]["id"] for e in errors}) == 2
    assert inst["errorsRead"]["complete"] is True
    assert "steady state with 2 failed objects" in inst["reason"]
    assert report["counts"] == {"total": 1, "steadyState": 0, "steadyWithFailures": 1, "quarantined": 0,
                                "failed": 0, "timedOut": 0}
    assert report["succeeded"] is False
    assert report["topErrors"][0]["code"] == "SystemForCrossDomainIdentityManagementServiceError"
    # the log read was filtered by Graph: the job, the cycle's window and the status
    reads = [unquote(r["query"]) for r in stack.graph_requests(kind="graph", pathContains="/auditLogs/provisioning")]
    assert reads and all(f"jobId eq '{inst['ids']['jobId']}'" in q and "activityDateTime gt " in q
                         and "provisioningStatusInfo/status eq 'failure'" in q for q in reads)

    summary = stack.summary("steady-failures-001")
    assert summary["counts"]["steadyWithFailures"] == 1 and summary["counts"]["steadyState"] == 0
    (view,) = summary["instances"]
    assert view["outcome"] == "steadyState" and view["withFailures"] is True and view["failedObjects"] == 2
    assert view["topErrorCodes"] == inst["topErrorCodes"]


def test_a_clean_steady_state_reads_no_logs_and_counts_as_steady(stack):
    stack.emulator.admin.clear_requests()
    body = batch("steady-clean-001", "Clean Steady", users(stack, 2))
    body["instances"][0]["credentials"] = {"BaseAddress": "https://scim.contoso.test/scim/v2",
                                           "SecretToken": {"keyVaultSecret": "scim-contoso-token"}}
    status = stack.wait(stack.submit(body), timeout=150)
    (inst,) = status["output"]["instances"]
    assert inst["outcome"] == "steadyState" and not inst.get("failedObjects") and inst["provisioningErrors"] == []
    assert status["output"]["counts"]["steadyState"] == 1 and status["output"]["succeeded"] is True
    assert stack.graph_requests(kind="graph", pathContains="/auditLogs/provisioning") == []


def test_under_a_low_evaluation_threshold_the_same_target_quarantines(stack):
    stack.emulator.admin.provisioning_settings(escrowQuarantineMinFailures=1)
    try:
        # 4 users: ceil(0.4 x 4) = 2 failures = 50 % of the exports, over the 40 % proportion
        status = stack.wait(stack.submit(batch("steady-failures-002", "Low Threshold", users(stack, 4))), timeout=150)
    finally:
        stack.emulator.admin.provisioning_settings(escrowQuarantineMinFailures=5000)
    report = status["output"]
    (inst,) = report["instances"]
    assert inst["outcome"] == "quarantined" and inst["reason"].startswith("EncounteredEscrowProportionThreshold")
    assert inst["failedObjects"] == 2 and inst["provisioningErrors"]
    assert report["counts"]["quarantined"] == 1 and report["counts"]["steadyWithFailures"] == 0
