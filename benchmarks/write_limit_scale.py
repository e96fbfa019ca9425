"""Graph's write limit held app-wide: several app worker processes writing to one tenant.

Setup: the emulator with its identity write limit at Graph's sustained rate, ``--rate`` writes per
second (default 20, Graph's 3,000 per 150 s per app and tenant) as a bucket of one second (burst
of ``--rate``: stricter than Graph's 150-s window), Azurite as the app's storage account, and
``--processes`` separate OS processes (default 4, as ``FUNCTIONS_WORKER_PROCESS_COUNT=4`` or four
instances) each running the production Graph client (core.clients) from ``--threads`` threads,
together sending ``--writes`` PATCHes. Each process paces through core/graph/write_limit.py
(``GRAPH_WRITES_PER_SECOND`` = the rate, schedule in Azurite). ``--compare`` also runs the same
load with ``GRAPH_WRITE_LIMIT_STORAGE=none`` (each process paces alone: the behaviour before).

Prints per-mode figures and one JSON object (last line): 429s per accepted write (counted in the
emulator's request log), wall time over the bound ``writes / rate``, storage calls per write.
Targets (what the app-wide pacer was built to meet): 429s <= 5 % of accepted writes, wall <= 1.1 x the bound.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
for path in (REPO_ROOT, REPO_ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from _write_limit_worker import run_workers, start_azurite, worker_env  # noqa: E402

CUSTOM_TEMPLATE_ID = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"  # the emulator's non-gallery ("Custom") template


def measure(emu, sp_id: str, storage: str, args: argparse.Namespace) -> dict:
    emu.admin.set_faults(throttling={"enabled": True, "writes": {"limit": args.rate, "windowSeconds": 1}})
    emu.admin.clear_requests()
    run = run_workers(sp_id, args.processes, args.writes, args.threads, worker_env(emu.env, storage, args.rate))
    statuses = [e["status"] for e in emu.admin.requests(kind="graph", method="PATCH")["value"]]
    accepted = sum(1 for s in statuses if s < 300)
    throttled = statuses.count(429)
    workers = run["workers"]
    wall = run["end"] - run["start"]
    bound = args.writes / args.rate
    figures = {
        "accepted": accepted,
        "throttled429": throttled,
        "throttledPerAccepted": round(throttled / max(1, accepted), 4),
        "failedWrites": sum(w["failed"] for w in workers),
        "wallSeconds": round(wall, 2),
        "boundSeconds": round(bound, 2),
        "wallOverBound": round(wall / bound, 3),
        "sharedSchedule": all(w["shared"] for w in workers),
        "storageCallsPerWrite": round(sum(w["storageCalls"] for w in workers) / max(1, args.writes), 3),
        "storageConflicts": sum(w["storageConflicts"] for w in workers),
        "fallbackReservations": sum(w["localReservations"] for w in workers) if storage != "none" else None,
    }
    print(f"{'shared' if storage != 'none' else 'per-process'}: {json.dumps(figures)}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--writes", type=int, default=800, help="PATCHes in all (split over the processes)")
    parser.add_argument("--threads", type=int, default=8, help="threads per process")
    parser.add_argument("--rate", type=int, default=20, help="writes per second: the emulator's limit and the app's")
    parser.add_argument("--compare", action="store_true", help="also run with per-process pacing only")
    args = parser.parse_args()

    from core import clients
    from core.graph import applications
    from emulator.testing import start_emulator

    state = tempfile.mkdtemp(prefix="write-limit-")
    azurite, storage = start_azurite(state)
    emu = start_emulator(port=0)
    try:
        os.environ.update(emu.env)
        clients.reset()
        sp_id = applications.instantiate(clients.get_graph(), CUSTOM_TEMPLATE_ID, "Write limit")["servicePrincipal"]["id"]
        result = {"processes": args.processes, "threadsPerProcess": args.threads, "writes": args.writes,
                  "rate": args.rate, "shared": measure(emu, sp_id, storage, args)}
        if args.compare:
            emu.admin.advance(5)
            result["perProcess"] = measure(emu, sp_id, "none", args)
        shared = result["shared"]
        result["targets"] = {"throttledPerAccepted<=0.05": shared["throttledPerAccepted"] <= 0.05,
                             "wallOverBound<=1.1": shared["wallOverBound"] <= 1.1}
        print(json.dumps(result))
    finally:
        emu.stop()
        azurite.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
