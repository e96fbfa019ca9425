"""How fast the emulator starts and answers (the issue's budget: serving, env file written, < 2 s).

Measures, for ``python -m emulator --port 0 --env-file PATH``: the time from spawning the process
to the env file existing (the file is written only once the socket accepts connections), first
exactly as the issue states it, from a clean working directory (no ``.emulator/`` yet, so the
default certificate folder is created there; ``PYTHONPATH`` points at the repository), then with an
empty certificate folder (CA + server certificate created) and then with existing ones;
the in-process start time of ``emulator.testing.start_emulator``; and the round-trip time of
simple Graph reads over HTTPS. Prints one line per figure, then one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from emulator.testing import start_emulator  # noqa: E402

RUNS = 5


def time_process_start(cert_dir: Path) -> float:
    with tempfile.TemporaryDirectory() as work:
        env_file = Path(work) / "emulator.env"
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", "0", "--env-file", str(env_file), "--cert-dir", str(cert_dir), "--quiet"],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            while not env_file.exists():
                if process.poll() is not None:
                    raise RuntimeError(process.stderr.read().decode())
                time.sleep(0.005)
            return time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(timeout=15)


def time_clean_directory_start() -> float:
    """The issue's command verbatim, run from an empty directory (certificates created in ./.emulator)."""
    with tempfile.TemporaryDirectory() as clean:
        env_file = Path(clean) / "emulator.env"
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", "0", "--env-file", str(env_file)],
            cwd=clean, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            while not env_file.exists():
                if process.poll() is not None:
                    raise RuntimeError(process.stderr.read().decode())
                time.sleep(0.005)
            elapsed = time.perf_counter() - started
            env_vars = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
            # Serving as soon as the file exists: one request, no retry.
            health = requests.get(f"{env_vars['EMULATOR_URL']}/health", verify=env_vars["REQUESTS_CA_BUNDLE"], timeout=5)
            if health.status_code != 200 or not env_vars["REQUESTS_CA_BUNDLE"].startswith(str(Path(clean).resolve())):
                raise RuntimeError(f"not serving right after the env file appeared: {health.status_code}")
            return elapsed
        finally:
            process.terminate()
            process.wait(timeout=15)


def main() -> None:
    clean = [time_clean_directory_start() for _ in range(RUNS)]
    with tempfile.TemporaryDirectory() as fresh:
        cold = [time_process_start(Path(fresh) / f"certs{i}") for i in range(RUNS)]
    warm_dir = Path(tempfile.mkdtemp(prefix="emulator-certs-"))
    time_process_start(warm_dir)
    warm = [time_process_start(warm_dir) for _ in range(RUNS)]

    started = time.perf_counter()
    emu = start_emulator(cert_dir=warm_dir)
    in_process = time.perf_counter() - started
    try:
        info = emu.admin.client("workflow")
        token = requests.post(
            f"{emu.url}/{emu.env['AZURE_TENANT_ID']}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": info["clientId"], "client_secret": info["secret"],
                  "scope": "https://graph.microsoft.com/.default"},
            verify=emu.ca_bundle,
        ).json()["access_token"]
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        latencies = []
        for _ in range(200):
            t0 = time.perf_counter()
            response = session.get(f"{emu.url}/v1.0/servicePrincipals?$top=5", headers=headers, verify=emu.ca_bundle)
            latencies.append(time.perf_counter() - t0)
            assert response.status_code == 200
    finally:
        emu.stop()

    figures = {
        "process_start_clean_dir_s_median": round(statistics.median(clean), 3),
        "process_start_clean_dir_s_max": round(max(clean), 3),
        "process_start_cold_certs_s_median": round(statistics.median(cold), 3),
        "process_start_cold_certs_s_max": round(max(cold), 3),
        "process_start_warm_s_median": round(statistics.median(warm), 3),
        "process_start_warm_s_max": round(max(warm), 3),
        "in_process_start_s": round(in_process, 3),
        "graph_get_ms_median": round(statistics.median(latencies) * 1000, 2),
        "graph_get_ms_p95": round(sorted(latencies)[int(len(latencies) * 0.95)] * 1000, 2),
        "budget_s": 2.0,
        "within_budget": max(clean + cold + warm) < 2.0,
    }
    for key, value in figures.items():
        print(f"{key}: {value}")
    print(json.dumps({"benchmark": "emulator_startup", **figures}))


if __name__ == "__main__":
    main()
