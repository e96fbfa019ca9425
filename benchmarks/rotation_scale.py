"""Benchmark: rotate one Key Vault secret shared by N instances (default 300) against Graph's write limit.

Setup: as workflow_scale.py - the emulator with its identity write limit at Graph's sustained rate
(20 writes per 1-second window), devhost running ``function_app.py``, N custom-SCIM instances
provisioned through the HTTP trigger, all referencing Key Vault secret ``scim-contoso-token``. Then
a new version of that secret (same valid token) goes into Key Vault and ``POST /api/rotations``
starts ``rotate_secret``; the clock runs from the POST to the rotation's completion.

Printed: instances rotated, wall time, the rotation's Graph requests and writes per instance, 429s,
the lower bound ``accepted writes / 20 per s`` and the ratio wall/bound (target <= 1.3). The last
line is one JSON object.

Run: ``python benchmarks/rotation_scale.py [--instances 300] [--max-in-flight 20]``.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--max-in-flight", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)

    from support import Stack, make_batch  # the workflow tests' stack: emulator + devhost subprocess

    faults = {"throttling": {"writes": {"limit": WRITE_LIMIT, "windowSeconds": 1}}}
    instant = {"cycle_start_delay_seconds": 0.0, "initial_seconds_per_object_min": 0.0,
               "initial_seconds_per_object_max": 0.0, "minimum_cycle_seconds": 0.0}
    work = Path(tempfile.mkdtemp(prefix="rotation-scale-"))
    stack = Stack(work, time_scale=1.0, faults=faults, provisioning_settings=instant,
                  env={"MONITOR_FIRST_POLL_SECONDS": "1", "MONITOR_MAX_POLL_SECONDS": "2",
                       "ROTATION_MAX_IN_FLIGHT": str(args.max_in_flight)})
    try:
        log(f"provisioning {args.instances} instances ...")
        batch_id = stack.submit(make_batch(f"rotation-scale-{args.instances}", args.instances, prefix="Rotate"))
        stack.host.wait_for_instance(batch_id, timeout=args.timeout, poll=0.5)
        version = stack.emulator.admin.seed(secrets={"scim-contoso-token": "demo-scim-token"})["secrets"][0]["version"]
        stack.emulator.admin.clear_requests()
        log("rotating ...")
        started = time.monotonic()
        response = stack.request("POST", "/api/rotations", json={"secretName": "scim-contoso-token", "version": version})
        response.raise_for_status()
        status = stack.host.wait_for_instance(response.json()["id"], timeout=args.timeout, poll=0.5)
        wall = time.monotonic() - started
        report = status.get("output") or {}
        requests_log = stack.graph_requests(kind="graph")
    finally:
        stack.stop()
    writes = [e for e in requests_log if e["method"] in WRITE_METHODS and e["status"] != 429]
    bound = len(writes) / WRITE_LIMIT
    n = args.instances
    figures = {
        "instances": n,
        "rotated": (report.get("counts") or {}).get("rotated", 0),
        "counts": report.get("counts"),
        "maxInFlight": args.max_in_flight,
        "wallSeconds": round(wall, 1),
        "graphRequestsPerInstance": round(len(requests_log) / n, 2),
        "writesPerInstance": round(len(writes) / n, 2),
        "throttled429": len([e for e in requests_log if e["status"] == 429]),
        "lowerBoundSeconds": round(bound, 1),
        "ratioToLowerBound": round(wall / bound, 2) if bound else None,
    }
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    print(json.dumps(figures))
    return 0 if figures["rotated"] == n else 1


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
