"""The demo batch end to end, both triggers' answers to bad input, idempotency, the health sweep and
a scan for secrets - all on one emulator + devhost stack (tests run in file order and build on it).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support import Stack, load_example, make_batch, secret_names, secret_values, wait_until

from core import names
from examples.demo import matches

pytestmark = pytest.mark.timeout(240)

MAX_BODY = 65536
EXPIRED_TOKEN = "an-expired-zoom-token"  # a Key Vault secret value too: must never show up anywhere


#: 10 kB of nested brackets: under the size limits, but past json.loads' recursion limit
DEEP = ("[" * 5_000 + "]" * 5_000).encode()
#: valid JSON whose displayName holds a lone surrogate escape (not Unicode text)
SURROGATE = (b'{"requestId": "surrogate-001", "instances": [{"applicationTemplate": {"displayName": "Custom"},'
             b' "displayName": "App \\ud800", "credentials": {"BaseAddress": "https://scim.contoso.test/scim/v2",'
             b' "SecretToken": {"keyVaultSecret": "scim-contoso-token"}}}]}')

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("workflow-batch"), time_scale=30.0,
                    env={"REQUEST_MAX_BODY_BYTES": str(MAX_BODY),
                         # off by default; the restart test needs the activity to allow it
                         "HEALTH_SWEEP_RESTART_CREDENTIAL_QUARANTINE": "true"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def demo(stack):
    """Submit the demo batch once and wait for its report."""
    batch_id = stack.submit(load_example("demo-batch.json"))
    status = stack.wait(batch_id, timeout=150)
    return batch_id, status


def test_demo_batch_ends_as_the_emulator_scenarios_say(demo):
    batch_id, status = demo
    assert batch_id == "batch-demo-batch-001"
    assert status["runtimeStatus"] == "Completed"
    report = status["output"]
    expected = load_example("demo-expected.json")["instances"]
    by_name = {inst["displayName"]: inst for inst in report["instances"]}
    assert set(by_name) == set(expected)
    wrong = {name: (inst["outcome"], inst["reason"]) for name, inst in by_name.items()
             if not matches(inst, expected[name])}
    assert not wrong, wrong
    assert report["counts"] == {"total": 22, "steadyState": 20, "steadyWithFailures": 1, "quarantined": 0,
                                "failed": 1, "timedOut": 0}
    steady = by_name["AWS Contoso Account 01"]
    assert set(steady["ids"]) == {"applicationId", "appId", "servicePrincipalId", "jobId"}
    assert all(steady["ids"].values())
    assert steady["timings"]["totalSeconds"] >= steady["timings"]["setupSeconds"] > 0
    # 60 % of its exports fail, far below the 5,000 failures from which Graph evaluates an escrow quarantine
    with_failures = by_name["Wingtip SCIM Escrow"]
    assert with_failures["outcome"] == "steadyState" and with_failures["failedObjects"] >= 1
    assert with_failures["provisioningErrors"], "a steady instance whose cycle failed objects reports the errors"
    assert with_failures["topErrorCodes"][0]["code"] == "SystemForCrossDomainIdentityManagementServiceError"
    assert report["topErrors"] and report["topErrors"][0]["count"] >= with_failures["failedObjects"]
    failed = by_name["AWS Contoso Wrong Token"]
    assert failed["error"]["step"] == names.VALIDATE_CREDENTIALS and failed["error"]["kind"] == "permanent"


def test_summary_endpoint_is_readable_and_has_no_keys(stack, demo):
    batch_id, _ = demo
    by_request = stack.summary("demo-batch-001")
    by_batch = stack.summary(batch_id)
    assert by_request == by_batch
    assert by_request["runtimeStatus"] == "Completed" and by_request["counts"]["steadyState"] == 20
    assert by_request["counts"]["steadyWithFailures"] == 1
    wingtip = next(i for i in by_request["instances"] if i["displayName"] == "Wingtip SCIM Escrow")
    assert wingtip["withFailures"] is True and wingtip["failedObjects"] >= 1
    assert len(by_request["instances"]) == 22
    text = json.dumps(by_request)
    assert "code=" not in text and "statusQueryGetUri" not in text and "keyVaultSecret" not in text
    missing = stack.request("GET", "/api/provisioning-requests/no-such-request")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"


def test_resubmitting_the_same_request_starts_nothing_new(stack, demo):
    batch_id, first = demo
    before = stack.applications_by_name()
    response = stack.request("POST", "/api/provisioning-requests", json=load_example("demo-batch.json"))
    assert response.status_code == 202
    assert response.json()["id"] == batch_id
    assert response.headers["X-Provisioning-Duplicate"] == "true"
    again = stack.host.get_status(batch_id)
    assert again["runtimeStatus"] == "Completed" and again["createdTime"] == first["createdTime"]
    assert stack.applications_by_name() == before
    names_in_batch = [i["displayName"] for i in load_example("demo-batch.json")["instances"]]
    assert all(before[name] == 1 for name in names_in_batch), before
    instantiations = stack.graph_requests(method="POST", pathContains="/instantiate")
    assert len(instantiations) == len(names_in_batch)


def test_concurrent_submissions_of_one_request_start_one_batch(stack):
    body = make_batch("race-001", 2, prefix="Race")
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: stack.request("POST", "/api/provisioning-requests", json=body), range(6)))
    assert {r.status_code for r in responses} == {202}
    assert {r.json()["id"] for r in responses} == {"batch-race-001"}
    assert [r.headers["X-Provisioning-Duplicate"] for r in responses].count("false") == 1
    status = stack.wait("batch-race-001", timeout=120)
    assert status["output"]["counts"]["steadyState"] == 2
    apps = stack.applications_by_name()
    assert apps["Race 001"] == 1 and apps["Race 002"] == 1


def test_same_request_id_with_another_body_is_a_conflict(stack, demo):
    body = load_example("demo-batch.json")
    body["instances"] = body["instances"][:1]
    response = stack.request("POST", "/api/provisioning-requests", json=body)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "RequestIdConflict"


def test_http_rejects_bad_requests_with_every_field_error(stack):
    bad = {"requestId": "bad request id!", "instances": [
        {"displayName": "", "applicationTemplate": {"displayName": "Custom"},
         "credentials": {"BaseAddress": "https://x.test", "SecretToken": "a-pasted-token"}},
        {"applicationTemplate": {}, "displayName": "ok name", "credentials": {}, "colour": "blue"},
    ]}
    response = stack.request("POST", "/api/provisioning-requests", json=bad)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "InvalidRequest"
    paths = {d["path"] for d in error["details"]}
    assert {"requestId", "instances[0].displayName", "instances[0].credentials.SecretToken"} <= paths
    assert any(p.startswith("instances[1]") for p in paths) and len(paths) >= 5
    assert "a-pasted-token" not in response.text

    not_json = stack.request("POST", "/api/provisioning-requests", data=b"{not json",
                             headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "InvalidJson"
    text = stack.request("POST", "/api/provisioning-requests", data=b"requestId=x",
                         headers={"Content-Type": "text/plain"})
    assert text.status_code == 415 and text.json()["error"]["code"] == "UnsupportedMediaType"
    huge = make_batch("too-big", 1, prefix="Huge")
    huge["instances"][0]["labels"] = {"padding": "x" * 64}
    huge["padding"] = "x" * (MAX_BODY + 1)
    too_large = stack.request("POST", "/api/provisioning-requests", json=huge)
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "RequestTooLarge"
    # bodies that break the parser or the validation itself are still 400s with a reason
    deep = stack.request("POST", "/api/provisioning-requests", data=DEEP, headers={"Content-Type": "application/json"})
    assert deep.status_code == 400 and deep.json()["error"]["details"] == [{"path": "$", "message": "nested too deeply"}]
    surrogate = stack.request("POST", "/api/provisioning-requests", data=SURROGATE,
                              headers={"Content-Type": "application/json"})
    assert surrogate.status_code == 400 and surrogate.json()["error"]["code"] == "InvalidRequest"
    assert [d["path"] for d in surrogate.json()["error"]["details"]] == ["instances[0].displayName"]
    anonymous = stack.request("POST", "/api/provisioning-requests", json=make_batch("anon", 1, prefix="Anon"),
                              key=False)
    assert anonymous.status_code == 401
    for request_id in ("bad request id!", "too-big", "anon"):
        assert stack.host.get_status(f"batch-{request_id}") is None


def test_invalid_queue_message_goes_to_the_rejected_queue(stack):
    incoming = stack.queue(names.QUEUE_PROVISIONING_REQUESTS)
    rejected = stack.queue(names.QUEUE_PROVISIONING_REQUESTS_REJECTED)
    bad = {"requestId": "queue-bad-001", "instances": [{"displayName": "Queue Bad",
                                                         "applicationTemplate": {"displayName": "Custom"},
                                                         "credentials": {"SecretToken": "pasted-secret-value"}}]}
    sent = incoming.send_message(json.dumps(bad))
    incoming.send_message("this is not json")

    def two_rejections():
        found = [json.loads(m.content) for m in rejected.peek_messages(max_messages=32)]
        return found if len(found) >= 2 else None

    records = wait_until(two_rejections, timeout=60, what="two rejected messages")
    by_code = {r["error"]["code"]: r for r in records}
    invalid = by_code["InvalidRequest"]
    assert invalid["messageId"] == sent.id and invalid["requestId"] == "queue-bad-001"
    assert any(d["path"] == "instances[0].credentials.SecretToken" for d in invalid["error"]["details"])
    assert "pasted-secret-value" not in json.dumps(records)
    assert by_code["InvalidJson"]["error"]["details"][0]["path"] == "$"
    poison = stack.queue(names.QUEUE_PROVISIONING_REQUESTS + "-poison")
    assert poison.peek_messages(max_messages=32) == []
    assert stack.host.get_status("batch-queue-bad-001") is None


def test_queue_messages_that_break_the_parser_are_rejected_with_a_reason(stack):
    incoming = stack.queue(names.QUEUE_PROVISIONING_REQUESTS)
    rejected = stack.queue(names.QUEUE_PROVISIONING_REQUESTS_REJECTED)
    sent = {incoming.send_message(DEEP.decode()).id: "InvalidJson",
            incoming.send_message(SURROGATE.decode()).id: "InvalidRequest"}

    def both():
        found = {r["messageId"]: r for r in (json.loads(m.content) for m in rejected.peek_messages(max_messages=32))
                 if r["messageId"] in sent}
        return found if len(found) == 2 else None

    records = wait_until(both, timeout=60, what="both messages rejected")
    assert {mid: r["error"]["code"] for mid, r in records.items()} == sent
    assert stack.queue(names.QUEUE_PROVISIONING_REQUESTS + "-poison").peek_messages(max_messages=32) == []


def test_the_same_queue_message_three_times_starts_one_batch(stack):
    incoming = stack.queue(names.QUEUE_PROVISIONING_REQUESTS)
    body = json.dumps(make_batch("queue-dup-001", 3, prefix="Queue Dup"))
    for _ in range(3):
        incoming.send_message(body)
    wait_until(lambda: stack.host.get_status("batch-queue-dup-001"), timeout=60, what="the queued batch")
    status = stack.wait("batch-queue-dup-001", timeout=120)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"]["counts"]["steadyState"] == 3
    wait_until(lambda: not incoming.peek_messages(max_messages=32), timeout=30, what="the queue to drain")
    apps = stack.applications_by_name()
    assert [apps[f"Queue Dup {i:03d}"] for i in (1, 2, 3)] == [1, 1, 1]
    instantiations = [r for r in stack.graph_requests(method="POST", pathContains="/instantiate")]
    assert len(instantiations) == 22 + 2 + 3  # the demo batch, the race batch and this one, once each


def test_health_sweep_reports_the_quarantined_job(stack, demo):
    started = stack.host.durable_request("POST", f"orchestrators/{names.HEALTH_SWEEP}/health-sweep-test",
                                         json={"options": {"sweepMaxInFlight": 5, "sweepPageSize": 10}})  # with the system key
    assert started.status_code == 202, started.text
    sweep_id = started.json()["id"]
    status = stack.wait(sweep_id, timeout=120)
    assert status["runtimeStatus"] == "Completed", status
    report = status["output"]
    assert report["total"] == 22 + 2 + 3  # every app this workflow created (found by correlation tag)
    # the Wingtip job is steady (with failed objects, below Graph's escrow-quarantine evaluation threshold)
    assert report["counts"]["quarantined"] == 0
    assert report["counts"]["healthy"] == 21 + 2 + 3
    assert report["quarantinedByReason"] == {}
    unhealthy = {u["displayName"]: u for u in report["unhealthy"]}
    assert "Wingtip SCIM Escrow" not in unhealthy
    # its credentials were refused, so its job was never started
    assert unhealthy["AWS Contoso Wrong Token"]["category"] == "notStarted"
    assert report["restarted"] == []
    lines = [line for line in stack.host.log_text().splitlines()
             if "unhealthyProvisioningInstance" in line and sweep_id in line and "AWS Contoso Wrong Token" in line]
    assert len(lines) == 1, "one structured line per unhealthy instance, not repeated on replay"


def _put_target_token(stack, sp_id: str, address: str, token: str) -> None:
    """Change the credentials saved on a job behind the workflow's back (as an expired token would)."""
    bearer = stack.emulator.admin.token(client="workflow")
    response = requests.put(f"{stack.emulator.url}/v1.0/servicePrincipals/{sp_id}/synchronization/secrets",
                            json={"value": [{"key": "BaseAddress", "value": address},
                                            {"key": "SecretToken", "value": token}]},
                            headers={"Authorization": f"Bearer {bearer}"}, verify=stack.emulator.ca_bundle, timeout=30)
    assert response.status_code == 204, response.text


def _sweep(stack, sweep_id: str, options: dict) -> dict:
    started = stack.host.durable_request("POST", f"orchestrators/{names.HEALTH_SWEEP}/{sweep_id}",
                                         json={"options": options})
    assert started.status_code == 202, started.text
    return stack.wait(sweep_id, timeout=120)["output"]


def test_sweep_restarts_a_credential_quarantine_once_its_key_vault_secret_validates(stack, demo):
    """The operator's story: the token expired, the job quarantined, they put a new version into Key Vault."""
    _, status = demo
    target = next(i for i in status["output"]["instances"] if i["displayName"] == "Zoom Contoso 01")
    sp_id, address = target["ids"]["servicePrincipalId"], "https://api.zoom.us/scim"
    # The emulator's target only ever accepts one token, so an expiry is played by another value: the
    # one saved on the job, and still the current version in Key Vault.
    stack.emulator.admin.seed(secrets={"zoom-scim-token": EXPIRED_TOKEN})
    _put_target_token(stack, sp_id, address, EXPIRED_TOKEN)
    stack.emulator.admin.advance(3 * 3600)  # past the next incremental cycle, which fails: quarantine

    report = _sweep(stack, "sweep-restart-off", {"restartCredentialQuarantine": False})
    entry = next(u for u in report["unhealthy"] if u["servicePrincipalId"] == sp_id)
    assert entry["category"] == "quarantined" and entry["reason"] == "EncounteredQuarantineException"
    assert report["restarted"] == []  # off: only reported

    report = _sweep(stack, "sweep-restart-1", {"restartCredentialQuarantine": True})
    attempt = next(r for r in report["restarted"] if r["servicePrincipalId"] == sp_id)
    assert attempt["restarted"] is False and "still invalid" in attempt["reason"]

    # The sweep validates Key Vault's secret, not the one saved in Graph: fixing only the latter is not enough.
    _put_target_token(stack, sp_id, address, "zoom-demo-jwt")
    report = _sweep(stack, "sweep-restart-2", {"restartCredentialQuarantine": True})
    assert next(r for r in report["restarted"] if r["servicePrincipalId"] == sp_id)["restarted"] is False
    _put_target_token(stack, sp_id, address, EXPIRED_TOKEN)

    stack.emulator.admin.seed(secrets={"zoom-scim-token": "zoom-demo-jwt"})  # the operator rotates the secret
    report = _sweep(stack, "sweep-restart-3", {"restartCredentialQuarantine": True})
    attempt = next(r for r in report["restarted"] if r["servicePrincipalId"] == sp_id)
    assert attempt["restarted"] is True, attempt

    stack.emulator.admin.advance(3 * 3600)
    report = _sweep(stack, "sweep-after-restart", {"restartCredentialQuarantine": True})
    assert not any(u["servicePrincipalId"] == sp_id for u in report["unhealthy"]), report["unhealthy"]
    (job,) = stack.jobs_of(sp_id)
    assert job["status"]["code"] == "Active" and job["status"]["quarantine"] is None
    assert _restart_calls(stack, sp_id) == 1

    # Quarantined again while Key Vault still holds the version it was restarted with: repeated sweeps
    # report it and never restart it a second time with that version (no loop).
    _put_target_token(stack, sp_id, address, EXPIRED_TOKEN)
    stack.emulator.admin.advance(3 * 3600)
    for n in range(3):
        report = _sweep(stack, f"sweep-same-version-{n}", {"restartCredentialQuarantine": True})
        attempt = next(r for r in report["restarted"] if r["servicePrincipalId"] == sp_id)
        assert attempt["restarted"] is False and "still holds the saved version" in attempt["reason"], attempt
    assert _restart_calls(stack, sp_id) == 1

    # The next new version that validates: exactly one more restart, then none again.
    stack.emulator.admin.seed(secrets={"zoom-scim-token": "zoom-demo-jwt"})
    report = _sweep(stack, "sweep-next-version", {"restartCredentialQuarantine": True})
    assert next(r for r in report["restarted"] if r["servicePrincipalId"] == sp_id)["restarted"] is True
    _put_target_token(stack, sp_id, address, EXPIRED_TOKEN)
    stack.emulator.admin.advance(3 * 3600)
    report = _sweep(stack, "sweep-next-version-again", {"restartCredentialQuarantine": True})
    assert next(r for r in report["restarted"] if r["servicePrincipalId"] == sp_id)["restarted"] is False
    assert _restart_calls(stack, sp_id) == 2
    # leave it healthy for the tests below
    stack.emulator.admin.seed(secrets={"zoom-scim-token": "zoom-demo-jwt"})
    assert _sweep(stack, "sweep-heal", {"restartCredentialQuarantine": True})["restarted"]
    stack.emulator.admin.advance(3 * 3600)


def _restart_calls(stack, sp_id: str) -> int:
    return sum(1 for r in stack.graph_requests(method="POST", pathContains=f"/servicePrincipals/{sp_id}/")
               if r["path"].endswith("/restart"))


def test_sweep_reports_a_scim_compliance_quarantine_and_never_restarts_it(stack, demo):
    """The target answers 404 where SCIM expects 200: new credentials cannot help, so no sweep acts on it."""
    batch_id = stack.submit({"requestId": "scim-compliance-001", "instances": [
        {"applicationTemplate": {"displayName": "Custom"}, "displayName": "Non-compliant SCIM",
         "credentials": {"BaseAddress": "https://scim-non-compliant.scim.test/scim/v2",
                         "SecretToken": {"keyVaultSecret": "scenario-target-token"}},
         "assignments": {"groups": ["SaaS Pilot"]}}]})
    (item,) = stack.wait(batch_id, timeout=150)["output"]["instances"]
    assert item["outcome"] == "quarantined", item
    sp_id = item["ids"]["servicePrincipalId"]
    since = len(stack.graph_requests())
    stack.emulator.admin.seed(secrets={"scenario-target-token": "a-rotated-scenario-token"})  # changes nothing
    for n in range(3):
        report = _sweep(stack, f"sweep-scim-{n}", {"restartCredentialQuarantine": True})
        entry = next(u for u in report["unhealthy"] if u["servicePrincipalId"] == sp_id)
        assert entry["category"] == "quarantined" and entry["cause"] == "scimCompliance", entry
        assert entry["reason"] == "EncounteredQuarantineException"
        assert not any(r["servicePrincipalId"] == sp_id for r in report["restarted"])  # not even attempted
        stack.emulator.admin.advance(3 * 3600)
    touched = [r for r in stack.graph_requests()[since:] if f"/servicePrincipals/{sp_id}/" in r["path"]]
    assert touched and all(r["method"] == "GET" for r in touched), touched  # status reads only
    (job,) = stack.jobs_of(sp_id)
    assert job["status"]["code"] == "Quarantine"
    lines = [line for line in stack.host.log_text().splitlines()
             if "unhealthyProvisioningInstance" in line and "sweep-scim-2" in line and "Non-compliant SCIM" in line]
    assert len(lines) == 1 and "scimCompliance" in lines[0]


def test_no_secret_value_in_task_hub_logs_or_responses(stack, demo):
    secrets = secret_values(stack) | {EXPIRED_TOKEN}
    assert "demo-scim-token" in secrets and len(secrets) >= 8
    haystacks = {
        "task hub": stack.task_hub_bytes().decode("utf-8", "replace"),
        "devhost log": stack.host.log_text(),
        "HTTP responses": "\n".join(stack.responses),
        "demo report": json.dumps(demo[1]),
    }
    assert len(haystacks["task hub"]) > 10_000 and "provision_batch" in haystacks["task hub"]
    # secret *names* (references such as "scim-wingtip-token") may appear and may contain a value
    # ("wingtip-token") as a substring: blank the names out before looking for the values
    names_re = re.compile("|".join(sorted(map(re.escape, secret_names()), key=len, reverse=True)))
    leaks = {(where, secret) for where, text in haystacks.items() for secret in secrets
             if secret in names_re.sub("<secret-name>", text)}
    assert not leaks, f"secret values found: {sorted(leaks)}"
    assert not re.search(r"Bearer\s+ey", haystacks["devhost log"])


def test_two_requests_naming_the_same_instances_at_once_make_one_app_each(stack):
    """Different requestIds, same five instances, submitted together: one application per name.

    Last in the module: it adds five apps the health-sweep tests above do not count."""
    first = stack.submit(make_batch("cross-a", 5, prefix="Shared"))
    second = stack.submit(make_batch("cross-b", 5, prefix="Shared"))
    reports = [stack.wait(batch, timeout=200)["output"] for batch in (first, second)]
    apps = stack.applications_by_name()
    assert {f"Shared {i:03d}": apps[f"Shared {i:03d}"] for i in range(1, 6)} == \
        {f"Shared {i:03d}": 1 for i in range(1, 6)}
    by_name: dict[str, list[dict]] = {}
    for report in reports:
        for item in report["instances"]:
            by_name.setdefault(item["displayName"], []).append(item)
    for name, items in by_name.items():
        # each instance is set up by one of the two; the other yielded (or found it already there)
        assert any(i["outcome"] == "steadyState" for i in items), (name, items)
        for item in items:
            assert item["outcome"] == "steadyState" or "ConcurrentRequest" in json.dumps(item), (name, item)
