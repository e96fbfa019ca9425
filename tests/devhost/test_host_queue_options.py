"""Queue trigger options of host.json against the Azurite devhost starts: ``batchSize`` with
``newBatchThreshold`` bound the messages in flight, ``visibilityTimeout`` delays the retry of a failed
message, ``functionTimeout`` fails a slow call (which then goes to ``-poison`` after
``maxDequeueCount``), and a queue named ``*-poison`` has no poison queue: a failed message stays
invisible until its lease ends. See ``apps/host_queue_options``."""
from __future__ import annotations

import pytest
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devhost.testing import start_devhost
from devhost.triggers.queue import poison_queue_name
from host_support import APPS, azurite_connection_string, read_records, wait_until

pytestmark = pytest.mark.timeout(120)


def test_batch_size_visibility_timeout_and_function_timeout(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    conn = azurite_connection_string()
    host = start_devhost(APPS / "host_queue_options" / "function_app.py", tmp_path / "state",
                         env={"AzureWebJobsStorage": conn, "HOST_TEST_RECORD_DIR": str(records)})
    try:
        policies = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}
        jobs = QueueClient.from_connection_string(conn, "opts-jobs", **policies)
        poison = QueueClient.from_connection_string(conn, "opts-jobs-poison", **policies)
        dead = QueueClient.from_connection_string(conn, "opts-dead-poison", **policies)
        for q in (jobs, poison, dead):
            try:
                q.create_queue()
            except Exception:  # already created by the listener
                pass
        dead.send_message("dead-1")
        wait_until(lambda: read_records(records, "dead"), timeout=60, what="the call for dead-1")
        for i in range(6):
            jobs.send_message(f"batch-{i}")
        jobs.send_message("fail-1")
        jobs.send_message("slow-1")

        def poisoned():
            return {m.content for m in poison.peek_messages(max_messages=32)} >= {"fail-1", "slow-1"}

        wait_until(poisoned, timeout=60, what="fail-1 and slow-1 in opts-jobs-poison")
        calls = read_records(records, "calls")
        dead_calls = read_records(records, "dead")
        queues = [q.name for q in QueueServiceClient.from_connection_string(conn).list_queues()]
        dead_left = dead.get_queue_properties().approximate_message_count
        logs = host.log_text()
    finally:
        host.stop()
    # No '-poison-poison' queue: the failed message was neither released (visibilityTimeout 1 s would
    # have retried it by now, maxDequeueCount 2 then moved it) nor moved; it waits out its lease.
    assert [c["dequeue_count"] for c in dead_calls] == [1]
    assert "opts-dead-poison-poison" not in queues and dead_left == 1
    assert "Queue 'opts-dead-poison' has no poison queue, so message" in logs
    batch = [c for c in calls if c["body"].startswith("batch-")]
    assert sorted(c["body"] for c in batch) == [f"batch-{i}" for i in range(6)]
    # batchSize 2, newBatchThreshold 0: never more than two calls at once, and two did overlap
    assert max(c["in_flight"] for c in calls) == 2
    for body in ("fail-1", "slow-1"):
        tries = [c for c in calls if c["body"] == body]
        assert [c["dequeue_count"] for c in tries] == [1, 2]  # maxDequeueCount 2, then poison
        # visibilityTimeout 1 s: the retry cannot come earlier (a lower bound, not a speed check)
        assert tries[1]["at"] - tries[0]["at"] >= 1.0
    assert "Function 'Functions.on_job' timed out after 1.0s (functionTimeout)" in logs
    assert "Timeout value of 00:00:01 was exceeded by function: Functions.on_job" in logs
    assert "Message has reached MaxDequeueCount of 2" in logs


def test_poison_queue_names_follow_the_host():
    """QueueListenerFactory.CreatePoisonQueueReference: none for '*-poison' or when the name gets too long."""
    assert poison_queue_name("jobs") == "jobs-poison"
    assert poison_queue_name("jobs-poison") is None
    assert poison_queue_name("a" * 56) == "a" * 56 + "-poison"  # 63 characters: still valid
    assert poison_queue_name("a" * 57) is None
