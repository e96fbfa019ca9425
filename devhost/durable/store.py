"""SQLite persistence of the durable engine: instances, history per execution, work queues.

One database file (``<state_dir>/durable.sqlite3``) in WAL mode with ``synchronous=NORMAL``: a
SIGKILLed process loses nothing that was committed (only an OS crash could). Every episode and every
batch of activity completions is one transaction, so after a crash the store holds either the whole
effect of an episode (history + consumed messages + new work) or none of it.

Tables:
* ``instances``: one row per instance id (current execution only).
* ``history``: the exact event JSON per (instance, index) of the current execution.
* ``messages``: orchestrator inbox (events to deliver; timers are messages with a future visible_at).
* ``activities``: activity work items, deleted in the same transaction that queues their result.
* ``meta``: key/values (virtual clock offset).

All methods run on the engine's event-loop thread; the connection is not shared across threads.
"""
from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

DB_NAME = "durable.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time REAL NOT NULL,
    last_updated_time REAL NOT NULL,
    parent_instance_id TEXT,
    parent_execution_id TEXT,
    parent_task_id INTEGER,
    history_length INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS instances_by_created ON instances(created_time);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,
    visible_at REAL NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_instance ON messages(instance_id, id);
CREATE TABLE IF NOT EXISTS activities (
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    PRIMARY KEY (instance_id, execution_id, task_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

INSTANCE_COLUMNS = ("instance_id, name, execution_id, status, input, output, custom_status, created_time, "
                    "last_updated_time, parent_instance_id, parent_execution_id, parent_task_id, history_length")


@dataclass
class InstanceRow:
    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_time: float
    last_updated_time: float
    parent_instance_id: str | None = None
    parent_execution_id: str | None = None
    parent_task_id: int | None = None
    history_length: int = 0

    def as_params(self) -> tuple:
        return (self.instance_id, self.name, self.execution_id, self.status, self.input, self.output,
                self.custom_status, self.created_time, self.last_updated_time, self.parent_instance_id,
                self.parent_execution_id, self.parent_task_id, self.history_length)


@dataclass
class Message:
    instance_id: str
    execution_id: str | None
    visible_at: float
    event: str  # JSON text
    child_result: bool = False  # a sub-orchestration's result for its parent (not stored: scheduling hint)


@dataclass
class ActivityItem:
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None


@dataclass
class EpisodeWrite:
    """Everything one episode changes; applied in one transaction by ``commit_episode``."""

    instance: InstanceRow
    reset_history: bool = False
    new_history: Sequence[tuple[int, str]] = ()
    consumed_message_ids: Sequence[int] = ()
    drop_execution_messages: str | None = None  # delete pending messages of this (ended) execution
    drop_all_messages: bool = False
    activities: Sequence[ActivityItem] = ()
    messages: Sequence[Message] = ()
    other_instances: Sequence[InstanceRow] = ()  # sub-orchestration instances created by this episode
    other_resets: Sequence[str] = ()  # their old history/messages are cleared (replaced finished instance)


class Store:
    def __init__(self, state_dir: str) -> None:
        os.makedirs(state_dir, exist_ok=True)
        self.path = os.path.join(state_dir, DB_NAME)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- meta --------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- reads -------------------------------------------------------------------------------
    def get_instance(self, instance_id: str) -> InstanceRow | None:
        row = self.db.execute(f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id=?",
                              (instance_id,)).fetchone()
        return InstanceRow(*row) if row else None

    def history(self, instance_id: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT event FROM history WHERE instance_id=? ORDER BY idx",
                                              (instance_id,))]

    def visible_messages(self, instance_id: str, now: float, limit: int) -> list[tuple[int, str | None, str]]:
        return self.db.execute(
            "SELECT id, execution_id, event FROM messages WHERE instance_id=? AND visible_at<=? ORDER BY id LIMIT ?",
            (instance_id, now, limit)).fetchall()

    def message_schedule(self) -> list[tuple[str, float]]:
        """(instance id, visible_at) of every queued message: what a restarted engine must wake up for."""
        return self.db.execute("SELECT instance_id, visible_at FROM messages").fetchall()

    def has_message_at(self, instance_id: str, visible_at: float) -> bool:
        return self.db.execute("SELECT 1 FROM messages WHERE instance_id=? AND visible_at BETWEEN ? AND ? LIMIT 1",
                               (instance_id, visible_at - 1e-6, visible_at + 1e-6)).fetchone() is not None

    def running_children(self) -> list[str]:
        """Parent instance id once per sub-orchestration of it that has not finished."""
        return [r[0] for r in self.db.execute(
            "SELECT parent_instance_id FROM instances WHERE parent_instance_id IS NOT NULL "
            "AND status IN ('Pending', 'Running', 'Suspended', 'ContinuedAsNew')")]

    def pending_events(self, instance_id: str) -> list[str]:
        """JSON text of every queued message of the instance (visible or not)."""
        return [r[0] for r in self.db.execute("SELECT event FROM messages WHERE instance_id=? ORDER BY id",
                                              (instance_id,))]

    def activity_task_ids(self, instance_id: str, execution_id: str) -> set[int]:
        """Task ids of the execution's activity work items not finished yet."""
        return {r[0] for r in self.db.execute("SELECT task_id FROM activities WHERE instance_id=? AND execution_id=?",
                                              (instance_id, execution_id))}

    def activities(self) -> list[ActivityItem]:
        return [ActivityItem(*r) for r in self.db.execute(
            "SELECT instance_id, execution_id, task_id, name, input FROM activities")]

    def query(self, *, statuses: Iterable[str] | None = None, created_from: float | None = None,
              created_to: float | None = None, prefix: str | None = None, limit: int | None = None,
              offset: int = 0) -> list[InstanceRow]:
        where, params = self._filters(statuses, created_from, created_to, prefix)
        sql = f"SELECT {INSTANCE_COLUMNS} FROM instances{where} ORDER BY created_time, instance_id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        return [InstanceRow(*r) for r in self.db.execute(sql, params)]

    @staticmethod
    def _filters(statuses, created_from, created_to, prefix) -> tuple[str, list]:
        clauses, params = [], []
        if statuses:
            statuses = list(statuses)
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            params += statuses
        if created_from is not None:
            clauses.append("created_time >= ?")
            params.append(created_from)
        if created_to is not None:
            clauses.append("created_time <= ?")
            params.append(created_to)
        if prefix:
            clauses.append("substr(instance_id, 1, ?) = ?")
            params += [len(prefix), prefix]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    # -- writes ------------------------------------------------------------------------------
    def _upsert_instance(self, row: InstanceRow) -> None:
        self.db.execute(f"INSERT OR REPLACE INTO instances({INSTANCE_COLUMNS}) VALUES "
                        f"(?,?,?,?,?,?,?,?,?,?,?,?,?)", row.as_params())

    def _insert_messages(self, messages: Iterable[Message]) -> None:
        self.db.executemany("INSERT INTO messages(instance_id, execution_id, visible_at, event) VALUES (?,?,?,?)",
                            [(m.instance_id, m.execution_id, m.visible_at, m.event) for m in messages])

    def _clear_instance(self, instance_id: str) -> None:
        self.db.execute("DELETE FROM history WHERE instance_id=?", (instance_id,))
        self.db.execute("DELETE FROM messages WHERE instance_id=?", (instance_id,))

    def create_instance(self, row: InstanceRow, start_message: Message, replace: bool) -> None:
        """Create (or replace a finished) instance and queue its ExecutionStarted, atomically."""
        with self._transaction():
            if replace:
                self._clear_instance(row.instance_id)
            self._upsert_instance(row)
            self._insert_messages([start_message])

    def send(self, messages: Sequence[Message]) -> None:
        with self._transaction():
            self._insert_messages(messages)

    def commit_episode(self, w: EpisodeWrite) -> None:
        with self._transaction():
            iid = w.instance.instance_id
            if w.consumed_message_ids:
                self.db.executemany("DELETE FROM messages WHERE id=?", [(i,) for i in w.consumed_message_ids])
            if w.drop_all_messages:
                self.db.execute("DELETE FROM messages WHERE instance_id=?", (iid,))
            elif w.drop_execution_messages:
                self.db.execute("DELETE FROM messages WHERE instance_id=? AND execution_id=?",
                                (iid, w.drop_execution_messages))
            if w.reset_history:
                self.db.execute("DELETE FROM history WHERE instance_id=?", (iid,))
            if w.new_history:
                self.db.executemany("INSERT OR REPLACE INTO history(instance_id, idx, event) VALUES (?,?,?)",
                                    [(iid, idx, text) for idx, text in w.new_history])
            if w.activities:
                self.db.executemany(
                    "INSERT OR REPLACE INTO activities(instance_id, execution_id, task_id, name, input) VALUES (?,?,?,?,?)",
                    [(a.instance_id, a.execution_id, a.task_id, a.name, a.input) for a in w.activities])
            for other in w.other_resets:
                self._clear_instance(other)
            for row in w.other_instances:
                self._upsert_instance(row)
            self._upsert_instance(w.instance)
            self._insert_messages(w.messages)

    def delete_messages(self, message_ids: Sequence[int]) -> None:
        with self._transaction():
            self.db.executemany("DELETE FROM messages WHERE id=?", [(i,) for i in message_ids])

    def complete_activities(self, results: Sequence[tuple[ActivityItem, Message]]) -> None:
        """Delete each finished work item and queue its TaskCompleted/TaskFailed in one transaction."""
        with self._transaction():
            self.db.executemany("DELETE FROM activities WHERE instance_id=? AND execution_id=? AND task_id=?",
                                [(a.instance_id, a.execution_id, a.task_id) for a, _ in results])
            self._insert_messages([m for _, m in results])

    def purge(self, instance_ids: Sequence[str]) -> int:
        with self._transaction():
            deleted = 0
            for iid in instance_ids:
                deleted += self.db.execute("DELETE FROM instances WHERE instance_id=?", (iid,)).rowcount
                self._clear_instance(iid)
                self.db.execute("DELETE FROM activities WHERE instance_id=?", (iid,))
            return deleted

    def _transaction(self):
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def dumps(value) -> str:
    """Compact JSON, as the extension re-serialises values."""
    return json.dumps(value, separators=(",", ":"))


def loads_stored(text: str | None) -> Any:
    """Stored text parsed back to JSON; text that is not JSON is returned as a plain string."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
