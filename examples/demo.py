"""``make demo``: provision the demo batch end to end on the local emulator and devhost.

What it does, in order: starts the emulator (``python -m emulator --port 0 --env-file ...``, its
provisioning clock sped up), starts devhost on ``function_app.py`` with the emulator's environment
and Azurite storage, runs the preflight check (``GET /api/preflight`` with the function key, the
same call a deployer makes after ``azd up``) and shows its table - stopping there if a check
failed -, shows the plan of ``examples/demo-batch.json`` (``POST /api/plans``: create / adopt /
alreadyConfigured per instance, no write), submits it through the HTTP trigger with the
function key, shows live progress (one line per instance: updated in place on a terminal, a plain
line per change otherwise), prints the final report as a table, writes it as JSON
(``out/demo-report.json``), stops what it started, and exits 0 only when every instance ended as
``examples/demo-expected.json`` says the emulator's scenarios make it end.

Run: ``python -m examples.demo [--time-scale 30] [--timeout 170]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}

#: settings for a fast local run (the defaults are sized for the real Graph service)
DEMO_SETTINGS = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "HEALTH_SWEEP_SCHEDULE": "0 0 * * * *",
    "MONITOR_FIRST_POLL_SECONDS": "1",
    "MONITOR_MAX_POLL_SECONDS": "3",
    "MONITOR_DEADLINE_SECONDS": "600",
    "ACTIVITY_RETRY_FIRST_INTERVAL_SECONDS": "1",
    "VISIBILITY_POLL_SECONDS": "0.5",
    "PROVISIONING_LOG_MIN_INTERVAL_SECONDS": "2",
    "PYTHON_THREADPOOL_THREAD_COUNT": "16",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default=str(ROOT / "examples" / "demo-batch.json"))
    parser.add_argument("--expected", default=str(ROOT / "examples" / "demo-expected.json"))
    parser.add_argument("--out", default=str(ROOT / "out" / "demo-report.json"))
    parser.add_argument("--work-dir", default=str(ROOT / "out" / "demo"), help="emulator and devhost state")
    parser.add_argument("--time-scale", type=float, default=30.0, help="emulator seconds per real second")
    parser.add_argument("--timeout", type=float, default=170.0, help="give up after this many seconds")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from devhost.testing import start_devhost
    from emulator.testing import start_emulator_process

    batch = json.loads(Path(args.batch).read_text())
    expected = json.loads(Path(args.expected).read_text())["instances"]
    work = Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    say(f"starting the emulator (time scale x{args.time_scale:g}) and devhost ...")
    emulator = start_emulator_process(state_dir=work / "emulator", time_scale=args.time_scale)
    host = None
    try:
        host = start_devhost(ROOT / "function_app.py", work / "devhost", env={**emulator.env, **DEMO_SETTINGS},
                             timeout=90)
        if not preflight(host):
            return 1
        plan = host.post("/api/plans", json=batch)  # what the request would do; writes nothing
        if plan.status_code == 200:
            say(f"plan before submitting (POST /api/plans, no write): {plan.json()['counts']}")
        say(f"devhost at {host.base_url}; submitting {len(batch['instances'])} instances "
            f"(request {batch['requestId']}) to POST /api/provisioning-requests")
        response = host.post("/api/provisioning-requests", json=batch)
        if response.status_code != 202:
            say(f"submission refused: HTTP {response.status_code} {response.text[:2000]}")
            return 1
        batch_id = response.json()["id"]
        summary = watch(host, batch_id, deadline=started + args.timeout)
        status = host.get_status(batch_id) or {}
        report = status.get("output") if isinstance(status.get("output"), dict) else {"summary": summary}
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        ok = print_table(report.get("instances") or summary.get("instances") or [], expected)
        say(f"report written to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}; "
            f"{time.monotonic() - started:.0f} s in all")
        say("every instance ended as expected" if ok else "SOME INSTANCES DID NOT END AS EXPECTED")
        return 0 if ok and summary.get("runtimeStatus") == "Completed" else 1
    except TimeoutError as exc:
        say(f"demo timed out: {exc}")
        return 1
    finally:
        if host is not None:
            host.stop()
        emulator.stop()


def preflight(host: Any) -> bool:
    """``GET /api/preflight`` through devhost; print its table; True when every check passed."""
    from core.preflight import format_report

    say("preflight: GET /api/preflight")
    response = host.get("/api/preflight", timeout=120)
    try:
        report = response.json()
    except ValueError:
        say(f"preflight answered HTTP {response.status_code} without a report: {response.text[:500]}")
        return False
    say(format_report(report))
    if response.status_code != 200:
        say(f"preflight answered HTTP {response.status_code}: fix the failed checks above before provisioning")
        return False
    return True


def watch(host: Any, batch_id: str, deadline: float, stream: TextIO = sys.stdout) -> dict[str, Any]:
    """Poll the batch summary until it finishes, drawing one line per instance."""
    tty = stream.isatty()
    drawn = 0
    last: dict[str, str] = {}
    t0 = time.monotonic()
    while True:
        response = host.get(f"/api/provisioning-requests/{batch_id}")
        summary = response.json() if response.status_code == 200 else {}
        lines = [_line(view) for view in summary.get("instances") or []]
        counts = summary.get("progress") or summary.get("counts") or {}
        header = f"[{time.monotonic() - t0:5.1f}s] {summary.get('runtimeStatus', '?'):<10} " + \
            " ".join(f"{k}={v}" for k, v in counts.items())
        if tty:
            if drawn:
                stream.write(f"\x1b[{drawn}F")
            for text in [header] + lines:
                stream.write("\x1b[2K" + text[: shutil.get_terminal_size((120, 20)).columns - 1] + "\n")
            drawn = len(lines) + 1
        else:
            for view, text in zip(summary.get("instances") or [], lines):
                key = view.get("displayName") or ""
                if last.get(key) != text:
                    stream.write(f"[{time.monotonic() - t0:5.1f}s] {text}\n")
                    last[key] = text
        stream.flush()
        if summary.get("runtimeStatus") in TERMINAL:
            return summary
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} still {summary.get('runtimeStatus')}")
        time.sleep(1.0)


def _line(view: dict[str, Any]) -> str:
    name = (view.get("displayName") or "?")[:28]
    state = view.get("outcome") or view.get("step") or "queued"
    if view.get("withFailures"):
        state = f"{state} ({view.get('failedObjects')} failed)"
    reason = f" - {view['reason']}" if view.get("reason") else ""
    return f"  {name:<28} {state:<22}{reason}"[:160]


def print_table(instances: list[dict[str, Any]], expected: dict[str, dict[str, Any]]) -> bool:
    """Print the final report; return True when every instance matches its expected outcome."""
    rows = [("Instance", "Outcome", "Expected", "OK", "Setup s", "Total s", "Polls", "Reason")]
    all_ok = len(instances) == len(expected)
    for inst in instances:
        want = expected.get(inst.get("displayName"), {})
        ok = matches(inst, want)
        all_ok &= ok
        timings = inst.get("timings") or {}
        outcome = inst.get("outcome") or "-"
        if inst.get("failedObjects"):
            outcome = f"{outcome} ({inst['failedObjects']} failed)"
        rows.append((inst.get("displayName") or "?", outcome, want.get("outcome", "?"),
                     "yes" if ok else "NO", _num(timings.get("setupSeconds")), _num(timings.get("totalSeconds")),
                     str(inst.get("polls") or 0), (inst.get("reason") or "")[:70]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
    print()
    return all_ok


def matches(inst: dict[str, Any], want: dict[str, Any]) -> bool:
    """An instance matches when its outcome (and, if given, failed step, reason and whether a steady
    instance's cycle failed objects) is the expected one."""
    if not want or inst.get("outcome") != want.get("outcome"):
        return False
    if want.get("step") and (inst.get("error") or {}).get("step", want["step"]) != want["step"] \
            and want["step"] not in (inst.get("reason") or ""):
        return False
    if want.get("reason") and want["reason"] not in (inst.get("reason") or ""):
        return False
    if "withFailures" in want and bool(inst.get("failedObjects")) != bool(want["withFailures"]):
        return False  # steady state with failed objects is told apart from a clean one
    return True


def _num(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else "-"


def say(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
