"""Benchmark: roll a schema profile out over N instances (default 200) against Graph's write limit.

Setup: as rotation_scale.py - the emulator with its identity write limit at Graph's sustained rate
(20 writes per 1-second window) and instant provisioning cycles, devhost running ``function_app.py``,
N custom-SCIM instances provisioned through the HTTP trigger. Then ``POST /api/rollouts`` rolls
``custom-scim-department.v1`` (values only: no account leaves the target, so no wave regresses)
out: ``--canaries`` canaries (their test user provisioned on demand), then waves of ``--wave-size``,
``--pause`` seconds between two checks of a wave. The clock runs from the POST to the rollout's end.

Printed: instances changed, waves, wall time, the rollout's Graph requests and writes per instance,
429s, the lower bound ``accepted writes / 20 per s``, the ratio wall/bound, the provisioning-log
reads and their own bound (Graph's reporting API: 5 requests per 10 s, paced at
``PROVISIONING_LOG_MIN_INTERVAL_SECONDS`` = 2 s: the regression check reads each instance's cycles
there, so this bound, not the write bound, sets a rollout's pace), and the time the waves spent
waiting for their cycle after the change (at least one pause per wave). The last line is one JSON
object.

Run: ``python benchmarks/rollout_scale.py [--instances 200] [--wave-size 50] [--max-in-flight 20]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/polling.py, shared by the test stacks
sys.path.insert(0, str(ROOT / "tests" / "workflow"))

WRITE_LIMIT = 20  # writes per second: Graph's 3,000 per 150 s per app and tenant
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
LOG_READ_INTERVAL = 2.0  # seconds between provisioning-log requests (PROVISIONING_LOG_MIN_INTERVAL_SECONDS)
PROFILE = "custom-scim-department.v1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--canaries", type=int, default=2)
    parser.add_argument("--wave-size", type=int, default=50)
    parser.add_argument("--pause", type=int, default=2)
    parser.add_argument("--max-in-flight", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)

    from core import model
    from support import Stack, make_batch  # the workflow tests' stack: emulator + devhost subprocess

    faults = {"throttling": {"writes": {"limit": WRITE_LIMIT, "windowSeconds": 1}}}
    instant = {"cycle_start_delay_seconds": 0.0, "initial_seconds_per_object_min": 0.0,
               "initial_seconds_per_object_max": 0.0, "minimum_cycle_seconds": 0.0}
    work = Path(tempfile.mkdtemp(prefix="rollout-scale-"))
    stack = Stack(work, time_scale=1.0, faults=faults, provisioning_settings=instant,
                  env={"MONITOR_FIRST_POLL_SECONDS": "1", "MONITOR_MAX_POLL_SECONDS": "2"})
    try:
        log(f"provisioning {args.instances} instances ...")
        batch_id = stack.submit(make_batch(f"rollout-scale-{args.instances}", args.instances, prefix="Rollout"))
        provisioned = stack.host.wait_for_instance(batch_id, timeout=args.timeout, poll=0.5)
        if provisioned.get("runtimeStatus") != "Completed":
            raise RuntimeError(f"the batch ended {provisioned.get('runtimeStatus')}")
        keys = [model.instance_key(f"Rollout {i:03d}") for i in range(1, args.instances + 1)]
        canaries = sorted(keys)[:args.canaries]
        directory = stack.emulator.state.directory
        pilot = next(g for g in directory.groups.values() if g["displayName"] == "SaaS Pilot")
        test_user = str(directory.members[pilot["id"]][0])
        stack.emulator.admin.clear_requests()
        log("rolling out ...")
        started = time.monotonic()
        response = stack.request("POST", "/api/rollouts", json={
            "rolloutId": f"scale-{args.instances}", "profile": PROFILE, "selector": {"instances": keys},
            "canaries": canaries, "canaryTestUsers": {k: {"objectId": test_user} for k in canaries},
            "waveSize": args.wave_size, "pauseSeconds": args.pause, "maxChecks": 100,
            "maxInFlight": args.max_in_flight})
        if response.status_code != 202:
            raise RuntimeError(f"POST /api/rollouts answered {response.status_code}: {response.text[:2000]}")
        status = stack.host.wait_for_instance(response.json()["id"], timeout=args.timeout, poll=0.5)
        wall = time.monotonic() - started
        report = status.get("output") or {}
        requests_log = stack.graph_requests(kind="graph")
    finally:
        stack.stop()
    writes = [e for e in requests_log if e["method"] in WRITE_METHODS and e["status"] != 429]
    bound = len(writes) / WRITE_LIMIT
    log_reads = [e for e in requests_log if e["method"] == "GET" and "/auditLogs/provisioning" in str(e.get("path"))]
    n = args.instances
    waves = report.get("waves") or []
    results = [r for w in waves for r in (w.get("results") or {}).values()]
    figures = {
        "instances": n,
        "phase": report.get("phase"),
        "waves": len(waves),
        "applied": sum(1 for r in results if r.get("applied")),
        "regressions": sum(1 for r in results if r.get("regression")),
        "canaryOnDemand": [((r.get("onDemand") or {}).get("outcome")) for r in (waves[0].get("results") or {}).values()]
        if waves else [],
        "waveSize": args.wave_size,
        "maxInFlight": args.max_in_flight,
        "pauseSeconds": args.pause,
        "wallSeconds": round(wall, 1),
        "graphRequestsPerInstance": round(len(requests_log) / n, 2),
        "writesPerInstance": round(len(writes) / n, 2),
        "throttled429": len([e for e in requests_log if e["status"] == 429]),
        "lowerBoundSeconds": round(bound, 1),
        "minimumPauseSeconds": len(waves) * args.pause,
        "ratioToLowerBound": round(wall / bound, 2) if bound else None,
        "logReads": len(log_reads),
        "logReadBoundSeconds": round(len(log_reads) * LOG_READ_INTERVAL, 1),
        "ratioToLogReadBound": round(wall / (len(log_reads) * LOG_READ_INTERVAL), 2) if log_reads else None,
    }
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    print(json.dumps(figures))
    return 0 if figures["phase"] == "completed" and figures["applied"] == n else 1


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
