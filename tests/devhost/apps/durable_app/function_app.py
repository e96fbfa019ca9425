"""Test app for the durable engine's tests (tests/devhost/test_durable_*.py). Names start with durable_."""
import asyncio
import datetime as dt
import threading
import time

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

# How often each flaky key was called (this process); the activity fails until it reaches fail_times.
FLAKY_CALLS: dict[str, int] = {}
# Flipped by the non-determinism test between episodes.
NONDETERMINISTIC = {"variant": "a"}


@app.orchestration_trigger(context_name="context")
def durable_chain(context: df.DurableOrchestrationContext):
    data = context.get_input() or {}
    first = yield context.call_activity("durable_hello", data.get("a", "Tokyo"))
    second = yield context.call_activity("durable_hello", data.get("b", "London"))
    return [first, second]


@app.orchestration_trigger(context_name="context")
def durable_fanout(context: df.DurableOrchestrationContext):
    n = context.get_input()
    results = yield context.task_all([context.call_activity("durable_double", i) for i in range(n)])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def durable_crash_fanout(context: df.DurableOrchestrationContext):
    n = context.get_input()
    results = yield context.task_all([context.call_activity("durable_work", i) for i in range(n)])
    total = yield context.call_activity("durable_double", sum(results))
    return {"count": len(results), "total": total}


@app.orchestration_trigger(context_name="context")
def durable_retry(context: df.DurableOrchestrationContext):
    data = context.get_input()
    opts = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=data["attempts"])
    try:
        result = yield context.call_activity_with_retry("durable_flaky", opts, data)
        return {"ok": result}
    except Exception as exc:
        after = yield context.call_activity("durable_hello", "after")
        return {"error": str(exc).split(" \n ")[0], "after": after}


@app.orchestration_trigger(context_name="context")
def durable_parent(context: df.DurableOrchestrationContext):
    n = context.get_input()
    opts = df.RetryOptions(first_retry_interval_in_milliseconds=2000, max_number_of_attempts=3)
    tasks = [context.call_sub_orchestrator_with_retry("durable_child", opts, {"i": i, "key": f"{context.instance_id}-{i}"})
             for i in range(n)]
    results = yield context.task_all(tasks)
    return results


@app.orchestration_trigger(context_name="context")
def durable_child(context: df.DurableOrchestrationContext):
    data = context.get_input()
    doubled = yield context.call_activity("durable_double", data["i"])
    # fails on the first attempt of each child (per key), so the parent's retry creates a new child
    yield context.call_activity("durable_flaky", {"key": data["key"], "fail_times": 1})
    return {"child_of": context.parent_instance_id, "v": doubled}


@app.orchestration_trigger(context_name="context")
def durable_timer(context: df.DurableOrchestrationContext):
    start = context.current_utc_datetime
    yield context.create_timer(start + dt.timedelta(hours=context.get_input() or 1))
    yield context.create_timer(context.current_utc_datetime + dt.timedelta(days=10))  # long timer (V3 split)
    return (context.current_utc_datetime - start).total_seconds()


@app.orchestration_trigger(context_name="context")
def durable_counter(context: df.DurableOrchestrationContext):
    state = context.get_input()
    n, limit = state["n"], state["limit"]
    yield context.call_activity("durable_double", n)
    context.set_custom_status({"n": n})
    if n >= limit:
        return f"counted to {n}"
    context.continue_as_new({"n": n + 1, "limit": limit})


@app.orchestration_trigger(context_name="context")
def durable_event_loop(context: df.DurableOrchestrationContext):
    state = context.get_input()
    value = yield context.wait_for_external_event("Add")
    seen = state["seen"] + [value]
    if len(seen) >= state["want"]:
        return seen
    context.continue_as_new({"seen": seen, "want": state["want"]})


@app.orchestration_trigger(context_name="context")
def durable_whenall_failfast(context: df.DurableOrchestrationContext):
    fails = context.call_activity("durable_flaky", {"key": context.instance_id, "fail_times": 1})
    timer = context.create_timer(context.current_utc_datetime + dt.timedelta(minutes=30))
    try:
        yield context.task_all([fails, timer])
    except Exception:
        pass
    return (yield context.call_activity("durable_hello", "after-whenall"))


@app.orchestration_trigger(context_name="context")
def durable_parent_of_waiter(context: df.DurableOrchestrationContext):
    try:
        return (yield context.call_sub_orchestrator("durable_wait_forever", None, instance_id=context.get_input()))
    except Exception as exc:
        return {"child failed": str(exc).split(" \n ")[0]}


@app.orchestration_trigger(context_name="context")
def durable_reawait(context: df.DurableOrchestrationContext):
    """Item 2 of "Where Python and the extension disagree" (devhost/durable/README.md): re-awaiting already-yielded retry tasks emits no action."""
    key = context.instance_id
    fa = context.call_activity_with_retry("durable_flaky", df.RetryOptions(60000, 4), {"key": f"{key}-a", "fail_times": 0})
    fb = context.call_activity_with_retry("durable_flaky", df.RetryOptions(1000, 4), {"key": f"{key}-b", "fail_times": 1})
    timer = context.create_timer(context.current_utc_datetime + dt.timedelta(seconds=30))
    yield context.task_any([fa, fb, timer])
    yield context.task_all([fa, fb])
    return (yield context.call_activity("durable_hello", "end"))


@app.orchestration_trigger(context_name="context")
def durable_race(context: df.DurableOrchestrationContext):
    slow = context.call_activity("durable_block", context.get_input())
    fast = context.call_activity("durable_hello", "fast")
    winner = yield context.task_any([slow, fast])
    return winner.result


@app.orchestration_trigger(context_name="context")
def durable_approval(context: df.DurableOrchestrationContext):
    context.set_custom_status("waiting")
    first = yield context.wait_for_external_event("Approve")
    second = yield context.wait_for_external_event("Approve")
    context.set_custom_status("approved")
    return [first, second]


@app.orchestration_trigger(context_name="context")
def durable_approval_or_timeout(context: df.DurableOrchestrationContext):
    event = context.wait_for_external_event("Approve")
    timeout = context.create_timer(context.current_utc_datetime + dt.timedelta(hours=1))
    winner = yield context.task_any([event, timeout])
    if winner == event:
        timeout.cancel()
        return {"approved": event.result}
    return {"approved": None}


@app.orchestration_trigger(context_name="context")
def durable_wait_forever(context: df.DurableOrchestrationContext):
    yield context.call_activity("durable_hello", "start")
    value = yield context.wait_for_external_event("Go")
    after = yield context.call_activity("durable_hello", "after")
    return [value, after]


@app.orchestration_trigger(context_name="context")
def durable_nondeterministic(context: df.DurableOrchestrationContext):
    if NONDETERMINISTIC["variant"] != "c":  # variant c drops the activity altogether
        name = "durable_hello" if NONDETERMINISTIC["variant"] == "a" else "durable_double"
        yield context.call_activity(name, 1)
    yield context.wait_for_external_event("Go")
    return "done"


@app.orchestration_trigger(context_name="context")
def durable_fail(context: df.DurableOrchestrationContext):
    context.set_custom_status({"stage": 1})
    yield context.call_activity("durable_hello", "x")
    raise ValueError("kaputt: x")


@app.orchestration_trigger(context_name="context")
def durable_slow_and_fast(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("durable_slow", context.get_input()))


@app.orchestration_trigger(context_name="context")
def durable_unknown_activity(context: df.DurableOrchestrationContext):
    yield context.call_activity("durable_does_not_exist", 1)


@app.orchestration_trigger(context_name="context")
def durable_blocked_flaky(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("durable_flaky", context.get_input()))


@app.orchestration_trigger(context_name="context")
def durable_blocked(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("durable_block", context.get_input()))


@app.orchestration_trigger(context_name="context")
def durable_retry_exhausted(context: df.DurableOrchestrationContext):
    opts = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=2)
    return (yield context.call_activity_with_retry("durable_flaky", opts, context.get_input()))


@app.orchestration_trigger(context_name="context")
def durable_flaky_and_slow(context: df.DurableOrchestrationContext):
    data = context.get_input()
    results = yield context.task_all([context.call_activity("durable_flaky", data),
                                      context.call_activity("durable_slow", 0.3)])
    done = yield context.call_activity("durable_hello", "after")
    return results + [done]


@app.orchestration_trigger(context_name="context")
def durable_big_status(context: df.DurableOrchestrationContext):
    context.set_custom_status("small")
    yield context.call_activity("durable_hello", "a")
    context.set_custom_status("x" * context.get_input())  # over 16 KB of UTF-16 fails the instance
    yield context.call_activity("durable_hello", "b")
    return "done"


@app.activity_trigger(input_name="name")
def durable_hello(name: str) -> str:
    return f"Hello {name}!"


@app.activity_trigger(input_name="x")
def durable_double(x: int) -> int:
    return 2 * x


@app.activity_trigger(input_name="i")
def durable_work(i: int) -> int:
    time.sleep(0.02)  # long enough for the crash test to kill the host while activities are in flight
    return i


@app.activity_trigger(input_name="payload")
async def durable_noop(payload) -> None:
    return None


@app.activity_trigger(input_name="payload")
def durable_flaky(payload: dict) -> str:
    key = payload["key"]
    FLAKY_CALLS[key] = FLAKY_CALLS.get(key, 0) + 1
    if FLAKY_CALLS[key] <= payload["fail_times"]:
        raise RuntimeError(f"flaky {key} call {FLAKY_CALLS[key]}")
    return f"ok after {FLAKY_CALLS[key]} calls"


@app.activity_trigger(input_name="seconds")
async def durable_slow(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


# Keys the test releases; durable_block waits (async, without holding a thread) until its key is released.
RELEASED: set = set()


@app.activity_trigger(input_name="key")
async def durable_block(key: str) -> str:
    while key not in RELEASED:
        await asyncio.sleep(0.01)
    return f"released {key}"


@app.durable_client_input(client_name="client")
@app.route(route="durable_start/{name}", methods=["POST"])
async def durable_http_start(req: func.HttpRequest, client) -> func.HttpResponse:
    instance_id = await client.start_new(req.route_params["name"], None, req.get_json())
    return client.create_check_status_response(req, instance_id)


# ---- races, concurrency bounds and slow sync activities (tests/devhost/test_durable_races.py)

@app.orchestration_trigger(context_name="context")
def durable_race_n(context: df.DurableOrchestrationContext):
    """task_any over N blocking activities: whichever key the test releases first wins."""
    data = context.get_input()
    tasks = [context.call_activity("durable_block", f"{data['prefix']}-{i}") for i in range(data["n"])]
    winner = yield context.task_any(tasks)
    return winner.result


@app.orchestration_trigger(context_name="context")
def durable_race_twice(context: df.DurableOrchestrationContext):
    """Two races in a row; the losers of the first are still running while the second is decided."""
    p = context.get_input()
    first = yield context.task_any([context.call_activity("durable_block", f"{p}-a"),
                                    context.call_activity("durable_block", f"{p}-b")])
    second = yield context.task_any([context.call_activity("durable_block", f"{p}-c"),
                                     context.call_activity("durable_block", f"{p}-d")])
    return [first.result, second.result]


@app.orchestration_trigger(context_name="context")
def durable_race_children_or_timer(context: df.DurableOrchestrationContext):
    """task_any over two sub-orchestrations (each blocked on a key) and a 1-hour timer."""
    p = context.get_input()
    a = context.call_sub_orchestrator("durable_blocked", f"{p}-a")
    b = context.call_sub_orchestrator("durable_blocked", f"{p}-b")
    timer = context.create_timer(context.current_utc_datetime + dt.timedelta(hours=1))
    winner = yield context.task_any([a, b, timer])
    if winner == timer:
        return {"winner": "timer"}
    timer.cancel()
    return {"winner": winner.result}


@app.orchestration_trigger(context_name="context")
def durable_work_event_or_timer(context: df.DurableOrchestrationContext):
    """An activity in flight, an external event and a 1-hour timer race; the test decides the winner."""
    work = context.call_activity("durable_block", context.get_input())
    event = context.wait_for_external_event("Go")
    timer = context.create_timer(context.current_utc_datetime + dt.timedelta(hours=1))
    winner = yield context.task_any([work, event, timer])
    if winner != timer:
        timer.cancel()
    return "work" if winner == work else "event" if winner == event else "timer"


# Concurrency probes: how many orchestrator replays / activities ran at the same time (this process).
PROBE_LOCK = threading.Lock()
PROBE = {"orch_now": 0, "orch_max": 0, "act_now": 0, "act_max": 0}


def _probe_enter(kind: str) -> None:
    with PROBE_LOCK:
        PROBE[f"{kind}_now"] += 1
        PROBE[f"{kind}_max"] = max(PROBE[f"{kind}_max"], PROBE[f"{kind}_now"])


def _probe_leave(kind: str) -> None:
    with PROBE_LOCK:
        PROBE[f"{kind}_now"] -= 1


@app.orchestration_trigger(context_name="context")
def durable_probe_orchestrator(context: df.DurableOrchestrationContext):
    _probe_enter("orch")  # not deterministic-safe on purpose: it only measures, it decides nothing
    try:
        time.sleep(0.03)
    finally:
        _probe_leave("orch")
    results = yield context.task_all([context.call_activity("durable_probe_activity", i)
                                      for i in range(context.get_input())])
    return sum(results)


@app.activity_trigger(input_name="i")
async def durable_probe_activity(i: int) -> int:
    _probe_enter("act")
    try:
        await asyncio.sleep(0.03)
    finally:
        _probe_leave("act")
    return i


# Sync activities blocked on a threading.Event per key (they hold a worker thread while they wait).
SYNC_GATES: dict = {}
SYNC_GATES_LOCK = threading.Lock()


def sync_gate(key: str) -> threading.Event:
    with SYNC_GATES_LOCK:
        return SYNC_GATES.setdefault(key, threading.Event())


@app.activity_trigger(input_name="key")
def durable_block_sync(key: str) -> str:
    if not sync_gate(key).wait(timeout=60):
        raise TimeoutError(f"gate {key} was never opened")
    return f"released {key}"


@app.orchestration_trigger(context_name="context")
def durable_blocked_sync(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("durable_block_sync", context.get_input()))


# ---- orchestration versioning (host.json defaultVersion, start_new(version=...), sub-orchestrator version)

@app.orchestration_trigger(context_name="context")
def durable_versioned(context: df.DurableOrchestrationContext):
    rounds = context.get_input() or 0
    if rounds > 0:  # continue-as-new keeps the instance's version
        context.continue_as_new(rounds - 1)
        return None
    explicit = yield context.call_sub_orchestrator("durable_version_of", None, version="0.9")
    default = yield context.call_sub_orchestrator("durable_version_of")
    return [context.version, explicit, default]


@app.orchestration_trigger(context_name="context")
def durable_version_of(context: df.DurableOrchestrationContext):
    return context.version


@app.orchestration_trigger(context_name="context")
def durable_failfast_then_unknown(context: df.DurableOrchestrationContext):
    """Python moves past a failed task_all before the shim does (item 1 of "Where Python and the extension disagree", devhost/durable/README.md) and yields an unknown
    activity; a loser of an earlier race is still in flight when the shim catches up."""
    p = context.get_input()
    yield context.task_any([context.call_activity("durable_block", f"{p}-loser"),
                            context.call_activity("durable_hello", "winner")])
    try:
        yield context.task_all([context.call_activity("durable_flaky", {"key": p, "fail_times": 1}),
                                context.call_activity("durable_block", f"{p}-k1")])
    except Exception:
        yield context.call_activity("durable_does_not_exist", 1)
    return "unreachable"


@app.activity_trigger(input_name="payload")
async def durable_raises_cancelled(payload) -> None:
    raise asyncio.CancelledError("cancelled inside the activity")


@app.orchestration_trigger(context_name="context")
def durable_survives_cancelled(context: df.DurableOrchestrationContext):
    try:
        yield context.task_all([context.call_activity("durable_raises_cancelled", i) for i in range(3)])
        outcome = "no error"
    except Exception as exc:
        outcome = str(exc).split(" \n ")[0]
    return [outcome, (yield context.call_activity("durable_hello", "after"))]


# ---- crash test with sub-orchestrations and durable timers (tests/devhost/test_durable_crash.py)

@app.orchestration_trigger(context_name="context")
def durable_crash_parent(context: df.DurableOrchestrationContext):
    n = context.get_input()
    results = yield context.task_all([context.call_sub_orchestrator("durable_crash_child", i) for i in range(n)])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def durable_crash_child(context: df.DurableOrchestrationContext):
    i = context.get_input()
    yield context.create_timer(context.current_utc_datetime + dt.timedelta(minutes=5 + i))
    value = yield context.call_activity("durable_work", i)
    return 2 * value


@app.orchestration_trigger(context_name="context")
def durable_bad_child_id(context: df.DurableOrchestrationContext):
    """Calls a sub-orchestration with its own instance id (input "self") or the id given as input."""
    target = context.get_input()
    child_id = context.instance_id.upper() if target == "self" else target
    try:
        return (yield context.call_sub_orchestrator("durable_version_of", None, instance_id=child_id))
    except Exception as exc:  # the extension does not fail the task: it fails the orchestration
        return {"caught": str(exc)}
