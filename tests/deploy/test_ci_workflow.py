"""The GitHub Actions workflow: pinned actions, least-privilege tokens, the documented job order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

SHA_PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"uses:\s*\S+@[0-9a-f]{40}\s+#\s*v\d+(\.\d+)*\s*$")


@pytest.fixture(scope="module")
def workflow_text(repo_root: Path) -> str:
    return (repo_root / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def workflow(workflow_text: str) -> dict[str, Any]:
    data = yaml.safe_load(workflow_text)
    assert isinstance(data, dict)
    return data


def all_steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])]


def test_every_action_is_pinned_to_a_commit_sha_with_a_version_comment(
    workflow: dict[str, Any], workflow_text: str
) -> None:
    uses = [step["uses"] for _, step in all_steps(workflow) if "uses" in step]
    assert uses, "the workflow uses no actions at all?"
    for ref in uses:
        assert SHA_PINNED.match(ref), f"{ref} is not pinned to a 40-hex commit SHA"
    for line in workflow_text.splitlines():
        if line.strip().startswith(("uses:", "- uses:")):
            assert VERSION_COMMENT.search(line), f"missing '# vX.Y.Z' comment: {line.strip()}"
    # Job-level reusable workflows must be pinned too.
    for job in workflow["jobs"].values():
        if "uses" in job:
            assert SHA_PINNED.match(job["uses"]), job["uses"]


def test_default_permissions_are_read_only(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}


def test_only_the_deploy_job_can_request_an_oidc_token(workflow: dict[str, Any]) -> None:
    for job_id, job in workflow["jobs"].items():
        permissions = job.get("permissions", {})
        assert isinstance(permissions, dict), f"{job_id}: permissions must be listed one by one"
        if job_id == "deploy":
            assert permissions == {"contents": "read", "id-token": "write"}
        else:
            assert "id-token" not in permissions
            assert all(level == "read" for level in permissions.values()), job_id


def test_jobs_lint_type_check_test_then_deploy_on_main(workflow: dict[str, Any]) -> None:
    jobs = workflow["jobs"]
    commands = {job_id: " ".join(step.get("run", "") for step in job["steps"]) for job_id, job in jobs.items()}
    assert "ruff check" in commands["lint"]
    assert ".venv/bin/mypy" in commands["lint"]
    assert "make test" in commands["test"]
    deploy = jobs["deploy"]
    assert set(deploy["needs"]) == {"lint", "test"}
    assert "refs/heads/main" in deploy["if"] and "push" in deploy["if"]
    assert "--federated-credential-provider github" in commands["deploy"]
    assert "azd deploy" in commands["deploy"]


def test_no_long_lived_azure_secret_is_used(workflow_text: str) -> None:
    # OIDC only: no client secret, no publish profile, no AZURE_CREDENTIALS JSON.
    for forbidden in ("AZURE_CLIENT_SECRET", "client-secret", "publish-profile", "AZURE_CREDENTIALS", "secrets."):
        assert forbidden not in workflow_text, forbidden


def test_ci_python_matches_the_deployed_runtime(workflow: dict[str, Any], repo_root: Path) -> None:
    api = (repo_root / "infra" / "app" / "api.bicep").read_text(encoding="utf-8")
    runtime = re.search(r"runtime:\s*\{\s*name:\s*'python'\s*version:\s*'([\d.]+)'", api)
    assert runtime, "python runtime block not found in api.bicep"
    assert workflow["env"]["PYTHON_VERSION"] == runtime.group(1)
