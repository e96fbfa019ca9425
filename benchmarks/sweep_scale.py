"""Benchmark: the health sweep over a seeded fleet of 1,000 / 4,000 / 10,000 instances (issue #15).

Setup: the emulator with N managed app instances seeded at once (admin ``POST /_emulator/seed-fleet``:
the custom SCIM template, the correlation tag, one job each; 49 of 50 steady, 1 of 50 quarantined
for its credentials), devhost running ``function_app.py`` with the default sweep settings
(``HEALTH_SWEEP_PAGE_SIZE``, ``HEALTH_SWEEP_MAX_IN_FLIGHT``). For each size the sweep is started
through the Durable HTTP API and timed from the start to its completion.

Printed per size: wall seconds, devhost CPU seconds (the app), the emulator's CPU seconds (it runs
in this process; Graph's side, not the app's), orchestrator episodes and history events
replayed (devhost's engine counts them: ``GET /admin/host/status``), the largest single history
(events and bytes) and the total of the sweep's histories, Graph requests (reads) per instance,
the output's size, whether the blob report holds one line per instance; then the fitted exponent of
wall time and of replayed events against N (least squares on log-log, all sizes). Targets (not
asserted): exponent <= 1.15, 10,000 in <= 120 s, 1.0 Graph read per instance, output <= 256 KB.
The last line is one JSON object.

Run: ``python benchmarks/sweep_scale.py [--sizes 1000,4000,10000]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/polling.py, shared by the test stacks
sys.path.insert(0, str(ROOT / "tests" / "workflow"))

CUSTOM_TEMPLATE = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"  # the emulator's non-gallery (custom SCIM) template
STATES = {"steady": 49, "quarantined": 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000,10000")
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    from support import Stack  # the workflow tests' stack: emulator + devhost subprocess

    from core.settings import SETTINGS

    tag = next(s.default for s in SETTINGS if s.name == "PROVISIONING_CORRELATION_TAG")
    work = Path(tempfile.mkdtemp(prefix="sweep-scale-"))
    stack = Stack(work, time_scale=1.0)
    runs = []
    try:
        for n in sizes:
            runs.append(_run(stack, n, tag, args.timeout))
            log(json.dumps(runs[-1]))
    finally:
        stack.stop()
    figures = {"sizes": sizes, "runs": runs,
               "wallExponent": _exponent(sizes, [r["wallSeconds"] for r in runs]),
               "replayExponent": _exponent(sizes, [r["replayedEvents"] for r in runs]),
               "cpuExponent": _exponent(sizes, [r["devhostCpuSeconds"] for r in runs]),
               "emulatorCpuExponent": _exponent(sizes, [r["emulatorCpuSeconds"] for r in runs])}
    for run in runs:
        print(" ".join(f"{k}={v}" for k, v in run.items()))
    print(f"exponents: wall {figures['wallExponent']}, replay {figures['replayExponent']}, "
          f"devhost cpu {figures['cpuExponent']}, emulator cpu {figures['emulatorCpuExponent']}")
    print(json.dumps(figures))
    ok = all(r["completed"] and r["total"] == r["instances"] and r["reportLines"] == r["instances"] for r in runs)
    return 0 if ok else 1


def _run(stack, n: int, tag: str, timeout: float) -> dict:
    admin = stack.emulator.admin
    admin.reset()
    admin.seed_fleet(n, tag, CUSTOM_TEMPLATE, prefix=f"Fleet{n}", states=STATES)
    admin.clear_requests()
    before_cpu, before = _cpu_seconds(stack.host.pid), _durable_counters(stack)
    before_emulator = time.process_time()  # the emulator runs in this process (threads)
    sweep_id = f"sweep-scale-{n}"
    started = time.monotonic()
    # the options the timer sends with the default settings (sweepPageSize among them: the paged sweep)
    from core.workflow_options import WorkflowOptions

    options = WorkflowOptions().to_dict(settings_only=True)
    response = stack.host.durable_request("POST", f"orchestrators/health_sweep/{sweep_id}", json={"options": options})
    assert response.status_code == 202, response.text
    status = stack.host.wait_for_instance(sweep_id, timeout=timeout, poll=0.5)
    wall = time.monotonic() - started
    emulator_cpu = time.process_time() - before_emulator
    after_cpu, after = _cpu_seconds(stack.host.pid), _durable_counters(stack)
    output = status.get("output") or {}
    graph = [e for e in stack.graph_requests(kind="graph")]
    histories = _histories(stack.root / "devhost", sweep_id)
    return {
        "instances": n,
        "completed": status.get("runtimeStatus") == "Completed",
        "total": output.get("total"),
        "pages": output.get("pages"),
        "wallSeconds": round(wall, 1),
        "devhostCpuSeconds": round(after_cpu - before_cpu, 1),
        "emulatorCpuSeconds": round(emulator_cpu, 1),
        "episodes": after["episodes"] - before["episodes"],
        "replayedEvents": after["replayedEvents"] - before["replayedEvents"],
        "largestHistoryEvents": histories["largestEvents"],
        "largestHistoryBytes": histories["largestBytes"],
        "historyBytesTotal": histories["totalBytes"],
        "graphRequestsPerInstance": round(len(graph) / n, 3),
        "graphReadsPerInstance": round(len([e for e in graph if e["method"] == "GET"]) / n, 3),
        "outputBytes": len(json.dumps(output)),
        "unhealthy": len(output.get("unhealthy") or []),
        "reportLines": _report_lines(stack, output.get("report") or {}),
    }


def _durable_counters(stack) -> dict:
    response = stack.host.session.get(stack.host.url("/admin/host/status"),
                                      headers={"x-functions-key": stack.host.master_key}, timeout=30)
    return response.json()["durable"]


def _cpu_seconds(pid: int) -> float:
    """utime + stime of the devhost process and its reaped children, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def _histories(state_dir: Path, sweep_id: str) -> dict:
    largest_events = largest_bytes = total = 0
    for path in state_dir.rglob("*"):
        if not (path.is_file() and path.suffix in {".db", ".sqlite", ".sqlite3"}):
            continue
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            try:
                rows = db.execute("SELECT COUNT(*), SUM(LENGTH(event)) FROM history WHERE instance_id = ? "
                                  "OR instance_id LIKE ? GROUP BY instance_id",
                                  (sweep_id, f"{sweep_id}:%")).fetchall()
            except sqlite3.Error:
                continue
        for events, size in rows:
            largest_events, largest_bytes = max(largest_events, events), max(largest_bytes, size or 0)
            total += size or 0
    return {"largestEvents": largest_events, "largestBytes": largest_bytes, "totalBytes": total}


def _report_lines(stack, report: dict) -> int:
    from azure.storage.blob import BlobServiceClient

    if not report.get("blobName"):
        return 0
    blob = BlobServiceClient.from_connection_string(stack.storage).get_blob_client(report["container"],
                                                                                   report["blobName"])
    return sum(1 for line in blob.download_blob().readall().splitlines() if line.strip())


def _exponent(sizes: list[int], values: list[float]) -> float | None:
    points = [(math.log(n), math.log(v)) for n, v in zip(sizes, values) if v and v > 0]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return round(sum((x - mx) * (y - my) for x, y in points) / den, 3) if den else None


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
