"""The modules of devhost/durable import each other without a cycle.

``engine`` and ``http_api`` once imported each other (http_api took the errors and state sets from
engine, engine built http_api's routes). Now the errors live in ``errors``, the state sets in
``states``, devhost/server.py wires ``http_api`` with the engine passed in, and neither module reaches
the other. The graph is read from the source with ``ast``, so imports under ``TYPE_CHECKING`` and
imports inside functions count too.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import devhost.durable

PACKAGE = "devhost.durable"
PACKAGE_DIR = os.path.dirname(devhost.durable.__file__)
REPO_ROOT = os.path.dirname(os.path.dirname(PACKAGE_DIR))


def _module_names() -> set[str]:
    return {name[:-3] for name in os.listdir(PACKAGE_DIR) if name.endswith(".py") and name != "__init__.py"}


def _imports(module: str, known: set[str]) -> set[str]:
    """The sibling modules ``module`` imports anywhere in its source (absolute or relative imports)."""
    with open(os.path.join(PACKAGE_DIR, module + ".py"), encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x / from .x import y
                base = PACKAGE + ("." + base if base else "")
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith(PACKAGE + "."):
                sibling = name[len(PACKAGE) + 1:].split(".")[0]
                if sibling in known and sibling != module:
                    found.add(sibling)
    return found


def _graph() -> dict[str, set[str]]:
    known = _module_names()
    return {module: _imports(module, known) for module in known}


def _reaches(graph: dict[str, set[str]], start: str, target: str) -> list[str] | None:
    """An import path from ``start`` to ``target``, or None."""
    stack: list[list[str]] = [[start]]
    seen = {start}
    while stack:
        path = stack.pop()
        for nxt in sorted(graph[path[-1]]):
            if nxt == target:
                return path + [nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append(path + [nxt])
    return None


def test_the_graph_sees_the_imports_it_must_see():
    graph = _graph()
    # guards against a reader that finds nothing (and so never finds a cycle)
    assert {"client_ops", "episodes", "dispatch", "activity_workers"} <= graph["engine"]
    assert {"errors", "states", "store"} <= graph["http_api"]


def test_engine_and_http_api_do_not_import_each_other():
    graph = _graph()
    assert _reaches(graph, "http_api", "engine") is None, _reaches(graph, "http_api", "engine")
    assert _reaches(graph, "engine", "http_api") is None, _reaches(graph, "engine", "http_api")


def test_no_import_cycle_inside_devhost_durable():
    graph = _graph()
    cycles = [path for module in sorted(graph) if (path := _reaches(graph, module, module))]
    assert cycles == []


def test_importing_http_api_does_not_load_the_engine():
    code = ("import sys, devhost.durable.http_api; "
            "print(sorted(m for m in sys.modules if m.startswith('devhost.durable.')))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert "devhost.durable.http_api" in loaded.stdout
    assert "devhost.durable.engine" not in loaded.stdout
    assert "devhost.durable.episodes" not in loaded.stdout
