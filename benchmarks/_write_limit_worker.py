"""One app worker process for write_limit_scale.py and tests/core/test_write_limit.py.

Usage: ``python benchmarks/_write_limit_worker.py SP_ID WRITES THREADS`` (or :func:`run_workers`).

Reads the app's settings from the environment (the emulator's, ``GRAPH_WRITES_PER_SECOND``,
``GRAPH_WRITE_LIMIT_STORAGE`` and the storage connection), prints ``ready``, waits for a line on
stdin (so that every process starts writing together), sends ``WRITES`` PATCHes to the service
principal from ``THREADS`` threads through the production Graph client (core.clients), and prints
one JSON line: writes that failed, the limiter's reservations and storage calls.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from core import clients, errors  # noqa: E402
from core.graph import write_limit  # noqa: E402


def main() -> None:
    sp_id, writes, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    graph = clients.get_graph()
    graph.get(f"/servicePrincipals/{sp_id}")  # token and TLS session before the start line
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.time()

    def write(i: int) -> str:
        try:
            graph.patch(f"/servicePrincipals/{sp_id}", {"notes": f"write {i}"})
            return "ok"
        except errors.GraphThrottled:
            return "throttled"
        except errors.GraphError as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(write, range(writes)))
    limiters = list(write_limit._limiters.values())
    stores = [s for s in write_limit._stores.values() if s is not None]
    print(json.dumps({
        "ok": outcomes.count("ok"),
        "failed": len(outcomes) - outcomes.count("ok"),
        "started": started,
        "finished": time.time(),
        "shared": all(limiter.shared for limiter in limiters) and bool(stores),
        "reservations": sum(limiter.reservations for limiter in limiters),
        "sharedReservations": sum(limiter.shared_reservations for limiter in limiters),
        "localReservations": sum(limiter.local_reservations for limiter in limiters),
        "storageCalls": sum(getattr(store, "calls", 0) for store in stores),
        "storageConflicts": sum(getattr(store, "conflicts", 0) for store in stores),
    }))


def run_workers(sp_id: str, processes: int, writes: int, threads: int, env: dict[str, str],
                timeout: float = 600.0) -> dict:
    """Run ``processes`` workers splitting ``writes`` PATCHes, start them together, and gather their figures.

    Returns ``{"start": epoch, "end": epoch, "workers": [each worker's JSON], "stderr": [...]}``.
    """
    share = [writes // processes + (1 if i < writes % processes else 0) for i in range(processes)]
    procs = [subprocess.Popen([sys.executable, __file__, sp_id, str(n), str(threads)], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for n in share]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                proc.wait(timeout)
                raise RuntimeError(f"worker did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
        start = time.time()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results, errors_text = [], []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"worker exited {proc.returncode}: {err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
            errors_text.append(err)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {"start": start, "end": max(r["finished"] for r in results), "workers": results, "stderr": errors_text}


def start_azurite(state_dir: str) -> tuple[object, str]:
    """Azurite on free loopback ports (devhost's launcher); returns (process, connection string)."""
    import socket

    from devhost.azurite import AzuriteProcess, dev_connection_string, resolve_connection

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    conn = dev_connection_string(free(), free(), free())
    process = AzuriteProcess.start(resolve_connection("AzureWebJobsStorage", {"AzureWebJobsStorage": conn}),
                                   state_dir, [str(REPO_ROOT)])
    return process, conn


def worker_env(emulator_env: dict[str, str], storage: str, rate: int, block: int = 10) -> dict[str, str]:
    """The environment of one app worker: the emulator's, the write rate and the schedule's storage."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "GRAPH_", "KEY_VAULT_", "AzureWebJobs"))}
    env.update(emulator_env)
    env.update({"GRAPH_WRITES_PER_SECOND": str(rate), "GRAPH_WRITE_LIMIT_BLOCK": str(block),
                "GRAPH_RETRY_BUDGET_SECONDS": "30", "GRAPH_MAX_ATTEMPTS": "8"})
    if storage == "none":
        env["GRAPH_WRITE_LIMIT_STORAGE"] = "none"
    else:
        env["AzureWebJobsStorage"] = storage
    return env


if __name__ == "__main__":
    main()
