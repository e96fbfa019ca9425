"""Races and bounds of devhost's Durable engine.

The engine skips a replay for a result that cannot make the extension's shim move on (one more of N
results of a ``task_all``); these tests pin down that it never skips one that can: a ``task_any``
wakes on its *first* result, whichever child that is, also while other work of the instance is in
flight, with sub-orchestrations, and with external events or timers racing activities. They also
observe ``maxConcurrentActivityFunctions`` / ``maxConcurrentOrchestratorFunctions`` as real bounds
and check that slow sync activities (holding a thread) do not hold back other instances.

Blocking activities wait for a key the test releases, so no assertion depends on timing.
"""
from __future__ import annotations

import asyncio
import json
import os

import pytest

from devhost.app_loader import LoadedApp
from devhost.durable import history as h
from devhost.testing import run_engine

APP_PATH = os.path.join(os.path.dirname(__file__), "apps", "durable_app", "function_app.py")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def app() -> LoadedApp:
    return LoadedApp.load(APP_PATH)


def run(app, tmp_path, scenario, *, orchestrator_threads=0, **options):
    """:func:`host_support.run_engine`, with replays on the event loop unless a test asks for threads."""
    return run_engine(app, tmp_path, scenario, orchestrator_threads=orchestrator_threads, **options)


async def until(predicate, timeout=20.0, what="condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def scheduled(engine, iid, name=None):
    return [ev for ev in engine.get_history(iid) if ev["EventType"] in (h.TASK_SCHEDULED, h.SUB_ORCHESTRATION_CREATED)
            and (name is None or ev["Name"] == name)]


@pytest.mark.parametrize("winner", [0, 2, 4])
def test_task_any_over_activities_wakes_on_the_first_result_whichever_it_is(app, tmp_path, winner):
    released = app.module.RELEASED
    prefix = f"any-{winner}-{tmp_path.name}"

    async def scenario(engine):
        iid = await engine.start_orchestration("durable_race_n", {"prefix": prefix, "n": 5})
        await until(lambda: len(scheduled(engine, iid)) == 5, what="five activities scheduled")
        released.add(f"{prefix}-{winner}")
        try:
            row = await engine.wait_for_instance(iid, 20)
            running = engine._activities_in_flight  # the four losers are still blocked
        finally:
            released.update(f"{prefix}-{i}" for i in range(5))
        return row, running

    row, running = run(app, tmp_path, scenario)
    assert row.status == "Completed"
    assert json.loads(row.output) == f"released {prefix}-{winner}"
    assert running == 4


def test_second_race_is_decided_while_losers_of_the_first_are_still_running(app, tmp_path):
    released = app.module.RELEASED
    p = f"twice-{tmp_path.name}"

    async def scenario(engine):
        iid = await engine.start_orchestration("durable_race_twice", p)
        await until(lambda: len(scheduled(engine, iid)) == 2, what="first race scheduled")
        released.add(f"{p}-b")
        await until(lambda: len(scheduled(engine, iid)) == 4, what="second race scheduled")
        released.add(f"{p}-d")  # p-a and p-c stay blocked: the instance has work in flight throughout
        try:
            row = await engine.wait_for_instance(iid, 20)
            running = engine._activities_in_flight
        finally:
            released.update(f"{p}-{x}" for x in "abcd")
        return row, running

    row, running = run(app, tmp_path, scenario)
    assert json.loads(row.output) == [f"released {p}-b", f"released {p}-d"]
    assert running == 2


@pytest.mark.parametrize("winner", ["a", "b"])
def test_task_any_over_sub_orchestrations_wakes_on_the_first_child(app, tmp_path, winner):
    released = app.module.RELEASED
    p = f"kids-{winner}-{tmp_path.name}"

    async def scenario(engine):
        iid = await engine.start_orchestration("durable_race_children_or_timer", p)
        await until(lambda: len(scheduled(engine, iid)) == 2, what="two children started")
        released.add(f"{p}-{winner}")
        try:
            row = await engine.wait_for_instance(iid, 20)
            children = [r for r in engine.store.query() if r.parent_instance_id == iid]
            loser_status = next(r.status for r in children if r.status != "Completed")
        finally:
            released.update({f"{p}-a", f"{p}-b"})
        return row, loser_status

    row, loser_status = run(app, tmp_path, scenario)
    assert row.status == "Completed"
    assert json.loads(row.output) == {"winner": f"released {p}-{winner}"}
    assert loser_status == "Running"  # the other child was still in flight when the parent moved on


def test_timer_beats_running_sub_orchestrations(app, tmp_path):
    released = app.module.RELEASED
    p = f"kids-timer-{tmp_path.name}"

    async def scenario(engine):
        iid = await engine.start_orchestration("durable_race_children_or_timer", p)
        await until(lambda: len(scheduled(engine, iid)) == 2, what="two children started")
        engine.advance_clock(2 * 3600)  # the children are busy, so only an explicit advance fires the timer
        try:
            row = await engine.wait_for_instance(iid, 20)
            children = [r.status for r in engine.store.query() if r.parent_instance_id == iid]
        finally:
            released.update({f"{p}-a", f"{p}-b"})
        # the children finish after their parent; their results are dropped, nothing fails
        for child in [r.instance_id for r in engine.store.query() if r.parent_instance_id == iid]:
            await engine.wait_for_instance(child, 20)
        late = [r.status for r in engine.store.query() if r.parent_instance_id == iid]
        return row, children, late, engine.get_instance(iid)

    row, children, late, after = run(app, tmp_path, scenario)
    assert json.loads(row.output) == {"winner": "timer"}
    assert children == ["Running", "Running"]
    assert late == ["Completed", "Completed"]
    assert after.status == "Completed" and json.loads(after.output) == {"winner": "timer"}


@pytest.mark.parametrize("winner", ["work", "event", "timer"])
def test_activity_external_event_and_timer_race(app, tmp_path, winner):
    released = app.module.RELEASED
    key = f"wet-{winner}-{tmp_path.name}"

    async def scenario(engine):
        iid = await engine.start_orchestration("durable_work_event_or_timer", key)
        await until(lambda: scheduled(engine, iid), what="the activity scheduled")
        await until(lambda: engine._activities_in_flight == 1, what="the activity running")
        if winner == "work":
            released.add(key)
        elif winner == "event":
            await engine.raise_event(iid, "Go", json.dumps("now"))
        else:
            engine.advance_clock(2 * 3600)
        try:
            row = await engine.wait_for_instance(iid, 20)
        finally:
            released.add(key)
        return row, engine.get_history(iid)

    row, history = run(app, tmp_path, scenario)
    assert json.loads(row.output) == winner
    names = [h.EVENT_TYPE_NAMES[ev["EventType"]] for ev in history]
    if winner == "event":
        assert "EventRaised" in names and "TaskCompleted" not in names
    if winner == "timer":
        assert "TimerFired" in names and "TaskCompleted" not in names


def test_max_concurrent_activity_functions_bounds_running_activities(app, tmp_path):
    probe = app.module.PROBE

    async def scenario(engine):
        probe.update(act_now=0, act_max=0)
        iid = await engine.start_orchestration("durable_probe_orchestrator", 24)
        return await engine.wait_for_instance(iid, 30)

    row = run(app, tmp_path, scenario, host_config={"maxConcurrentActivityFunctions": 3})
    assert json.loads(row.output) == sum(range(24))
    assert probe["act_max"] == 3  # the bound was reached and never exceeded


def test_max_concurrent_orchestrator_functions_bounds_running_episodes(app, tmp_path):
    probe = app.module.PROBE

    async def scenario(engine):
        probe.update(orch_now=0, orch_max=0)
        ids = [await engine.start_orchestration("durable_probe_orchestrator", 2) for _ in range(8)]
        return [await engine.wait_for_instance(iid, 30) for iid in ids]

    # replays in threads (DEVHOST_ORCHESTRATOR_THREADS=4), so more than one could run at once
    rows = run(app, tmp_path, scenario, host_config={"maxConcurrentOrchestratorFunctions": 2},
               orchestrator_threads=4)
    assert [json.loads(r.output) for r in rows] == [1] * 8
    assert probe["orch_max"] == 2


def test_slow_sync_activities_do_not_hold_back_other_instances(app, tmp_path):
    gate = app.module.sync_gate
    key = f"sync-{tmp_path.name}"

    async def scenario(engine):
        slow = await engine.start_orchestration("durable_blocked_sync", key)
        await until(lambda: engine._activities_in_flight == 1, what="the slow sync activity running")
        # the only activity slot is taken: an instance without activities still runs its episodes
        waiting = await engine.start_orchestration("durable_approval", None)
        await engine.raise_event(waiting, "Approve", json.dumps("x"))
        await engine.raise_event(waiting, "Approve", json.dumps("y"))
        approved = await engine.wait_for_instance(waiting, 20)
        # an instance with activities schedules them; they run once the slot frees
        chain = await engine.start_orchestration("durable_chain", {"a": "later"})
        await until(lambda: scheduled(engine, chain), what="the chain's first activity scheduled")
        slow_status = engine.get_instance(slow).status
        gate(key).set()
        return approved, slow_status, await engine.wait_for_instance(chain, 20), await engine.wait_for_instance(slow, 20)

    approved, slow_status, chain, slow = run(app, tmp_path, scenario, virtual_clock=False,
                                             host_config={"maxConcurrentActivityFunctions": 1})
    assert json.loads(approved.output) == ["x", "y"]
    assert slow_status == "Running"
    assert json.loads(chain.output) == ["Hello later!", "Hello London!"]
    assert json.loads(slow.output) == f"released {key}"


def test_slow_sync_activity_does_not_block_a_fast_one(app, tmp_path):
    gate = app.module.sync_gate
    key = f"sync2-{tmp_path.name}"

    async def scenario(engine):
        slow = await engine.start_orchestration("durable_blocked_sync", key)
        await until(lambda: engine._activities_in_flight == 1, what="the slow sync activity running")
        fast = await engine.start_orchestration("durable_chain", {"a": "fast"})
        fast_row = await engine.wait_for_instance(fast, 20)
        slow_status = engine.get_instance(slow).status
        gate(key).set()
        return fast_row, slow_status, await engine.wait_for_instance(slow, 20)

    fast_row, slow_status, slow_row = run(app, tmp_path, scenario, virtual_clock=False,
                                          host_config={"maxConcurrentActivityFunctions": 2,
                                                       "maxConcurrentOrchestratorFunctions": 1})
    assert json.loads(fast_row.output) == ["Hello fast!", "Hello London!"]
    assert slow_status == "Running"
    assert json.loads(slow_row.output) == f"released {key}"


def test_orchestration_versions_default_explicit_sub_orchestration_and_continue_as_new(app, tmp_path):
    from aiohttp import web

    import azure.durable_functions as df

    from devhost.durable.http_api import client_binding_json, make_routes
    from devhost.testing import close_sdk_session

    async def scenario(engine):
        default = await engine.start_orchestration("durable_versioned", 0)
        explicit = await engine.start_orchestration("durable_versioned", 2, version="2.0")  # 2 x continue-as-new
        web_app = web.Application()
        web_app.add_routes(make_routes(engine))
        runner = web.AppRunner(web_app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        try:  # the client's start_new(version=...) sends ?version=
            client = df.DurableOrchestrationClient(client_binding_json(engine, base_url))
            via_http = await client.start_new("durable_versioned", None, 0, version="3.0")
            rows = [await engine.wait_for_instance(i, 20) for i in (default, explicit, via_http)]
            restarted = await engine.restart(explicit)
            rows.append(await engine.wait_for_instance(restarted, 20))
        finally:
            await close_sdk_session()
            await runner.cleanup()
        return rows, engine.get_history(default)

    rows, history = run(app, tmp_path, scenario, host_config={"defaultVersion": "1.0"})
    assert [json.loads(r.output) for r in rows] == [["1.0", "0.9", "1.0"], ["2.0", "0.9", "1.0"],
                                                    ["3.0", "0.9", "1.0"], ["2.0", "0.9", "1.0"]]
    assert history[1]["Version"] == "1.0"
    created = [ev["Version"] for ev in history if ev["EventType"] == h.SUB_ORCHESTRATION_CREATED]
    assert created == ["0.9", "1.0"]


def test_shim_catching_up_on_an_unknown_activity_fails_the_instance(app, tmp_path):
    """The result that unblocks the shim makes it invoke an action naming an unknown activity: the
    instance fails with the extension's message (the engine must not choke on it between episodes)."""
    released = app.module.RELEASED
    p = f"ff-{tmp_path.name}"

    async def scenario(engine):
        iid = await engine.start_orchestration("durable_failfast_then_unknown", p)
        await until(lambda: app.module.FLAKY_CALLS.get(p) == 1 and engine._activities_in_flight == 2,
                    what="the flaky activity failed")
        # an event nobody waits for makes an episode: Python sees the failure and yields the unknown
        # activity, while the shim still waits for k1
        await engine.raise_event(iid, "Poke", None)
        await until(lambda: any(ev["EventType"] == h.EVENT_RAISED for ev in engine.get_history(iid)),
                    what="the episode with the event")
        released.add(f"{p}-k1")  # the loser of the first race stays blocked
        try:
            row = await engine.wait_for_instance(iid, 20)
            chain = await engine.start_orchestration("durable_chain", {"a": "still working"})
            after = await engine.wait_for_instance(chain, 20)
        finally:
            released.add(f"{p}-loser")
        return row, after

    row, after = run(app, tmp_path, scenario)
    assert row.status == "Failed"
    assert json.loads(row.output).startswith("The function 'durable_does_not_exist' doesn't exist")
    assert after.status == "Completed"  # the engine still completes activities afterwards


def test_results_and_timers_that_arrive_while_suspended_wait_for_resume(app, tmp_path):
    released = app.module.RELEASED
    key = f"susp-{tmp_path.name}"

    async def scenario(engine):
        iid = await engine.start_orchestration("durable_work_event_or_timer", key)
        await until(lambda: engine._activities_in_flight == 1, what="the activity running")
        await engine.suspend(iid, "hold on")
        await until(lambda: engine.get_instance(iid).status == "Suspended", what="suspended")
        released.add(key)  # the activity finishes while the instance is suspended
        await until(lambda: engine._activities_in_flight == 0 and engine.is_idle(), what="activity result recorded")
        engine.advance_clock(2 * 3600)  # and its timer comes due
        await engine.wait_idle(5)
        held = engine.get_instance(iid).status, [ev["EventType"] for ev in engine.get_history(iid)]
        await engine.resume(iid, "go on")
        row = await engine.wait_for_instance(iid, 20)
        return held, row, engine.get_history(iid)

    (held_status, held_events), row, history = run(app, tmp_path, scenario)
    assert held_status == "Suspended"
    assert h.TASK_COMPLETED not in held_events and h.TIMER_FIRED not in held_events
    assert row.status == "Completed"
    assert json.loads(row.output) == "work"  # delivered after ExecutionResumed, in arrival order
    names = [h.EVENT_TYPE_NAMES[ev["EventType"]] for ev in history]
    assert names.index("ExecutionResumed") < names.index("TaskCompleted") < names.index("TimerFired")


def test_a_result_that_arrived_before_a_timer_fired_wins_when_both_are_in_one_episode(app, tmp_path):
    """Batches are delivered in arrival order: the timer message was stored when the timer was
    created (before the activity result), but it arrived when it fired, after the result."""
    released = app.module.RELEASED
    key = f"order-{tmp_path.name}"

    async def scenario(engine):
        iid = await engine.start_orchestration("durable_work_event_or_timer", key)
        await until(lambda: engine._activities_in_flight == 1, what="the activity running")
        async with engine._lock(iid):  # hold the next episode back until both have arrived
            released.add(key)
            await until(lambda: engine._activities_in_flight == 0 and not engine._completions, what="result stored")
            engine.advance_clock(2 * 3600)
            await asyncio.sleep(0.05)  # the timer loop makes the (locked) instance ready
        row = await engine.wait_for_instance(iid, 20)
        return row, engine.get_history(iid)

    row, history = run(app, tmp_path, scenario)
    assert json.loads(row.output) == "work"
    names = [h.EVENT_TYPE_NAMES[ev["EventType"]] for ev in history]
    assert names.index("TaskCompleted") < names.index("TimerFired")  # both in the same, last episode
    assert names[names.index("TaskCompleted") - 1] == "OrchestratorStarted"


def test_an_activity_raising_cancelled_error_fails_its_task_and_keeps_the_workers(app, tmp_path):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_survives_cancelled", None)
        first = await engine.wait_for_instance(iid, 20)
        again = await engine.start_orchestration("durable_fanout", 10)  # both workers still there
        return first, await engine.wait_for_instance(again, 20)

    first, again = run(app, tmp_path, scenario, host_config={"maxConcurrentActivityFunctions": 2})
    outcome, after = json.loads(first.output)
    assert outcome.startswith("Activity function 'durable_raises_cancelled' failed:  CancelledError")
    assert after == "Hello after!"
    assert json.loads(again.output) == 90


def test_an_action_removed_from_the_code_is_reported_as_non_deterministic(app, tmp_path):
    module = app.module

    async def scenario(engine):
        module.NONDETERMINISTIC["variant"] = "a"
        iid = await engine.start_orchestration("durable_nondeterministic", None)
        await until(lambda: engine.get_instance(iid).status == "Running" and engine.is_idle(), what="waiting for Go")
        module.NONDETERMINISTIC["variant"] = "c"  # the deployed code no longer calls the activity
        try:
            await engine.raise_event(iid, "Go", None)
            return await engine.wait_for_instance(iid, 20)
        finally:
            module.NONDETERMINISTIC["variant"] = "a"

    row = run(app, tmp_path, scenario)
    assert row.status == "Failed"
    assert json.loads(row.output) == (
        "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled an activity task "
        "with sequence ID 0 and name 'durable_hello' (version ''), but the current replay execution hasn't (yet?) "
        "scheduled this task. Was a change made to the orchestrator code after this instance had already started running?")


def test_max_orchestration_actions_fails_the_orchestration_as_the_extension_does(app, tmp_path):
    async def scenario(engine):
        small = await engine.start_orchestration("durable_fanout", 4)  # 4 actions: allowed
        big = await engine.start_orchestration("durable_fanout", 6)
        return await engine.wait_for_instance(small, 20), await engine.wait_for_instance(big, 20)

    small, big = run(app, tmp_path, scenario, host_config={"maxOrchestrationActions": 5})
    assert small.status == "Completed" and json.loads(small.output) == 12
    assert big.status == "Failed"
    assert json.loads(big.output) == (
        "Orchestrator function 'durable_fanout' failed: Maximum amount of orchestration actions (5) has been reached. "
        "This value can be configured in host.json file as MaxOrchestrationActions.")


@pytest.mark.parametrize("target, message", [
    ("self", "The instance ID of a sub-orchestration must be different than the instance ID of a parent orchestration."),
    ("@odd", "instanceId (Parameter 'Orchestration instance ids must not start with @')"),
])
def test_a_sub_orchestration_id_the_extension_refuses_fails_the_orchestration(app, tmp_path, target, message):
    async def scenario(engine):
        iid = await engine.start_orchestration("durable_bad_child_id", target, instance_id="bad-child-parent")
        return await engine.wait_for_instance(iid, 20)

    row = run(app, tmp_path, scenario)
    assert row.status == "Failed"
    assert json.loads(row.output) == message
