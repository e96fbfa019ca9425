"""What the deployment package ships, built the way azd and Core Tools build it from `.funcignore`.

Two trees are checked: the real working tree (with whatever .venv, node_modules and state folders
it has) and a planted tree that holds every kind of file that must or must not ship, so the check
does not depend on which folders happen to exist yet.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from deploy_support import load_script

package_contents = load_script("package_contents")

# Top-level entries the deployed app needs (function_app.py imports these packages).
SHIPPED_TOP_LEVEL = {
    "function_app.py",
    "host.json",
    "requirements.txt",
    "core",
    "activities",
    "orchestrators",
    "triggers",
    "schemas",
    "profiles",  # schema profiles the app applies (core/schema_profiles.py)
}
# Allowed as well, harmless at run time.
ALLOWED_TOP_LEVEL = SHIPPED_TOP_LEVEL | {"README.md", "LICENSE"}

NEVER_SHIPPED_DIRS = [
    "devhost",
    "emulator",
    "tests",
    "benchmarks",
    "infra",
    "examples",
    "docs",
    ".github",
    ".venv",
    "node_modules",
    ".azure",
    ".devhost",
    ".emulator",
    ".azurite",
]

PLANTED_FILES = [
    "function_app.py",
    "host.json",
    "requirements.txt",
    "README.md",
    "core/__init__.py",
    "core/settings.py",
    "core/graph/client.py",
    "core/__pycache__/settings.cpython-311.pyc",
    "core/graph/__pycache__/client.cpython-311.pyc",
    "activities/__init__.py",
    "orchestrators/provision_batch.py",
    "triggers/http_submit.py",
    "schemas/provisioning-request.schema.json",
    "__pycache__/function_app.cpython-311.pyc",
    "local.settings.json",
    "core/local.settings.json",
    "devhost/__main__.py",
    "emulator/data/secrets.json",
    "tests/conftest.py",
    "tests/deploy/test_x.py",
    "benchmarks/throughput.py",
    "infra/main.bicep",
    "infra/scripts/grant_graph_permissions.py",
    "examples/demo.py",
    "docs/deploy.md",
    ".github/workflows/ci.yml",
    ".venv/lib/python3.11/site-packages/requests/__init__.py",
    "node_modules/azurite/package.json",
    ".azure/dev/.env",
    ".emulator/ca.pem",
    ".devhost/state.json",
    ".azurite/__azurite_db_queue__.json",
    ".env",
    "Makefile",
    "package.json",
    "package-lock.json",
    "requirements-dev.txt",
    "constraints.txt",
    "pyproject.toml",
    "azure.yaml",
    ".gitignore",
    ".funcignore",
]


def top_level(paths: list[str]) -> set[str]:
    return {path.split("/", 1)[0] for path in paths}


@pytest.fixture(scope="module")
def planted_tree(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    root = tmp_path_factory.mktemp("package")
    for relative in PLANTED_FILES:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n", encoding="utf-8")
    shutil.copyfile(repo_root / ".funcignore", root / ".funcignore")
    return root


@pytest.mark.parametrize("tool", ["azd", "core-tools"])
def test_planted_tree_ships_exactly_the_app(planted_tree: Path, tool: str) -> None:
    build = package_contents.azd_package if tool == "azd" else package_contents.core_tools_package
    shipped = build(planted_tree)
    assert sorted(shipped) == sorted(
        [
            "function_app.py",
            "host.json",
            "requirements.txt",
            "README.md",
            "core/__init__.py",
            "core/settings.py",
            "core/graph/client.py",
            "activities/__init__.py",
            "orchestrators/provision_batch.py",
            "triggers/http_submit.py",
            "schemas/provisioning-request.schema.json",
        ]
    )


def test_working_tree_package_is_the_app_only(repo_root: Path) -> None:
    shipped = package_contents.azd_package(repo_root)
    unexpected = sorted(top_level(shipped) - ALLOWED_TOP_LEVEL)
    assert not unexpected, (
        f"{unexpected} would be deployed to Azure: add them to .funcignore, or to this test's "
        "SHIPPED_TOP_LEVEL if the app needs them"
    )
    for directory in NEVER_SHIPPED_DIRS:
        assert not [p for p in shipped if p.startswith(directory + "/")], directory
    assert not [p for p in shipped if "__pycache__" in p or p.endswith((".pyc", ".pem", "local.settings.json"))]
    for required in ("requirements.txt",):
        assert required in shipped
    # Whatever part of the app exists already must ship (the app is built in parallel).
    for entry in SHIPPED_TOP_LEVEL:
        if (repo_root / entry).is_file():
            assert entry in shipped, entry
        elif (repo_root / entry).is_dir() and any((repo_root / entry).glob("*.py")):
            assert any(p.startswith(entry + "/") for p in shipped), entry


def test_azd_and_core_tools_agree_on_the_working_tree(repo_root: Path) -> None:
    assert package_contents.azd_package(repo_root) == package_contents.core_tools_package(repo_root)


def test_requirements_constraints_file_ships_when_referenced(repo_root: Path) -> None:
    """If requirements.txt ever pins through `-c constraints.txt`, the package must carry it."""
    requirements = (repo_root / "requirements.txt").read_text(encoding="utf-8")
    shipped = package_contents.azd_package(repo_root)
    for line in requirements.splitlines():
        parts = line.split()
        if parts and parts[0] in ("-c", "-r", "--constraint", "--requirement"):
            assert parts[1] in shipped, f"requirements.txt refers to {parts[1]}, which .funcignore excludes"


class TestCoreToolsMatcher:
    """The Core Tools rules themselves, on cases where they differ from gitignore."""

    def test_patterns_are_prefixes_of_the_path(self) -> None:
        ignore = package_contents.CoreToolsIgnore("tests\n")
        assert not ignore.accepts("tests/test_a.py")
        assert not ignore.accepts("tests_helper.py")  # prefix match, unlike gitignore
        assert ignore.accepts("core/tests/test_a.py")  # anchored at the root, unlike gitignore

    def test_single_star_does_not_cross_directories(self) -> None:
        ignore = package_contents.CoreToolsIgnore("*.pyc\n")
        assert not ignore.accepts("a.pyc")
        assert ignore.accepts("core/a.pyc")
        assert not package_contents.CoreToolsIgnore("**/*.pyc\n").accepts("core/graph/a.pyc")

    def test_negation_wins_regardless_of_order_and_brackets_are_literal(self) -> None:
        ignore = package_contents.CoreToolsIgnore("!keep.txt\n*.txt\n*.py[cod]\n")
        assert ignore.accepts("keep.txt")
        assert not ignore.accepts("drop.txt")
        assert ignore.accepts("a.pyc")  # [cod] is not a character class for Core Tools

    def test_leading_slash_and_comments(self) -> None:
        ignore = package_contents.CoreToolsIgnore("# comment\n/infra/\n\n")
        assert not ignore.accepts("infra/main.bicep")
        assert ignore.accepts("# comment")
        assert ignore.accepts("core/infra/x.py")
