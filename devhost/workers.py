"""Activities in ``FUNCTIONS_WORKER_PROCESS_COUNT`` separate worker processes, as the Python worker runs them.

Why: in Azure the Functions host starts ``FUNCTIONS_WORKER_PROCESS_COUNT`` Python worker processes
per instance (default 1) and spreads invocations over them
(https://learn.microsoft.com/azure/azure-functions/functions-app-settings#functions_worker_process_count).
State a module keeps (a cache, a pacer, a lock) is then per process, not per app. Run in one
process, devhost would share it by accident and hide the bug; with the setting above 1 it starts
that many worker processes (``multiprocessing`` spawn: a fresh interpreter that imports the app,
as the worker does), each running activities on ``PYTHON_THREADPOOL_THREAD_COUNT`` threads, and
sends each activity to the least busy one.

Scope: activities run in the worker processes (they do the app's I/O and hold its per-process
state). Orchestrator episodes and HTTP/queue/timer triggers still run in the devhost process: the
orchestrators are deterministic and keep no state between episodes; the triggers' objects
(``HttpRequest``, output bindings) are not sent between processes here.

An activity's failure comes back as an exception of the same type *name* (a subclass of
:class:`RemoteActivityError`) with its message and the worker's traceback text, so TaskFailed
reads as it does in-process. A worker that dies fails its running activities (the orchestrator's
retry policy applies, as with a crashed worker in Azure) and is started again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("devhost.workers")

_READY_TIMEOUT_SECONDS = 120.0


class RemoteActivityError(Exception):
    """An activity failed in a worker process; the class name is the original exception's type name."""

    remote_traceback: str = ""


def remote_error(type_name: str, message: str, traceback_text: str) -> RemoteActivityError:
    cls = type(type_name if type_name.isidentifier() else "RemoteActivityError", (RemoteActivityError,), {})
    exc = cls(message)
    exc.remote_traceback = traceback_text
    return exc


def worker_process_count(environ: Any = None) -> int:
    """``FUNCTIONS_WORKER_PROCESS_COUNT`` (1-10 in Azure); 1 when unset or invalid."""
    env = os.environ if environ is None else environ
    try:
        return max(1, min(10, int(str(env.get("FUNCTIONS_WORKER_PROCESS_COUNT") or "1").strip())))
    except ValueError:
        return 1


def _child_main(app_path: str, conn: Any) -> None:  # runs in the worker process
    from devhost.app_loader import LoadedApp, _default_thread_count
    from devhost.config import load_host_json
    from devhost.durable.invocations import user_traceback as _user_traceback
    from devhost.server import setup_logging

    setup_logging(load_host_json(os.path.dirname(app_path)))  # the same log lines, on the same stderr
    app = LoadedApp.load(app_path)
    lock = threading.Lock()

    def send(message: tuple) -> None:
        with lock:
            conn.send(message)

    def run(call_id: int, name: str, input_json: str | None, invocation_id: str | None,
            client_json: str | None = None) -> None:
        if client_json is not None:  # the host's durableClient binding value, as the Functions host gives
            app.client_binding_json = client_json  # every worker process (an activity may declare the binding)
        try:
            result = asyncio.run(app.call_activity(name, input_json, invocation_id=invocation_id))
        except BaseException as exc:  # every failure goes back to the host as the activity's failure
            send((call_id, False, (type(exc).__name__, str(exc), _user_traceback(exc))))
        else:
            send((call_id, True, result))

    pool = ThreadPoolExecutor(max_workers=_default_thread_count(), thread_name_prefix="worker-fn")
    send(("ready", os.getpid(), None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        pool.submit(run, *message)
    pool.shutdown(wait=True, cancel_futures=True)


class _Worker:
    def __init__(self, process: Any, conn: Any, pid: int) -> None:
        self.process = process
        self.conn = conn
        self.pid = pid
        self.pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self.lock = threading.Lock()
        self.reader: threading.Thread | None = None


class WorkerPool:
    """``count`` worker processes that import ``app_path`` and run its activities."""

    def __init__(self, app_path: str, count: int) -> None:
        self.app_path = app_path
        self.count = count
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self._stopping = False
        self._lock = threading.Lock()
        #: the ``durableClient`` binding value (set by the server once the engine knows its base URL),
        #: sent with each call so a function declaring the binding gets it in any worker process
        self.client_binding_json: str | None = None

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    def start(self) -> "WorkerPool":
        self._workers = [self._spawn() for _ in range(self.count)]
        log.info("Started %d worker processes (FUNCTIONS_WORKER_PROCESS_COUNT): pids %s", self.count, self.pids)
        return self

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_child_main, args=(self.app_path, child), daemon=True,
                                        name="devhost-worker")
        process.start()
        child.close()
        if not parent.poll(_READY_TIMEOUT_SECONDS):
            process.kill()
            raise RuntimeError(f"a worker process did not load {self.app_path} within {_READY_TIMEOUT_SECONDS:.0f} s")
        try:
            kind, pid, _ = parent.recv()
        except EOFError:
            raise RuntimeError(f"a worker process exited while loading {self.app_path} (see the log)") from None
        worker = _Worker(process, parent, pid)
        worker.reader = threading.Thread(target=self._read, args=(worker,), daemon=True, name=f"devhost-worker-{pid}")
        worker.reader.start()
        return worker

    def _read(self, worker: _Worker) -> None:
        while True:
            try:
                call_id, ok, payload = worker.conn.recv()
            except (EOFError, OSError):
                break
            with worker.lock:
                entry = worker.pending.pop(call_id, None)
            if entry is not None:
                loop, future = entry
                loop.call_soon_threadsafe(_settle, future, ok, payload)
        # the process is gone: fail what it was running, and start another unless devhost is stopping
        with worker.lock:
            lost, worker.pending = list(worker.pending.values()), {}
        for loop, future in lost:
            loop.call_soon_threadsafe(_settle, future, False,
                                      ("WorkerProcessExited", f"worker process {worker.pid} exited", ""))
        if not self._stopping:
            log.warning("Worker process %s exited; starting another", worker.pid)
            try:
                replacement = self._spawn()
            except Exception:
                log.exception("Could not start a replacement worker process")
                return
            with self._lock:
                self._workers = [replacement if w is worker else w for w in self._workers]

    async def call_activity(self, name: str, input_json: str | None, invocation_id: str | None) -> str:
        """Run the activity in the least busy worker process; return its result JSON text."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        call_id = next(self._ids)
        with self._lock:
            worker = min(self._workers, key=lambda w: len(w.pending))
        with worker.lock:
            worker.pending[call_id] = (loop, future)
            worker.conn.send((call_id, name, input_json, invocation_id, self.client_binding_json))
        return await future

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        for worker in self._workers:
            try:
                with worker.lock:
                    worker.conn.send(None)
            except (OSError, ValueError):
                pass
        for worker in self._workers:
            worker.process.join(timeout)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout)
            worker.conn.close()


def _settle(future: asyncio.Future, ok: bool, payload: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(payload)
    else:
        future.set_exception(remote_error(*payload))
