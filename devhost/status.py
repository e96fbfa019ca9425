"""``python -m devhost status [INSTANCE] [--state-dir DIR]``: the operator's view of the Durable store.

Reads the engine's SQLite file directly and read-only (WAL allows this while a host is running), so
it works whether or not devhost is up. Without INSTANCE it lists instances (id, orchestrator,
runtime status, created/updated, custom status, last error); with INSTANCE it prints that instance
and a one-line-per-event summary of its current execution's history.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import sys
from typing import TextIO

from devhost.durable.history import EVENT_TYPE_NAMES
from devhost.durable.store import DB_NAME, loads_stored


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _short(text: str | None, width: int = 60) -> str:
    if text is None:
        return "-"
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _last_error(status: str, output: str | None) -> str | None:
    if status in ("Failed", "Terminated"):
        value = loads_stored(output)
        return value if isinstance(value, str) else json.dumps(value)
    return None


def _connect(state_dir: str) -> sqlite3.Connection:
    path = os.path.join(state_dir, DB_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no devhost Durable store at {path} (use --state-dir DIR)")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _list(db: sqlite3.Connection, statuses: list[str] | None, out: TextIO) -> None:
    sql = ("SELECT instance_id, name, status, created_time, last_updated_time, custom_status, output "
           "FROM instances")
    params: list = []
    if statuses:
        sql += f" WHERE status IN ({','.join('?' * len(statuses))})"
        params = statuses
    rows = db.execute(sql + " ORDER BY created_time", params).fetchall()
    if not rows:
        print("no instances", file=out)
        return
    header = ("INSTANCE", "ORCHESTRATOR", "STATUS", "CREATED", "UPDATED", "CUSTOM STATUS", "LAST ERROR")
    table = [header] + [(iid, name, status, _time(created), _time(updated), _short(custom, 30),
                         _short(_last_error(status, output), 60))
                        for iid, name, status, created, updated, custom, output in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[2]] = counts.get(r[2], 0) + 1
    print(f"\n{len(rows)} instance(s): " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), file=out)


def _event_line(ev: dict) -> str:
    kind = ev["EventType"]
    name = EVENT_TYPE_NAMES.get(kind, str(kind))
    parts = [ev.get("Timestamp", ""), name]
    if ev.get("EventId", -1) >= 0:
        parts.append(f"#{ev['EventId']}")
    for key in ("Name", "InstanceId", "TaskScheduledId", "TimerId", "FireAt"):
        if ev.get(key) is not None and not (key == "InstanceId" and kind == 0):
            parts.append(f"{key}={ev[key]}")
    for key in ("Result", "Reason", "Input"):
        if ev.get(key) is not None and kind not in (12, 13):
            parts.append(f"{key}={_short(ev[key], 50)}")
    return "  ".join(str(p) for p in parts)


def _show(db: sqlite3.Connection, instance_id: str, out: TextIO, max_events: int) -> int:
    row = db.execute("SELECT instance_id, name, execution_id, status, input, output, custom_status, created_time, "
                     "last_updated_time, parent_instance_id FROM instances WHERE instance_id=?",
                     (instance_id,)).fetchone()
    if row is None:
        print(f"no instance '{instance_id}'", file=out)
        return 1
    iid, name, execution, status, input_text, output, custom, created, updated, parent = row
    print(f"instance:      {iid}", file=out)
    print(f"orchestrator:  {name}", file=out)
    print(f"execution:     {execution}", file=out)
    print(f"status:        {status}", file=out)
    print(f"created:       {_time(created)}", file=out)
    print(f"updated:       {_time(updated)}", file=out)
    if parent:
        print(f"parent:        {parent}", file=out)
    print(f"input:         {_short(input_text, 200)}", file=out)
    print(f"custom status: {_short(custom, 200)}", file=out)
    print(f"output:        {_short(output, 200)}", file=out)
    error = _last_error(status, output)
    if error:
        print(f"last error:    {error}", file=out)
    events = [json.loads(t) for (t,) in db.execute("SELECT event FROM history WHERE instance_id=? ORDER BY idx",
                                                     (instance_id,))]
    counts: dict[str, int] = {}
    for ev in events:
        label = EVENT_TYPE_NAMES.get(ev["EventType"], str(ev["EventType"]))
        counts[label] = counts.get(label, 0) + 1
    episodes = counts.get("OrchestratorStarted", 0)
    print(f"\nhistory: {len(events)} events, {episodes} episode(s): "
          + ", ".join(f"{k} {v}" for k, v in counts.items() if k not in ("OrchestratorStarted", "OrchestratorCompleted")),
          file=out)
    shown = events if len(events) <= max_events else events[: max_events // 2] + [None] + events[-max_events // 2:]
    for ev in shown:
        if ev is None:
            print(f"  ... {len(events) - max_events} more ...", file=out)
        elif ev["EventType"] not in (12, 13):
            print("  " + _event_line(ev), file=out)
    pending = db.execute("SELECT COUNT(*) FROM messages WHERE instance_id=?", (instance_id,)).fetchone()[0]
    running = db.execute("SELECT COUNT(*) FROM activities WHERE instance_id=?", (instance_id,)).fetchone()[0]
    print(f"\nqueued: {pending} message(s), {running} activity work item(s)", file=out)
    return 0


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m devhost status",
                                     description="Show Durable orchestration instances stored by devhost")
    parser.add_argument("instance", nargs="?", help="one instance id: show its details and history")
    parser.add_argument("--state-dir", default=".devhost", help="devhost state folder (default ./.devhost)")
    parser.add_argument("--status", action="append", help="only instances with this runtime status (repeatable)")
    parser.add_argument("--max-events", type=int, default=60, help="history lines to print for one instance")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        db = _connect(args.state_dir)
    except (FileNotFoundError, sqlite3.Error) as exc:
        print(f"devhost status: {exc}", file=sys.stderr)
        return 2
    try:
        if args.instance:
            return _show(db, args.instance, out, max(2, args.max_events))
        _list(db, args.status, out)
        return 0
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
