"""Orchestration semantics of devhost's Durable engine, run through the real SDK replay engine.

Every test starts a DurableEngine (SQLite under tmp_path) on the test app
``tests/devhost/apps/durable_app`` and checks outputs *and* the history the extension would have
written (sequence numbers, retry timers, batching), since that history is what replay depends on.
"""
from __future__ import annotations

import json
import os

import pytest

from devhost.app_loader import LoadedApp
from devhost.durable import history as h
from devhost.config import timespan_text
from devhost.durable.errors import InstanceGone
from devhost.durable.errors import InstanceExistsError
from devhost.testing import run_engine

APP_PATH = os.path.join(os.path.dirname(__file__), "apps", "durable_app", "function_app.py")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def app() -> LoadedApp:
    return LoadedApp.load(APP_PATH)


async def finish(engine, instance_id, timeout=60):
    row = await engine.wait_for_instance(instance_id, timeout)
    return row, engine.get_history(instance_id)


def kinds(history):
    return [h.EVENT_TYPE_NAMES[ev["EventType"]] for ev in history]


def test_chain_completes_with_the_extension_history_shape(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_chain", {"a": "Tokyo", "b": "London"})
        return await finish(engine, iid)

    row, history = run_engine(app, tmp_path, scenario)
    assert row.status == "Completed"
    assert json.loads(row.output) == ["Hello Tokyo!", "Hello London!"]
    assert json.loads(json.loads(row.input)) == {"a": "Tokyo", "b": "London"}  # stored double-encoded (README note "Client binding and HTTP API")
    assert kinds(history) == [
        "OrchestratorStarted", "ExecutionStarted", "TaskScheduled", "OrchestratorCompleted",
        "OrchestratorStarted", "TaskCompleted", "TaskScheduled", "OrchestratorCompleted",
        "OrchestratorStarted", "TaskCompleted", "ExecutionCompleted", "OrchestratorCompleted"]
    assert [ev["EventId"] for ev in history if ev["EventType"] == h.TASK_SCHEDULED] == [0, 1]
    assert [ev["TaskScheduledId"] for ev in history if ev["EventType"] == h.TASK_COMPLETED] == [0, 1]
    assert history[10]["EventId"] == 2  # ExecutionCompleted takes the next sequence number


def test_fan_out_fan_in_of_500_activities(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_fanout", 500)
        return await finish(engine, iid)

    row, history = run_engine(app, tmp_path, scenario, host_config={"maxConcurrentActivityFunctions": 16})
    assert row.status == "Completed"
    assert json.loads(row.output) == sum(2 * i for i in range(500))
    completed = [ev["TaskScheduledId"] for ev in history if ev["EventType"] == h.TASK_COMPLETED]
    assert sorted(completed) == list(range(500))  # each result exactly once
    episodes = kinds(history).count("OrchestratorStarted")
    # a result that cannot unblock the shim's WhenAll waits for the others: schedule + fan-in
    assert episodes <= 3


def test_events_waiting_together_are_delivered_in_one_episode(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_approval", None, instance_id="batch-1")
        await engine.wait_idle(10)
        async with engine._lock(iid):  # hold the episode back while both events arrive
            await engine.raise_event(iid, "Approve", '"one"')
            await engine.raise_event(iid, "Approve", '"two"')
        return await finish(engine, iid)

    row, history = run_engine(app, tmp_path, scenario)
    assert row.status == "Completed"
    assert json.loads(row.output) == ["one", "two"]
    assert json.loads(row.custom_status) == "approved"
    assert kinds(history).count("OrchestratorStarted") == 2
    assert kinds(history)[3:7] == ["OrchestratorStarted", "EventRaised", "EventRaised", "ExecutionCompleted"]


def test_retry_that_succeeds_records_a_timer_after_each_failed_attempt(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_retry", {"key": f"ok-{tmp_path.name}", "fail_times": 2, "attempts": 3})
        return await finish(engine, iid)

    row, history = run_engine(app, tmp_path, scenario)
    assert json.loads(row.output) == {"ok": "ok after 3 calls"}
    significant = [(h.EVENT_TYPE_NAMES[ev["EventType"]], ev.get("EventId") if ev["EventType"] in (4, 10) else
                    ev.get("TaskScheduledId", ev.get("TimerId")))
                   for ev in history if ev["EventType"] in (4, 5, 6, 10, 11)]
    assert significant == [("TaskScheduled", 0), ("TaskFailed", 0), ("TimerCreated", 1), ("TimerFired", 1),
                           ("TaskScheduled", 2), ("TaskFailed", 2), ("TimerCreated", 3), ("TimerFired", 3),
                           ("TaskScheduled", 4), ("TaskCompleted", 4)]
    timer = next(ev for ev in history if ev["EventType"] == h.TIMER_CREATED)
    assert (h.parse_iso(timer["FireAt"]) - h.parse_iso(timer["Timestamp"])).total_seconds() == pytest.approx(1.0)


def test_retry_that_runs_out_fails_the_task_after_an_immediate_timer(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_retry", {"key": f"out-{tmp_path.name}", "fail_times": 9, "attempts": 3})
        return await finish(engine, iid)

    row, history = run_engine(app, tmp_path, scenario)
    output = json.loads(row.output)
    assert output["error"].startswith("Activity function 'durable_flaky' failed:  RuntimeError: flaky out-")
    assert output["after"] == "Hello after!"
    timers = [ev for ev in history if ev["EventType"] == h.TIMER_CREATED]
    assert [ev["EventId"] for ev in timers] == [1, 3, 5]
    assert timers[-1]["FireAt"] == timers[-1]["Timestamp"]  # the last timer fires immediately (README note "Retries")
    hello = [ev for ev in history if ev["EventType"] == h.TASK_SCHEDULED][-1]
    assert (hello["Name"], hello["EventId"]) == ("durable_hello", 6)


def test_sub_orchestration_fan_out_with_retry(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_parent", 4, instance_id="parent-1")
        row, history = await finish(engine, iid)
        children = {r.instance_id: r for r in engine.store.query() if r.parent_instance_id == iid}
        return row, history, children

    row, history, children = run_engine(app, tmp_path, scenario)
    assert row.status == "Completed"
    assert json.loads(row.output) == [{"child_of": "parent-1", "v": 2 * i} for i in range(4)]
    created = [ev for ev in history if ev["EventType"] == h.SUB_ORCHESTRATION_CREATED]
    execution = history[1]["OrchestrationInstance"]["ExecutionId"]
    assert len(created) == 8  # every child failed once: a new child (new id) per attempt
    assert all(ev["InstanceId"] == f"{execution}:{ev['EventId']}" for ev in created)
    statuses = sorted(r.status for r in children.values())
    assert statuses == ["Completed"] * 4 + ["Failed"] * 4
    failed = [ev for ev in history if ev["EventType"] == h.SUB_ORCHESTRATION_FAILED]
    assert failed[0]["Reason"].startswith("Orchestrator function 'durable_child' failed: Activity function 'durable_flaky'")


def test_timers_on_the_virtual_clock_including_a_long_timer(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_timer", 2)
        return await finish(engine, iid)

    row, history = run_engine(app, tmp_path, scenario)
    assert row.status == "Completed"
    assert json.loads(row.output) == pytest.approx(2 * 3600 + 10 * 86400, abs=1)
    timers = [ev for ev in history if ev["EventType"] == h.TIMER_CREATED]
    # 2 h, then the 10-day timer split by the SDK (V3) into +3 d, +6 d and the real fire time
    assert [ev["EventId"] for ev in timers] == [0, 1, 2, 3]
    gaps = [(h.parse_iso(b["FireAt"]) - h.parse_iso(a["FireAt"])).total_seconds() for a, b in zip(timers, timers[1:])]
    assert gaps[0] == pytest.approx(3 * 86400, abs=1)
    assert sum(gaps) == pytest.approx(10 * 86400, abs=1)


def test_continue_as_new_loop_keeps_history_bounded(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_counter", {"n": 0, "limit": 30}, instance_id="counter")
        row, history = await finish(engine, iid)
        return row, history

    row, history = run_engine(app, tmp_path, scenario)
    assert row.status == "Completed"
    assert json.loads(row.output) == "counted to 30"
    assert json.loads(json.loads(row.input)) == {"n": 30, "limit": 30}  # carried input, stored as a JSON string
    assert json.loads(row.custom_status) == {"n": 30}
    assert len(history) == 8  # only the last execution: OS ES TS OC, OS TC EC OC
    assert history[1]["OrchestrationInstance"]["InstanceId"] == "counter"


def test_continue_as_new_drops_received_but_unconsumed_events(app, tmp_path):
    """The extension's out-of-proc shim calls ContinueAsNew(input) (preserveUnprocessedEvents=false):
    events the old execution received but did not consume are gone; events still queued arrive."""
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_event_loop", {"seen": [], "want": 3}, instance_id="loop")
        async with engine._lock(iid):  # all three arrive with ExecutionStarted; only one is consumed
            for value in ("a", "b", "c"):
                await engine.raise_event(iid, "Add", json.dumps(value))
        await engine.wait_idle(10)
        waiting = engine.get_instance(iid)
        await engine.raise_event(iid, "Add", json.dumps("d"))  # queued: reaches the current execution
        await engine.wait_idle(10)
        await engine.raise_event(iid, "Add", json.dumps("e"))
        row, history = await finish(engine, iid, timeout=10)
        return waiting, row, history

    waiting, row, history = run_engine(app, tmp_path, scenario)
    assert waiting.status == "Running"
    assert json.loads(json.loads(waiting.input)) == {"seen": ["a"], "want": 3}
    assert row.status == "Completed"
    assert json.loads(row.output) == ["a", "d", "e"]  # "b" and "c" were dropped with the first execution
    assert kinds(history).count("EventRaised") == 1


def test_continue_as_new_carries_unconsumed_events_over_when_asked(app, tmp_path, monkeypatch):
    monkeypatch.setenv("DEVHOST_PRESERVE_UNPROCESSED_EVENTS", "true")

    async def scenario(engine):
        assert engine.settings.preserve_unprocessed_events
        iid = await engine.start_orchestration("durable_event_loop", {"seen": [], "want": 3}, instance_id="loop")
        async with engine._lock(iid):  # all three arrive with ExecutionStarted; only one is consumed per execution
            for value in ("a", "b", "c"):
                await engine.raise_event(iid, "Add", json.dumps(value))
        return await finish(engine, iid)

    row, history = run_engine(app, tmp_path, scenario)
    assert row.status == "Completed"
    assert json.loads(row.output) == ["a", "b", "c"]
    assert kinds(history).count("EventRaised") == 1  # the third execution got the last carried event


def test_virtual_clock_can_be_advanced_and_skips_timers_of_finished_executions(app, tmp_path):
    async def scenario(engine):
        early = await engine.start_orchestration("durable_approval_or_timeout", None, instance_id="adv")
        async with engine._lock(early):
            await engine.raise_event(early, "Approve", json.dumps("yes"))
        await engine.wait_for_instance(early, 10)
        before = engine.clock.now()
        await engine.wait_idle(10)
        idle_jump = engine.clock.now() - before  # the 1-hour timer died with the instance: no jump
        engine.advance_clock(7200)
        return idle_jump, engine.clock.now() - before

    idle_jump, advanced = run_engine(app, tmp_path, scenario)
    assert idle_jump < 60
    assert advanced >= 7200


def test_external_events_buffered_and_with_timeout(app, tmp_path):
    async def scenario(engine):
        early = await engine.start_orchestration("durable_approval_or_timeout", None, instance_id="early")
        async with engine._lock(early):  # the event is in the same batch as ExecutionStarted
            await engine.raise_event(early, "Approve", json.dumps(json.dumps({"by": "alice"})))
        early_row, _ = await finish(engine, early)
        late = await engine.start_orchestration("durable_approval_or_timeout", None, instance_id="late")
        late_row, late_history = await finish(engine, late)  # nothing raised: the virtual clock fires the timer
        return early_row, late_row, late_history

    early_row, late_row, late_history = run_engine(app, tmp_path, scenario)
    assert json.loads(early_row.output) == {"approved": '{"by": "alice"}'}  # a str, as the real client gives (README note "External events")
    assert json.loads(late_row.output) == {"approved": None}
    assert "TimerFired" in kinds(late_history)


def test_terminate_a_waiting_instance(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_wait_forever", None, instance_id="t-1")
        await engine.wait_idle(10)
        assert engine.get_instance(iid).status == "Running"
        await engine.terminate(iid, "bye now")
        row, history = await finish(engine, iid)
        with pytest.raises(InstanceGone):
            await engine.raise_event(iid, "Go", "1")
        return row, history

    row, history = run_engine(app, tmp_path, scenario)
    assert row.status == "Terminated"
    assert json.loads(row.output) == "bye now"
    assert kinds(history)[-3:] == ["ExecutionTerminated", "ExecutionCompleted", "OrchestratorCompleted"]
    assert history[-2]["OrchestrationStatus"] == h.STATUS_CODE["Terminated"]


def test_terminating_a_child_fails_the_parents_task(app, tmp_path):
    async def scenario(engine):
        parent = await engine.start_orchestration("durable_parent_of_waiter", "the-child", instance_id="the-parent")
        await engine.wait_idle(10)
        child = engine.get_instance("the-child")
        await engine.terminate("the-child", "enough")
        return child, await finish(engine, parent)

    child, (row, history) = run_engine(app, tmp_path, scenario)
    assert child.status == "Running" and child.parent_instance_id == "the-parent"
    assert json.loads(row.output) == {"child failed": "Orchestrator function 'durable_wait_forever' failed: enough"}
    assert "SubOrchestrationInstanceFailed" in kinds(history)


def test_suspend_holds_events_until_resume(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_wait_forever", None, instance_id="s-1")
        await engine.wait_idle(10)
        await engine.suspend(iid, "pause")
        await engine.wait_idle(10)
        await engine.raise_event(iid, "Go", json.dumps(json.dumps(7)))
        await engine.wait_idle(10)
        suspended = engine.get_instance(iid).status
        await engine.resume(iid, "go on")
        row, history = await finish(engine, iid)
        return suspended, row, history

    suspended, row, history = run_engine(app, tmp_path, scenario)
    assert suspended == "Suspended"
    assert row.status == "Completed"
    assert json.loads(row.output) == ["7", "Hello after!"]
    names = kinds(history)
    assert names.index("ExecutionSuspended") < names.index("ExecutionResumed") < names.index("EventRaised")


def test_suspend_before_the_first_episode_keeps_execution_started(app, tmp_path):
    """A Pending instance can be suspended (202); after the resume it must still start and run."""
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_chain", None, instance_id="s-pending")
        await engine.suspend(iid, "hold")  # queued behind ExecutionStarted, before any episode ran
        await engine.wait_idle(10)
        suspended = engine.get_instance(iid).status
        await engine.resume(iid, "go")
        row, history = await finish(engine, iid, timeout=20)
        return suspended, row, history

    suspended, row, history = run_engine(app, tmp_path, scenario)
    assert suspended == "Suspended"
    assert row.status == "Completed"
    assert json.loads(row.output) == ["Hello Tokyo!", "Hello London!"]
    names = kinds(history)
    assert names[:3] == ["OrchestratorStarted", "ExecutionStarted", "ExecutionSuspended"]
    assert names.count("ExecutionStarted") == 1
    assert names.index("ExecutionSuspended") < names.index("ExecutionResumed") < names.index("TaskScheduled")


def test_non_deterministic_orchestrator_is_failed_as_in_azure(app, tmp_path):
    module = app.module

    async def scenario(engine):
        module.NONDETERMINISTIC["variant"] = "a"
        iid = await engine.start_orchestration("durable_nondeterministic", None, instance_id="nd-1")
        await engine.wait_idle(10)
        module.NONDETERMINISTIC["variant"] = "b"  # the "code change" between episodes
        try:
            await engine.raise_event(iid, "Go", None)
            return await finish(engine, iid)
        finally:
            module.NONDETERMINISTIC["variant"] = "a"

    row, history = run_engine(app, tmp_path, scenario)
    assert row.status == "Failed"
    message = json.loads(row.output)
    assert message.startswith("Non-Deterministic workflow detected:")
    assert "durable_hello" in message and "durable_double" in message


def test_when_all_waits_for_every_child_as_the_extension_does(app, tmp_path):
    """Item 1 of "Where Python and the extension disagree" (devhost/durable/README.md): Python raises at the first failure, but the extension's WhenAll waits for the timer."""

    async def scenario(engine):
        iid = await engine.start_orchestration("durable_whenall_failfast", None, instance_id=f"wa-{tmp_path.name}")
        return await finish(engine, iid)

    row, history = run_engine(app, tmp_path, scenario)
    assert json.loads(row.output) == "Hello after-whenall!"
    names = kinds(history)
    hello = next(i for i, ev in enumerate(history) if ev["EventType"] == h.TASK_SCHEDULED and ev["Name"] == "durable_hello")
    assert names.index("TaskFailed") < names.index("TimerFired") < hello


def test_re_awaiting_retry_tasks_is_reported_as_non_deterministic_like_the_extension(app, tmp_path):
    """Item 2 of "Where Python and the extension disagree" (devhost/durable/README.md): the shim moves on when the WhenAny completes; the retry timer allocated later in
    Python's order takes the id the shim gave the next action, so the replay diverges."""

    async def scenario(engine):
        iid = await engine.start_orchestration("durable_reawait", None, instance_id=f"ra-{tmp_path.name}")
        return await finish(engine, iid)

    row, _ = run_engine(app, tmp_path, scenario)
    assert row.status == "Failed"
    message = json.loads(row.output)
    assert message.startswith("Non-Deterministic workflow detected: A previous execution of this orchestration "
                              "scheduled a timer with sequence number 3")
    assert "durable_hello" in message


def test_custom_status_over_16kb_fails_the_orchestration(app, tmp_path):
    """SetCustomStatus serialises with a 16 KB limit (UTF-16, whole KB truncated) and throws before the
    shim replays any action: the instance fails and keeps its previous custom status."""
    async def scenario(engine):
        ok = await engine.start_orchestration("durable_big_status", 8701)  # '"x..."' = 17,406 bytes: 16 KB
        too_big = await engine.start_orchestration("durable_big_status", 8702)  # 17,408 bytes: 17 KB
        return (await finish(engine, ok)), (await finish(engine, too_big))

    (ok_row, _), (row, history) = run_engine(app, tmp_path, scenario)
    assert ok_row.status == "Completed" and len(json.loads(ok_row.custom_status)) == 8701
    assert row.status == "Failed"
    assert json.loads(row.output) == (
        "Orchestrator function 'durable_big_status' failed: The UTF-16 size of the JSON-serialized payload must "
        "not exceed 16 KB. The current payload size is 17 KB.")
    assert json.loads(row.custom_status) == "small"
    assert kinds(history).count("TaskScheduled") == 1  # the second activity was never scheduled


def test_orchestrator_failure_keeps_scheduled_work_and_custom_status(app, tmp_path):
    async def scenario(engine):
        failing = await engine.start_orchestration("durable_fail")
        unknown = await engine.start_orchestration("durable_unknown_activity")
        return (await finish(engine, failing)), (await finish(engine, unknown))

    (row, history), (unknown_row, _) = run_engine(app, tmp_path, scenario)
    assert row.status == "Failed"
    assert json.loads(row.output) == "Orchestrator function 'durable_fail' failed: kaputt: x"
    assert json.loads(row.custom_status) == {"stage": 1}
    assert history[-2]["EventType"] == h.EXECUTION_COMPLETED and history[-2]["OrchestrationStatus"] == 3
    assert unknown_row.status == "Failed"
    assert json.loads(unknown_row.output).startswith(
        "The function 'durable_does_not_exist' doesn't exist, is disabled, or is not an activity function.")


def test_starting_a_running_instance_id_is_refused_but_a_finished_one_is_replaced(app, tmp_path):
    async def scenario(engine):
        await engine.start_orchestration("durable_wait_forever", None, instance_id="dup")
        with pytest.raises(InstanceExistsError):
            await engine.start_orchestration("durable_chain", None, instance_id="dup")
        await engine.terminate("dup", "stop")
        await engine.wait_for_instance("dup", 10)
        await engine.start_orchestration("durable_chain", {"a": "again"}, instance_id="dup")
        return await finish(engine, "dup")

    row, history = run_engine(app, tmp_path, scenario)
    assert row.status == "Completed" and row.name == "durable_chain"
    assert json.loads(row.output)[0] == "Hello again!"
    assert kinds(history).count("ExecutionStarted") == 1  # the old execution's history is gone


def test_a_slow_activity_does_not_block_other_orchestrations(app, tmp_path):
    module = app.module

    async def scenario(engine):
        slow = await engine.start_orchestration("durable_blocked", "slow-key")
        fast = await engine.start_orchestration("durable_chain", {"a": "fast"})
        fast_row = await engine.wait_for_instance(fast, 30)
        slow_status = engine.get_instance(slow).status
        module.RELEASED.add("slow-key")
        slow_row = await engine.wait_for_instance(slow, 30)
        return fast_row, slow_status, slow_row

    fast_row, slow_status, slow_row = run_engine(app, tmp_path, scenario,
                                                 host_config={"maxConcurrentActivityFunctions": 2,
                                                              "maxConcurrentOrchestratorFunctions": 1})
    assert fast_row.status == "Completed"
    assert slow_status == "Running"  # still blocked while the other instance completed
    assert json.loads(slow_row.output) == "released slow-key"


def test_first_result_of_a_task_any_is_acted_on_while_other_work_is_in_flight(app, tmp_path):
    module = app.module

    async def scenario(engine):
        key = f"race-{tmp_path.name}"
        iid = await engine.start_orchestration("durable_race", key)
        try:
            row = await engine.wait_for_instance(iid, 30)
            still_blocked = engine.is_idle() is False
        finally:
            module.RELEASED.add(key)
        return row, still_blocked

    row, still_blocked = run_engine(app, tmp_path, scenario)
    assert row.status == "Completed" and json.loads(row.output) == "Hello fast!"
    assert still_blocked  # the slow activity was still running when the instance completed


def test_function_timeout_fails_the_activity(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_slow_and_fast", 30)
        return await finish(engine, iid)

    row, _ = run_engine(app, tmp_path, scenario, host_config={"functionTimeout": "00:00:00.3", "extensions": {}})
    assert row.status == "Failed"
    assert "Timeout value of 00:00:00.3000000 was exceeded by function: Functions.durable_slow" in json.loads(row.output)


def test_timespan_text_is_the_dotnet_c_format():
    assert [timespan_text(s) for s in (0.3, 300, 5400.25, 86400 + 61)] == \
        ["00:00:00.3000000", "00:05:00", "01:30:00.2500000", "1.00:01:01"]


def test_rewind_runs_the_failed_activity_again(app, tmp_path):
    async def scenario(engine):
        key = f"rw-{tmp_path.name}"
        iid = await engine.start_orchestration("durable_blocked_flaky", {"key": key, "fail_times": 1})
        row = await engine.wait_for_instance(iid, 30)
        assert row.status == "Failed"
        await engine.rewind(iid, "try again")
        return await finish(engine, iid)

    row, history = run_engine(app, tmp_path, scenario)
    assert row.status == "Completed"
    assert json.loads(row.output) == "ok after 2 calls"
    assert kinds(history).count("TaskFailed") == 0


def test_rewind_of_an_instance_failed_by_exhausted_retries(app, tmp_path):
    """The history is cut before the first TaskFailed: the retry timers and attempts that followed are
    re-derived by the replay instead of clashing with it (non-determinism)."""
    async def scenario(engine):
        key = f"rw-retry-{tmp_path.name}"
        iid = await engine.start_orchestration("durable_retry_exhausted", {"key": key, "fail_times": 2})
        failed, failed_history = await finish(engine, iid)
        await engine.rewind(iid, "again")
        return failed, failed_history, await finish(engine, iid)

    failed, failed_history, (row, history) = run_engine(app, tmp_path, scenario)
    assert failed.status == "Failed"
    assert kinds(failed_history).count("TaskScheduled") == 2  # both attempts, with a retry timer between them
    assert row.status == "Completed", row.output
    assert json.loads(row.output) == "ok after 3 calls"
    assert kinds(history).count("TaskFailed") == 0 and kinds(history).count("TimerCreated") == 0


def test_rewind_requeues_results_that_arrived_after_the_failure(app, tmp_path):
    async def scenario(engine):
        key = f"rw-fan-{tmp_path.name}"
        iid = await engine.start_orchestration("durable_flaky_and_slow", {"key": key, "fail_times": 1})
        failed, failed_history = await finish(engine, iid)
        await engine.rewind(iid, "again")
        return failed, failed_history, await finish(engine, iid)

    failed, failed_history, (row, history) = run_engine(app, tmp_path, scenario)
    assert failed.status == "Failed"
    names = kinds(failed_history)
    assert names.index("TaskFailed") < names.index("TaskCompleted")  # the slow result came after the failure
    assert row.status == "Completed", row.output
    assert json.loads(row.output) == ["ok after 2 calls", 0.3, "Hello after!"]
    assert kinds(history).count("TaskFailed") == 0
    assert kinds(history).count("TaskScheduled") == 3  # the slow activity was not scheduled again
