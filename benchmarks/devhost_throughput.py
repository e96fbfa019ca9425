"""Throughput of devhost's Durable engine vs Microsoft's ``durabletask`` in-memory backend.

Workloads (same shape on both engines, no-op activities):

* ``fanout``: one orchestration fans out N activities with ``task_all`` and fans in (N = 1,000).
* ``suborch``: one orchestration fans out 100 sub-orchestrations, each a chain of 5 activities.

devhost runs in-process through its real path: ``LoadedApp`` (the v2 indexing and the worker's
converters), the real ``azure-functions-durable`` replay, the extension shim, and SQLite
persistence (WAL) in a temporary state folder. ``durabletask`` runs its in-memory gRPC backend
(``durabletask.testing.create_test_backend``) with a ``TaskHubGrpcWorker`` in the same process.

Also checks that replay is not quadratic: time(fan-out of 2N) / time(fan-out of N) must be <= 2.2
on devhost. A single pair of sub-second runs is too noisy for that (on this 2-core machine single
doublings measured anywhere from 1.8 to 2.4 with the same code), so the fan-out is timed at
N/2, N, 2N and 4N (interleaved, median of --repeat runs), every doubling ratio is printed, and the
verdict uses the least-squares power-law fit time ~ c * N**k over the ladder: the fitted
time(2N)/time(N) = 2**k (k = 1 linear, k = 2 quadratic). Usage: ``python benchmarks/devhost_throughput.py [--n 1000] [--repeat 3]``.
The last line printed is one JSON object with all figures.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import textwrap
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

BENCH_APP = textwrap.dedent('''
    import azure.durable_functions as df

    app = df.DFApp()

    @app.orchestration_trigger(context_name="context")
    def bench_fanout(context):
        n = context.get_input()
        results = yield context.task_all([context.call_activity("bench_noop", i) for i in range(n)])
        return len(results)

    @app.orchestration_trigger(context_name="context")
    def bench_parent(context):
        n = context.get_input()
        results = yield context.task_all([context.call_sub_orchestrator("bench_child", i) for i in range(n)])
        return sum(results)

    @app.orchestration_trigger(context_name="context")
    def bench_child(context):
        x = context.get_input()
        for _ in range(5):
            x = yield context.call_activity("bench_noop", x)
        return 5

    @app.activity_trigger(input_name="x")
    def bench_noop(x):
        return x
''')


# ---------------------------------------------------------------------------------- devhost
class DevhostRunner:
    def __init__(self, state_dir: str) -> None:
        from devhost.app_loader import LoadedApp

        app_dir = os.path.join(state_dir, "app")
        os.makedirs(app_dir, exist_ok=True)
        path = os.path.join(app_dir, "function_app.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(BENCH_APP)
        self.app = LoadedApp.load(path)
        self.state_dir = state_dir
        self.runs = 0

    async def _run(self, orchestrator: str, value: int) -> tuple[float, int, int]:
        from devhost.durable.engine import DurableEngine

        self.runs += 1
        engine = DurableEngine(self.app, os.path.join(self.state_dir, f"state{self.runs}"), {})
        await engine.start()
        try:
            started = time.perf_counter()
            iid = await engine.start_orchestration(orchestrator, value)
            row = await engine.wait_for_instance(iid, 600)
            elapsed = time.perf_counter() - started
            assert row.status == "Completed", (row.status, row.output)
            return elapsed, json.loads(row.output), engine.episode_count
        finally:
            await engine.stop()

    def run(self, orchestrator: str, value: int) -> tuple[float, int, int]:
        return asyncio.run(self._run(orchestrator, value))


# ---------------------------------------------------------------------------------- durabletask
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DurableTaskRunner:
    def __init__(self) -> None:
        from durabletask import client as dt_client
        from durabletask import worker as dt_worker
        from durabletask.testing import create_test_backend

        port = _free_port()
        self.backend = create_test_backend(port=port, max_history_size=100_000)
        address = f"localhost:{port}"
        self.client = dt_client.TaskHubGrpcClient(host_address=address)
        self.worker = dt_worker.TaskHubGrpcWorker(host_address=address)

        def bench_noop(ctx, x):
            return x

        def bench_fanout(ctx, n):
            from durabletask import task as dt_task

            results = yield dt_task.when_all([ctx.call_activity(bench_noop, input=i) for i in range(n)])
            return len(results)

        def bench_child(ctx, x):
            for _ in range(5):
                x = yield ctx.call_activity(bench_noop, input=x)
            return 5

        def bench_parent(ctx, n):
            from durabletask import task as dt_task

            results = yield dt_task.when_all([ctx.call_sub_orchestrator(bench_child, input=i) for i in range(n)])
            return sum(results)

        self.orchestrators = {"bench_fanout": bench_fanout, "bench_parent": bench_parent}
        for fn in (bench_fanout, bench_parent, bench_child):
            self.worker.add_orchestrator(fn)
        self.worker.add_activity(bench_noop)
        self.worker.start()

    def run(self, orchestrator: str, value: int) -> tuple[float, int, int]:
        from durabletask.client import OrchestrationStatus

        started = time.perf_counter()
        iid = self.client.schedule_new_orchestration(self.orchestrators[orchestrator], input=value)
        state = self.client.wait_for_orchestration_completion(iid, timeout=600)
        elapsed = time.perf_counter() - started
        assert state is not None and state.runtime_status == OrchestrationStatus.COMPLETED, state
        return elapsed, json.loads(state.serialized_output), 0

    def close(self) -> None:
        self.worker.stop()
        self.backend.stop()


# ---------------------------------------------------------------------------------- main
def measure(runner, orchestrator: str, value: int, repeat: int) -> dict:
    times = []
    episodes = 0
    for _ in range(repeat):
        elapsed, _output, episodes = runner.run(orchestrator, value)
        times.append(elapsed)
    return {"seconds": statistics.median(times), "all_seconds": [round(t, 4) for t in times], "episodes": episodes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="fan-out size (default 1000)")
    parser.add_argument("--subs", type=int, default=100, help="sub-orchestrations (default 100, 5 activities each)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the median is reported")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    n, subs = args.n, args.subs
    results: dict = {"n": n, "subs": subs, "activities_per_sub": 5, "repeat": args.repeat, "cpus": os.cpu_count()}

    with tempfile.TemporaryDirectory(prefix="devhost-bench-") as tmp:
        devhost = DevhostRunner(tmp)
        devhost.run("bench_fanout", 50)  # warm-up: imports, first SQLite file
        # the ladder N/2 .. 4N interleaved, so drift (other load, CPU frequency) hits all sizes alike
        ladder = [n // 2, n, 2 * n, 4 * n]
        runs: dict[int, list] = {size: [] for size in ladder}
        for _ in range(args.repeat):
            for size in ladder:
                runs[size].append(devhost.run("bench_fanout", size))
        ladder_seconds = {size: statistics.median(t for t, _, _ in runs[size]) for size in ladder}
        dh_fan = {"seconds": ladder_seconds[n],
                  "episodes": sorted(e for _, _, e in runs[n])[len(runs[n]) // 2]}
        dh_sub = measure(devhost, "bench_parent", subs, args.repeat)

    dt_runner = DurableTaskRunner()
    try:
        dt_runner.run("bench_fanout", 50)  # warm-up
        dt_fan = measure(dt_runner, "bench_fanout", n, args.repeat)
        dt_sub = measure(dt_runner, "bench_parent", subs, args.repeat)
    finally:
        dt_runner.close()

    def rate(activities: int, m: dict) -> float:
        return activities / m["seconds"]

    sub_activities = subs * 5
    results["devhost"] = {
        "fanout_seconds": round(dh_fan["seconds"], 4), "fanout_activities_per_s": round(rate(n, dh_fan), 1),
        "fanout_episodes": dh_fan["episodes"],
        "suborch_seconds": round(dh_sub["seconds"], 4), "suborch_activities_per_s": round(rate(sub_activities, dh_sub), 1),
        "suborch_episodes": dh_sub["episodes"],
    }
    results["durabletask_in_memory"] = {
        "fanout_seconds": round(dt_fan["seconds"], 4), "fanout_activities_per_s": round(rate(n, dt_fan), 1),
        "suborch_seconds": round(dt_sub["seconds"], 4), "suborch_activities_per_s": round(rate(sub_activities, dt_sub), 1),
    }
    results["ratio_devhost_over_durabletask"] = {
        "fanout": round(rate(n, dh_fan) / rate(n, dt_fan), 2),
        "suborch": round(rate(sub_activities, dh_sub) / rate(sub_activities, dt_sub), 2),
    }
    xs = [math.log(size) for size in ladder]
    ys = [math.log(ladder_seconds[size]) for size in ladder]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    exponent = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    scaling = 2 ** exponent
    doublings = {f"{a}->{b}": round(ladder_seconds[b] / ladder_seconds[a], 2) for a, b in zip(ladder, ladder[1:])}
    results["scaling"] = {"ladder_seconds": {str(k): round(v, 4) for k, v in ladder_seconds.items()},
                          "doublings": doublings, "exponent": round(exponent, 3), "ratio": round(scaling, 2),
                          "limit": 2.2, "ok": scaling <= 2.2}

    print(f"devhost (SQLite)      fan-out {n}: {results['devhost']['fanout_activities_per_s']:>8} activities/s "
          f"({dh_fan['seconds']:.3f} s, {dh_fan['episodes']} episodes)")
    print(f"durabletask in-memory fan-out {n}: {results['durabletask_in_memory']['fanout_activities_per_s']:>8} activities/s "
          f"({dt_fan['seconds']:.3f} s)")
    print(f"devhost (SQLite)      {subs} sub-orchestrations x 5: {results['devhost']['suborch_activities_per_s']:>8} activities/s "
          f"({dh_sub['seconds']:.3f} s, {dh_sub['episodes']} episodes)")
    print(f"durabletask in-memory {subs} sub-orchestrations x 5: "
          f"{results['durabletask_in_memory']['suborch_activities_per_s']:>8} activities/s ({dt_sub['seconds']:.3f} s)")
    print(f"ratio devhost/durabletask: fan-out {results['ratio_devhost_over_durabletask']['fanout']}x, "
          f"sub-orchestrations {results['ratio_devhost_over_durabletask']['suborch']}x")
    print(f"scaling: doublings {doublings}; fitted time ~ N^{exponent:.2f}, so time(2N)/time(N) = {scaling:.2f} "
          f"(limit 2.2) -> {'ok' if scaling <= 2.2 else 'QUADRATIC?'}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
