"""Every script in benchmarks/ runs, at its smallest size, and prints its figures as JSON.

The benchmarks measure speed and memory (``make bench``); nothing here asserts a time. What is
checked is that each script still imports, drives the real stack and reports: a benchmark that no
longer runs (workflow_scale once failed at import after a test helper moved) would otherwise only
be found by the next person who wants the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO_ROOT / "benchmarks"

#: script -> (smallest arguments, a check of its JSON figures)
SMALLEST = {
    "core_request_count.py": ([], lambda f: f["withinBudget"] is True and f["budgetRequests"] <= 10),
    "devhost_throughput.py": (["--n", "20", "--subs", "4", "--repeat", "1"],
                              lambda f: f["devhost"]["fanout_activities_per_s"] > 0 and "scaling" in f),
    "emulator_startup.py": ([], lambda f: f["process_start_clean_dir_s_median"] > 0),
    "write_limit_scale.py": (["--processes", "2", "--writes", "20", "--threads", "2"],
                             lambda f: f["shared"]["accepted"] == 20 and f["shared"]["sharedSchedule"] is True),
    "rollout_scale.py": (["--instances", "3", "--canaries", "1", "--wave-size", "2", "--pause", "1", "--timeout", "240"],
                         lambda f: f["instances"] == 3 and f["applied"] == 3 and f["waves"] == 2
                         and f["canaryOnDemand"] == ["done"] and f["writesPerInstance"] > 0),
    "rotation_scale.py": (["--instances", "3", "--timeout", "240"],
                          lambda f: f["instances"] == 3 and f["rotated"] == 3 and f["writesPerInstance"] > 0),
    "sweep_scale.py": (["--sizes", "40,120"],
                       lambda f: [r["total"] for r in f["runs"]] == [40, 120] and f["runs"][-1]["pages"] == 1
                       and f["runs"][-1]["reportLines"] == 120 and f["wallExponent"] is not None),
    "workflow_scale.py": (["--instances", "3", "--timeout", "240"],
                          lambda f: f["instances"] == 3 and f["steadyState"] == 3 and f["throttled429"] >= 0),
}


def test_every_benchmark_script_is_covered_here():
    assert sorted(p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")) == sorted(SMALLEST)


@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_benchmark_runs_and_prints_its_figures(script: str, tmp_path: Path):
    args, check = SMALLEST[script]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "GRAPH_", "KEY_VAULT_"))}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert check(figures), figures
