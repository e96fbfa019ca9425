"""Benchmark: provision 200 instances through the whole workflow against Graph's write limit.

Setup: the emulator with its identity write limit at Graph's sustained rate (20 writes per
1-second window) and instant provisioning cycles; devhost running ``function_app.py`` with the
default batch concurrency (``BATCH_MAX_IN_FLIGHT``) and fast monitor polling. One request of N
instances (custom SCIM app, one group assigned) goes in through the HTTP trigger; the clock runs
from the POST to the batch's completion.

Printed: Graph requests per instance (setup, status polls and provisioning-log reads separately),
429s received, wall time, the lower bound ``accepted writes / 20 per s`` and the ratio wall/bound
(target <= 1.3), and devhost's peak resident memory. From devhost's task hub (its SQLite file, read
after the run): devhost's CPU seconds, the largest history (events and bytes, and which
orchestration), the batch's own history, and the events replayed - every episode of an
orchestration replays its history so far, so per history the replayed events are the sum, over its
episodes, of its length when the episode began (``replayedEvents`` in all, ``maxReplayedEvents`` in
the worst history). A batch over sub-batches keeps every history bounded by the slice size
(``--sub-batch-size``, default the setting's); the replay exponent is measured by running two sizes
and fitting ``log(replayed2/replayed1) / log(N2/N1)``. The last line is one JSON object.

The emulator keeps its last 100,000 requests only; the script reads the log every 15 s and keeps
every Graph request itself (a 5,000-instance batch sends about 100,000: read once at the end, the
oldest were gone, and a first 5,000 run printed 5.78 writes per instance and 1.22x a bound 20 %
too low).

Also printed: the batch's input as the status API returns it (``batchInputBytes``: a request larger
than one sub-batch travels as a blob reference, triggers/submission.py) and the machine's CPU count and
load average at the end (the machine may be shared; load inflates wall time).

Run: ``python benchmarks/workflow_scale.py [--instances 200] [--sub-batch-size 100]``.
"""

from __future__ import annotations

import argparse
import json
import re
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
JOB_POLL = re.compile(r"/servicePrincipals/[^/]+/synchronization/jobs/[^/]+$")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--sub-batch-size", type=int, default=None,
                        help="BATCH_SUB_BATCH_SIZE for the run (default: the setting's default)")
    args = parser.parse_args(argv)

    from support import Stack, make_batch  # the workflow tests' stack: emulator + devhost subprocess

    faults = {"throttling": {"writes": {"limit": WRITE_LIMIT, "windowSeconds": 1}}}
    instant = {"cycle_start_delay_seconds": 0.0, "initial_seconds_per_object_min": 0.0,
               "initial_seconds_per_object_max": 0.0, "minimum_cycle_seconds": 0.0}
    work = Path(tempfile.mkdtemp(prefix="workflow-scale-"))
    env = {"MONITOR_FIRST_POLL_SECONDS": "1", "MONITOR_MAX_POLL_SECONDS": "2"}
    if args.sub_batch_size:
        env["BATCH_SUB_BATCH_SIZE"] = str(args.sub_batch_size)
    stack = Stack(work, time_scale=1.0, faults=faults, provisioning_settings=instant, env=env)
    try:
        body = make_batch(f"scale-{args.instances}", args.instances, prefix="Scale")
        stack.emulator.admin.clear_requests()
        log(f"submitting {args.instances} instances ...")
        started = time.monotonic()
        batch_id = stack.submit(body)
        last = ""
        collected = _RequestLog(stack)
        while True:
            collected.drain_every(15.0)
            status = stack.host.get_status(batch_id) or {}
            if status.get("runtimeStatus") in {"Completed", "Failed", "Terminated"}:
                break
            counts = json.dumps((status.get("customStatus") or {}).get("counts") or {})
            if counts != last:
                log(f"[{time.monotonic() - started:6.1f}s] {counts}")
                last = counts
            if time.monotonic() - started > args.timeout:
                raise TimeoutError(f"batch not done after {args.timeout} s")
            time.sleep(0.5)
        wall = time.monotonic() - started
        peak_kib = _peak_rss_kib(stack.host.pid)
        cpu = _cpu_seconds(stack.host.pid)
        report = status.get("output") or {}
        collected.drain_every(0.0)
        figures = _figures(collected.entries(), args.instances, wall, report, peak_kib)
        figures["devhostCpuSeconds"] = cpu
        figures.update(_histories(work / "devhost", batch_id))
        figures["outputBytes"] = len(json.dumps(report).encode())
        figures["batchInputBytes"] = len(json.dumps(status.get("input")).encode())
        # the machine is shared: its load while the batch ran (1-minute average at the end, 15-minute)
        import os

        figures["cpuCount"] = os.cpu_count()
        figures["loadAverage1m15mAtEnd"] = [round(v, 2) for v in (os.getloadavg()[0], os.getloadavg()[2])]
    finally:
        stack.stop()
    for key, value in figures.items():
        print(f"{key:>32}: {value}")
    print(json.dumps(figures))
    return 0 if figures["steadyState"] == args.instances else 1


class _RequestLog:
    """Every Graph request of the run. The emulator keeps its last 100,000 requests only (a 5,000-instance
    batch sends more), so the log is read every few seconds (``since`` the last read) and kept here;
    an entry read twice (the boundary of two reads) is counted once."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.seen: dict[str, dict] = {}
        self.since = 0.0
        self.read_at = 0.0

    def drain_every(self, seconds: float) -> None:
        if time.monotonic() - self.read_at < seconds:
            return
        self.read_at = time.monotonic()
        for entry in self.stack.graph_requests(kind="graph", since=self.since):
            self.seen.setdefault(json.dumps(entry, sort_keys=True), entry)
            self.since = max(self.since, float(entry.get("realTime") or 0.0))

    def entries(self) -> list[dict]:
        return sorted(self.seen.values(), key=lambda e: float(e.get("realTime") or 0.0))


def _figures(log_entries: list[dict], n: int, wall: float, report: dict, peak_kib: int | None) -> dict:
    polls = [e for e in log_entries if e["method"] == "GET" and JOB_POLL.search(e["path"])]
    log_reads = [e for e in log_entries if "/auditLogs/provisioning" in e["path"]]
    apart = {id(e) for e in polls} | {id(e) for e in log_reads}
    setup = [e for e in log_entries if id(e) not in apart]
    throttled = [e for e in log_entries if e["status"] == 429]
    writes = [e for e in log_entries if e["method"] in WRITE_METHODS and e["status"] != 429]
    bound = len(writes) / WRITE_LIMIT
    return {
        "instances": n,
        "steadyState": (report.get("counts") or {}).get("steadyState", 0),
        "wallSeconds": round(wall, 1),
        "graphRequests": len(log_entries),
        "setupRequestsPerInstance": round(len(setup) / n, 2),
        "setupRequestsPerInstanceWithout429": round(len([e for e in setup if e["status"] != 429]) / n, 2),
        "pollRequestsPerInstance": round(len(polls) / n, 2),
        "logReadRequestsPerInstance": round(len(log_reads) / n, 2),
        "throttled429": len(throttled),
        "acceptedWrites": len(writes),
        "writesPerInstance": round(len(writes) / n, 2),
        "lowerBoundSeconds": round(bound, 1),
        "ratioToLowerBound": round(wall / bound, 2) if bound else None,
        "devhostPeakRssMiB": round(peak_kib / 1024, 1) if peak_kib else None,
        "notSteady": {i.get("displayName"): f"{i.get('outcome')}: {i.get('reason')}"[:200]
                      for i in report.get("instances") or [] if i.get("outcome") != "steadyState"},
    }


def _histories(state_dir: Path, batch_id: str) -> dict:
    """History sizes and replayed events, from devhost's task hub (see the module docstring)."""
    import sqlite3

    found = sorted(state_dir.rglob("durable.sqlite3"))
    if not found:
        return {}
    with sqlite3.connect(f"file:{found[0]}?mode=ro", uri=True) as db:
        names = dict(db.execute("SELECT instance_id, name FROM instances").fetchall())
        sizes: dict[str, list[int]] = {}
        replayed: dict[str, int] = {}
        for instance_id, event in db.execute("SELECT instance_id, event FROM history ORDER BY instance_id, idx"):
            seen = sizes.setdefault(instance_id, [0, 0])
            if event.startswith(('{"EventType":12,', '{"EventType": 12,')):  # OrchestratorStarted: an episode begins
                replayed[instance_id] = replayed.get(instance_id, 0) + seen[0]
            seen[0] += 1
            seen[1] += len(event)
    if not sizes:
        return {}
    worst = max(sizes, key=lambda i: sizes[i][1])
    most_replayed = max(replayed, key=replayed.get) if replayed else worst
    own = sizes.get(batch_id, [0, 0])
    return {
        "historyEvents": sum(v[0] for v in sizes.values()),
        "largestHistoryEvents": sizes[worst][0],
        "largestHistoryBytes": sizes[worst][1],
        "largestHistoryOrchestration": names.get(worst),
        "batchHistoryEvents": own[0],
        "batchHistoryBytes": own[1],
        "replayedEvents": sum(replayed.values()),
        "maxReplayedEvents": replayed.get(most_replayed, 0),
        "maxReplayedOrchestration": names.get(most_replayed),
    }


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of the devhost process (and its waited-for children), from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
        import os

        return round(ticks / os.sysconf("SC_CLK_TCK"), 1)
    except (OSError, ValueError, IndexError):
        return None


def _peak_rss_kib(pid: int) -> int | None:
    """VmHWM (peak resident set) of the devhost process, from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
