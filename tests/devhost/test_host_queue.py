"""Queue triggers and queue output bindings against the Azurite that devhost starts itself.

host_basic's host.json: batchSize 4, maxPollingInterval 0.5 s, visibilityTimeout 0, maxDequeueCount 2,
messageEncoding base64 (the default)."""

from __future__ import annotations

import base64

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from host_support import read_records, wait_until

pytestmark = pytest.mark.timeout(120)


def _queue(host, name: str, *, base64_policy: bool = True) -> QueueClient:
    kwargs = {}
    if base64_policy:
        kwargs = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}
    q = QueueClient.from_connection_string(host.connection_string, name, **kwargs)
    try:
        q.create_queue()
    except Exception:
        pass
    return q


def _records_with(host, prefix: str) -> list[dict]:
    return [r for r in read_records(host.records, "queue") if r["body"].startswith(prefix)]


def _peek_all(q: QueueClient) -> list[str]:
    return [m.content for m in q.peek_messages(max_messages=32)]


def test_base64_message_triggers_function_with_metadata_and_output_binding(basic_host):
    jobs = _queue(basic_host, "host-jobs")
    jobs.send_message("alpha-1")
    rec = wait_until(lambda: _records_with(basic_host, "alpha-1"), what="queue trigger call")[0]
    assert rec["dequeue_count"] == 1
    assert rec["insertion_time"] is not None and rec["pop_receipt"] is True
    fwd = _queue(basic_host, "host-forwarded")
    # the output binding wrote base64 text, so a base64-decoding client reads the plain value
    assert wait_until(lambda: "fwd:alpha-1" in _peek_all(fwd), what="forwarded message")
    raw = _queue(basic_host, "host-forwarded", base64_policy=False)
    raw_texts = _peek_all(raw)
    assert base64.b64encode(b"fwd:alpha-1").decode() in raw_texts
    # processed message was deleted
    assert wait_until(lambda: not any(m.content == "alpha-1" for m in jobs.peek_messages(max_messages=32)),
                      what="message deletion")


def test_batch_of_messages_all_processed_once(basic_host):
    jobs = _queue(basic_host, "host-jobs")
    for i in range(12):
        jobs.send_message(f"batch-{i:02d}")
    recs = wait_until(lambda: (r := _records_with(basic_host, "batch-")) and len(r) >= 12 and r,
                      what="12 batch messages")
    assert sorted(r["body"] for r in recs) == [f"batch-{i:02d}" for i in range(12)]
    assert all(r["dequeue_count"] == 1 for r in recs)


def test_failing_message_goes_to_poison_after_max_dequeue_count(basic_host):
    jobs = _queue(basic_host, "host-jobs")
    poison = _queue(basic_host, "host-jobs-poison")
    jobs.send_message("fail-poison-1")
    assert wait_until(lambda: "fail-poison-1" in _peek_all(poison), what="poison message")
    calls = _records_with(basic_host, "fail-poison-1")
    assert [c["dequeue_count"] for c in calls] == [1, 2]  # maxDequeueCount = 2, then poisoned
    assert "Message has reached MaxDequeueCount of 2" in basic_host.log_text()


def test_message_that_is_not_base64_is_poisoned_without_a_call(basic_host):
    raw_jobs = _queue(basic_host, "host-jobs", base64_policy=False)
    raw_poison = _queue(basic_host, "host-jobs-poison", base64_policy=False)
    raw_jobs.send_message("not base64 at all!")
    assert wait_until(lambda: "not base64 at all!" in _peek_all(raw_poison), what="poisoned raw message")
    assert not [r for r in read_records(basic_host.records, "queue") if "not base64" in r["body"]]


def test_http_function_queue_output_feeds_the_queue_trigger(basic_host):
    r = basic_host.post("/api/enqueue", data=b"via-http-1")
    assert r.status_code == 202
    rec = wait_until(lambda: _records_with(basic_host, "via-http-1"), what="queue trigger from HTTP output")
    assert rec[0]["dequeue_count"] == 1


def test_admin_api_runs_queue_and_timer_functions_now(basic_host):
    r = basic_host.run_function("on_message", "admin-run-1")
    assert r.status_code == 202
    rec = wait_until(lambda: _records_with(basic_host, "admin-run-1"), what="admin-run queue function")
    assert rec[0]["dequeue_count"] == 1
    fwd = _queue(basic_host, "host-forwarded")
    assert wait_until(lambda: "fwd:admin-run-1" in _peek_all(fwd), what="output of the admin run")

    before = len(read_records(basic_host.records, "timer"))
    assert basic_host.run_function("tick").status_code == 202  # yearly schedule, run on demand
    ticks = wait_until(lambda: (r := read_records(basic_host.records, "timer")) and len(r) > before and r,
                       what="admin-run timer function")
    assert ticks[-1]["past_due"] is False

    assert basic_host.run_function("echo").status_code == 400  # HTTP functions are called over HTTP
    assert basic_host.run_function("nope").status_code == 404
    assert basic_host.session.post(basic_host.url("/admin/functions/tick"), json={},
                                   headers={"x-functions-key": basic_host.function_key}).status_code == 401
