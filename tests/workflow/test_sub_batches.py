"""A batch over sub-batches (orchestrators/batch_over_parts.py) through devhost: 7 instances in slices of 3, the request and
the report in blob storage (Azurite), re-submission, the request limits, and a crash in the middle of a sliced batch.

One stack for the module (tests run in file order): slices of 3, 4 instances in setup at once over 2
lanes (2 each), at most 5 instances listed in an output, at most 12 per request.
"""

from __future__ import annotations

import json
import os

import pytest
from azure.storage.blob import BlobServiceClient
from support import Stack, make_batch, wait_until

from core import model, names, report_store
from core.batch_contracts import StoredRequest, SubBatchInput, SubBatchSummary
from core.contracts import InstanceOutcome
from core.errors import InvalidRequest
from core.settings import Settings
from core.workflow_options import WorkflowOptions
from orchestrators.batch_over_parts import plan
from orchestrators.report import merge_top_errors, worst_first
from triggers.submission import prepare

pytestmark = pytest.mark.timeout(300)

SLICE = 3
MAX_INSTANCES = 12
MAX_BODY = 16_000
CONTAINER = "test-batch-reports"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("workflow-sub-batches"), time_scale=30.0,
                    env={"BATCH_SUB_BATCH_SIZE": str(SLICE), "BATCH_MAX_IN_FLIGHT": "4",
                         "BATCH_SUB_BATCHES_IN_FLIGHT": "2", "BATCH_REPORT_INLINE_MAX": "5",
                         "BATCH_REPORT_CONTAINER": CONTAINER, "REQUEST_MAX_INSTANCES": str(MAX_INSTANCES),
                         "REQUEST_MAX_BODY_BYTES": str(MAX_BODY)})
    yield running
    running.stop()


def _seven() -> dict:
    """6 healthy instances and 1 whose target rejects most user creates (steady with failures)."""
    body = make_batch("slices-007", 6, prefix="Sliced")
    body["instances"].insert(4, make_batch("x", 1, prefix="Sliced escrow", target="wingtip")["instances"][0])
    return body


@pytest.fixture(scope="module")
def seven(stack):
    body = _seven()
    batch_id = stack.submit(body)
    return body, batch_id, stack.wait(batch_id, timeout=200)


def _blob(stack: Stack, name: str) -> dict:
    service = BlobServiceClient.from_connection_string(stack.storage)
    return json.loads(service.get_blob_client(CONTAINER, name).download_blob().readall())


def test_every_instance_of_every_slice_reaches_its_outcome(stack, seven):
    body, batch_id, status = seven
    assert status["runtimeStatus"] == "Completed"
    report = status["output"]
    assert report["counts"] == {"total": 7, "steadyState": 6, "steadyWithFailures": 1, "quarantined": 0,
                                "failed": 0, "timedOut": 0}
    assert report["subBatches"] == {"count": 3, "size": SLICE, "inFlight": 2, "instancesInFlightEach": 2}
    # 7 > BATCH_REPORT_INLINE_MAX: the output lists the instance not in a clean steady state only
    assert report["instancesListed"] == "notSteady"
    assert [i["displayName"] for i in report["instances"]] == ["Sliced escrow 001"]
    assert report["instances"][0]["failedObjects"] > 0
    assert report["instancesOmitted"] == 0
    # each slice is one setup and one watch orchestration with a derived id; instances keep <batch>:<key>
    for index in range(3):
        for suffix in ("", ":watch"):
            sub = stack.host.get_status(f"{batch_id}:part-{index:05d}{suffix}")
            assert sub and sub["name"] == names.PROVISION_SUB_BATCH and sub["runtimeStatus"] == "Completed"
    for inst in body["instances"]:
        child = stack.host.get_status(f"{batch_id}:{model.instance_key(inst['displayName'])}")
        assert child and child["name"] == names.PROVISION_INSTANCE
    apps = stack.applications_by_name()
    assert all(apps[i["displayName"]] == 1 for i in body["instances"])


def test_the_full_report_is_in_blob_storage_and_linked(stack, seven):
    body, batch_id, status = seven
    link = status["output"]["report"]
    assert link["container"] == CONTAINER
    assert link["blob"] == f"{batch_id}/report.json"
    assert link["parts"] == [f"{batch_id}/part-{i:05d}.json" for i in range(3)]
    index = _blob(stack, link["blob"])
    assert index["counts"] == status["output"]["counts"]
    assert index["report"]["parts"] == link["parts"]
    outcomes = [o for part in link["parts"] for o in _blob(stack, part)["instances"]]
    assert [o["displayName"] for o in outcomes] == [i["displayName"] for i in body["instances"]]
    assert {o["displayName"]: o["outcome"] for o in outcomes} == {i["displayName"]: "steadyState"
                                                                   for i in body["instances"]}
    assert all(o["ids"]["jobId"] for o in outcomes)


def test_the_summary_reads_every_instance_from_the_report(stack, seven):
    body, batch_id, status = seven
    summary = stack.summary("slices-007")
    assert summary["runtimeStatus"] == "Completed"
    assert summary["report"]["blob"] == f"{batch_id}/report.json"
    views = {v["displayName"]: v for v in summary["instances"]}
    assert list(views) == [i["displayName"] for i in body["instances"]]
    assert views["Sliced escrow 001"]["withFailures"] is True
    assert sum(not v["withFailures"] for v in views.values()) == 6


def test_the_request_travels_as_a_blob_reference_and_each_slice_reads_its_own(stack, seven):
    body, batch_id, status = seven
    given = _input(status)
    request = given["request"]
    # 7 instances > one slice of 3: the batch's input names the blob, no instance is in it
    assert "instances" not in request
    assert "Sliced" not in json.dumps(given)
    stored = request["stored"]
    assert stored["container"] == CONTAINER and stored["count"] == 7
    assert stored["blob"] == f"{batch_id}/request-{given['requestHash'][:32]}.jsonl"
    assert [p["count"] for p in stored["parts"]] == [3, 3, 1]
    assert stored["templates"] == [{"displayName": "Custom"}]
    service = BlobServiceClient.from_connection_string(stack.storage)
    lines = service.get_blob_client(CONTAINER, stored["blob"]).download_blob().readall().decode().splitlines()
    kept = [json.loads(line) for line in lines]
    assert [i["displayName"] for i in kept] == [i["displayName"] for i in body["instances"]]
    # credentials stay Key Vault references in the stored request
    assert all(i["credentials"]["SecretToken"] == {"keyVaultSecret": "scim-contoso-token"} or
               i["credentials"]["SecretToken"] == {"keyVaultSecret": "scim-wingtip-token"} for i in kept)
    for index in range(3):
        for suffix in ("", ":watch"):
            sub = stack.host.get_status(f"{batch_id}:part-{index:05d}{suffix}")
            assert "Sliced" not in json.dumps(_input(sub)) and not _input(sub).get("instances")
        setup = _input(stack.host.get_status(f"{batch_id}:part-{index:05d}"))
        assert setup["requestPart"]["part"] == stored["parts"][index]


def _input(status: dict) -> dict:
    """An orchestration's input from its Durable status (the Python client sends it as a JSON string)."""
    given = status["input"]
    return json.loads(given) if isinstance(given, str) else given


def test_resubmission_starts_nothing_new(stack, seven):
    _, batch_id, _ = seven
    before = stack.durable_instances()
    writes = len([r for r in stack.graph_requests(kind="graph") if r["method"] != "GET"])
    again = stack.request("POST", "/api/provisioning-requests", json=_seven())
    assert again.status_code == 202 and again.headers["X-Provisioning-Duplicate"] == "true"
    assert again.json()["id"] == batch_id
    assert stack.durable_instances() == before
    assert len([r for r in stack.graph_requests(kind="graph") if r["method"] != "GET"]) == writes


def test_more_instances_than_the_limit_is_a_field_error(stack):
    response = stack.request("POST", "/api/provisioning-requests",
                             json=make_batch("too-many", MAX_INSTANCES + 1, prefix="Many"))
    assert response.status_code == 400, response.text
    problems = response.json()["error"]["details"]
    assert any(p["path"] == "instances" and f"at most {MAX_INSTANCES}" in p["message"] for p in problems), problems


def test_a_body_over_the_byte_limit_is_413(stack):
    big = json.dumps(make_batch("too-big", 80, prefix="Big")).encode()
    assert len(big) > MAX_BODY
    response = stack.request("POST", "/api/provisioning-requests", data=big,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "RequestTooLarge"
    # found in review: like every other refusal of the body, the 413 names where (the whole body) and why
    assert [d["path"] for d in response.json()["error"]["details"]] == ["$"]


def test_the_defaults_take_10000_instances_and_refuse_10001():
    settings = Settings.from_env({"KEY_VAULT_URL": "https://v.vault.azure.net/"})
    assert settings.request_max_instances == 10_000
    body = make_batch("ten-thousand", 10_000, prefix="Fleet")
    assert len(json.dumps(body).encode()) <= settings.request_max_body_bytes
    assert len(model.parse_request(body, settings.request_max_instances).instances) == 10_000
    body["instances"].append(make_batch("x", 1, prefix="Fleet extra")["instances"][0])
    with pytest.raises(InvalidRequest) as caught:
        model.parse_request(body, settings.request_max_instances)
    assert [p.path for p in caught.value.problems] == ["instances"]


def test_sigkill_mid_batch_resumes_every_slice_once(stack):
    # the module's devhost exits with SIGTERM first, so the coverage data of the tests before is saved;
    # only the process this test SIGKILLs loses its share (pyproject: coverage saved on SIGTERM)
    stack.host.restart()
    body = make_batch("slices-crash-012", MAX_INSTANCES, prefix="Crash slice")
    # Azure Storage keeps a write once it acknowledged it; Azurite saves its blob metadata every 5 s
    # (LokiJS autosave), so a blob written a moment before Azurite dies with its devhost can be gone
    # after the restart. The host crash simulated here must not also be a storage loss that Azure
    # never has: Graph answers slowly (the batch stays busy), and the kill waits until Azurite's saved
    # metadata holds the stored request.
    stack.emulator.admin.set_faults(replace=False, latency={"ms": 300, "jitterMs": 0})
    try:
        batch_id = stack.submit(body)
        saved = os.path.join(stack.host.state_dir, "azurite", "__azurite_db_blob__.json")

        def request_saved() -> bool:
            try:
                with open(saved, encoding="utf-8", errors="replace") as f:
                    return "batch-slices-crash-012/request-" in f.read()
            except OSError:
                return False

        wait_until(request_saved, timeout=30, interval=0.2, what="Azurite's saved metadata holding the stored request")

        def mid_batch():
            summary = stack.summary("slices-crash-012")
            progress = summary.get("progress") or {}
            busy = progress.get("queued", 0) > 0 and progress.get("configuring", 0) > 0
            return summary if busy else None

        live = wait_until(mid_batch, timeout=120, interval=0.05, what="a sliced batch with queued and configuring")
        stack.host.kill()
    finally:
        stack.emulator.admin.set_faults(replace=False, latency={"ms": 0, "jitterMs": 0})
    assert not stack.host.is_running()
    at_kill = live["progress"]
    # the request is in blob storage; a running batch's summary still lists every instance (read from it)
    assert [v["displayName"] for v in live["instances"]] == [i["displayName"] for i in body["instances"]]
    stack.host.start()

    status = stack.wait(batch_id, timeout=240)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"]["counts"]["steadyState"] == MAX_INSTANCES, json.dumps([at_kill, status["output"]])
    apps = stack.applications_by_name()
    sps = stack.service_principals_by_name()
    for instance in body["instances"]:
        name = instance["displayName"]
        assert apps[name] == 1, f"{name}: {apps[name]} applications"
        assert len(sps[name]) == 1, f"{name}: {len(sps[name])} service principals"
        assert len(stack.jobs_of(sps[name][0]["id"])) == 1, f"{name}: not exactly one job"
    summary = stack.summary("slices-crash-012")
    assert [i["outcome"] for i in summary["instances"]] == ["steadyState"] * MAX_INSTANCES


# ---------------------------------------------------------------- pure helpers (no stack)

@pytest.mark.parametrize("total, size, lanes, bound", [(7, 3, 2, 4), (10_000, 100, 4, 20), (50, 100, 4, 20),
                                                       (1_000, 100, 8, 3), (5, 1, 10, 20)])
def test_the_plan_holds_the_in_flight_bound_across_the_batch(total, size, lanes, bound):
    options = WorkflowOptions(sub_batch_size=size, sub_batches_in_flight=lanes, max_instances_in_flight=bound)
    got_size, got_lanes, share = plan(total, options)
    assert got_size == size
    assert 1 <= got_lanes <= min(lanes, -(-total // size))
    assert got_lanes * share <= bound
    assert share == bound // got_lanes  # no more of the bound left unused than the remainder


def test_worst_first_lists_the_not_clean_ones_by_severity_in_request_order():
    def outcome(key, kind, failed_objects=None):
        return InstanceOutcome(instance_key=key, outcome=kind, failed_objects=failed_objects)

    ordered = [outcome("a", "steadyState"), outcome("b", "quarantined"), outcome("c", "failed"),
               outcome("d", "steadyState", 3), outcome("e", "failed"), outcome("f", "timedOut")]
    assert [o.instance_key for o in worst_first(ordered)] == ["c", "e", "f", "b", "d"]


def test_top_errors_of_the_slices_add_up():
    merged = merge_top_errors([[{"code": "A", "count": 2, "message": "m"}, {"code": "B", "count": 1}],
                               [{"code": "B", "count": 5, "message": "later"}]])
    assert merged == [{"code": "B", "count": 6}, {"code": "A", "count": 2, "message": "m"}]


def test_a_request_of_one_slice_stays_inline_a_larger_one_is_stored_by_reference():
    settings = Settings.from_env({"KEY_VAULT_URL": "https://v.vault.azure.net/", "BATCH_SUB_BATCH_SIZE": "3"})
    inline = prepare(make_batch("three", 3, prefix="Few"), settings)
    assert inline.stored is None and len(inline.input["request"]["instances"]) == 3
    body = make_batch("four", 4, prefix="More")
    stored = prepare(body, settings)
    ref = StoredRequest.from_dict(stored.input["request"]["stored"])
    assert "More" not in json.dumps(stored.input) and ref.count == 4 and ref.bytes == len(stored.stored or b"")
    assert [p.count for p in ref.parts] == [3, 1]
    # every slice reads back as written; its bytes are checked against the recorded sha256 and count
    data = stored.stored or b""
    slices = [report_store.parse_lines(data[p.offset:p.offset + p.length], p.count, p.sha256) for p in ref.parts]
    assert [i["displayName"] for s in slices for i in s] == [i["displayName"] for i in body["instances"]]
    assert slices[1][0]["key"] == model.instance_key("More 004")
    with pytest.raises(report_store.DamagedPart):
        report_store.parse_lines(data[ref.parts[0].offset:ref.parts[0].offset + ref.parts[0].length - 1], 3,
                                 ref.parts[0].sha256)
    with pytest.raises(report_store.DamagedPart):
        report_store.parse_lines(data[:ref.parts[0].length], 2)
    # the same body is the same blob (a retry rewrites it); another body under the same requestId is another blob
    assert prepare(body, settings).input == stored.input
    other = make_batch("four", 4, prefix="Other")
    assert prepare(other, settings).input["request"]["stored"]["blob"] != ref.blob


def test_the_sub_batch_contracts_round_trip():
    sample = {"batchId": "b", "index": 2, "phase": "watch", "instances": [{"key": "k", "displayName": "d"}],
              "outcomes": [{"instanceKey": "k", "displayName": "d", "orchestrationId": "b:k", "outcome": "configured",
                            "reason": None, "ids": {}, "timings": {}, "provisioningErrors": []}],
              "setupBlob": "b/setup-00002.json", "templates": {}, "options": {"subBatchSize": 3}, "maxInFlight": 2,
              "keepAll": False, "keepMax": 5, "reportContainer": "c"}
    assert SubBatchInput.from_dict(sample).to_dict() == sample
    summary = {"index": 1, "total": 3, "counts": {"total": 3}, "topErrors": [], "instances": [],
               "reportBlob": "b/part-00001.json"}
    assert SubBatchSummary.from_dict(summary).to_dict() == summary


def test_a_slice_of_a_stored_request_that_cannot_be_read_is_reported_failed_and_counted(tmp_path):
    """Replayed by the real SDK with scripted activities (replay_support.py): slice 0 reads back, slice 1's
    bytes are gone (RequestNotFound). Slice 1's setup fails, the batch tries once more to name its
    instances, cannot, and counts them failed; slice 0 runs on (its template is unknown here, so its
    instances fail before starting, with their names). Nothing is lost from the counts; no input in the
    batch's history holds an instance."""
    from replay_support import calls, output, run, script

    from devhost.durable import history as h

    body = make_batch("stored-unreadable", 5, prefix="Unread")
    settings = Settings.from_env({"KEY_VAULT_URL": "https://v.vault.azure.net/", "BATCH_SUB_BATCH_SIZE": "3",
                                  "BATCH_REPORT_CONTAINER": "reports"})
    submission = prepare(body, settings)
    data = submission.stored or b""
    ref = StoredRequest.from_dict(submission.input["request"]["stored"])
    gone = {"ok": False, "error": {"kind": "permanent", "code": "RequestNotFound", "message": "no stored request",
                                   "step": "read_request_part"}}
    written: dict[str, dict] = {}

    def read_part(payload, n):
        part = payload["part"]
        if part["offset"] > 0:
            return gone
        return {"ok": True, "instances": report_store.parse_lines(data[part["offset"]:part["offset"] + part["length"]],
                                                                  part["count"], part["sha256"])}

    def write(payload, n):
        written[payload["blob"]] = payload["document"]
        return {"ok": True, "container": payload["container"], "blob": payload["blob"], "bytes": 1}

    script(resolve_application_template=[{"ok": False, "error": {"kind": "permanent", "code": "TemplateNotFound",
                                                                  "message": "no such template",
                                                                  "step": "resolve_application_template"}}],
           read_request_part=read_part, write_batch_report=write,
           read_batch_report=lambda payload, n: {"ok": True, "document": written[payload["blob"]]})

    async def scenario(engine):
        iid = await engine.start_orchestration("provision_batch", submission.input, instance_id=submission.instance_id)
        return await engine.wait_for_instance(iid, 60), engine.get_history(iid)

    row, history = run(tmp_path, scenario)
    assert row.status == "Completed"
    report = output(row)
    assert report["counts"]["total"] == 5 and report["counts"]["failed"] == 5, report["counts"]
    assert report["subBatches"]["count"] == 2
    reads = [p["part"]["offset"] for _, p in calls("read_request_part")]
    assert reads.count(0) == 1 and reads.count(ref.parts[1].offset) == 2  # slice 1: its setup, then the batch
    named = {i["displayName"] for i in report["instances"]}
    assert named == {"Unread 001", "Unread 002", "Unread 003"}  # slice 1's names could not be read
    assert report["report"]["missingParts"] == [1]
    # no instance travels in the batch's input or in its sub-batches' inputs
    inputs = [ev for ev in history if ev["EventType"] in (h.EXECUTION_STARTED, h.SUB_ORCHESTRATION_CREATED)]
    assert len(inputs) == 1 + 3 and "Unread" not in json.dumps(inputs)  # slice 0 setup + watch, slice 1 setup
