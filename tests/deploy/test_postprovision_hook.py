"""The azd postprovision hook (infra/scripts/postprovision.sh), run for real with fake azd values.

The hook is how a tenant admin who has neither the azd environment nor the subscription learns
what to grant: it prints the managed identity's client id, the Graph permissions and the exact
grant command. The last test runs the printed command against the emulator's Microsoft Graph,
signed in as the emulator's admin, with nothing but that command line.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import REPO_ROOT
from test_bicep_structure import grant_command_from_bicep, graph_permissions_in_bicep

from core.permissions import REQUIRED_GRAPH_PERMISSIONS
from emulator.testing import RunningEmulator, start_emulator

pytestmark = pytest.mark.timeout(120)

HOOK_SH = REPO_ROOT / "infra" / "scripts" / "postprovision.sh"
HOOK_PS1 = REPO_ROOT / "infra" / "scripts" / "postprovision.ps1"
CLIENT_ID = "3f0c2a55-9d1e-4b7a-8c6d-2e4f5a6b7c8d"
TENANT_ID = "72f988bf-0000-4000-8000-00000000beef"
OBJECT_ID = "0b9e8d7c-6a5f-4e3d-2c1b-0a9f8e7d6c5b"


def azd_env(**values: str) -> dict[str, str]:
    """What azd hands a hook: the environment's values, arrays JSON-encoded as Go does (no spaces)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "AZURE_ENV_NAME": "fleet-test",
        "AZURE_TENANT_ID": TENANT_ID,
        "AZURE_MANAGED_IDENTITY_CLIENT_ID": CLIENT_ID,
        "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": OBJECT_ID,
        "GRAPH_APPLICATION_PERMISSIONS": json.dumps(graph_permissions_in_bicep(), separators=(",", ":")),
    }
    env.update(values)
    return {k: v for k, v in env.items() if v is not None}


def run_hook(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    shell = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text(encoding="utf-8"))["hooks"]["postprovision"]["posix"]
    assert shell["shell"] == "sh" and REPO_ROOT / shell["run"] == HOOK_SH
    return subprocess.run(["sh", str(HOOK_SH)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=30, check=False)


def printed_value(stdout: str, label: str) -> str:
    match = re.search(rf"^\s*{re.escape(label)}:\s*(.*)$", stdout, re.MULTILINE)
    assert match, f"{label!r} not printed:\n{stdout}"
    return match.group(1).strip()


def grant_lines(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if "grant_graph_permissions.py" in line]


def test_hook_prints_the_client_id_the_permissions_and_the_exact_grant_command() -> None:
    done = run_hook(azd_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert printed_value(done.stdout, "managed identity client id") == CLIENT_ID
    assert printed_value(done.stdout, "managed identity object id") == OBJECT_ID
    assert printed_value(done.stdout, "tenant id") == TENANT_ID
    assert printed_value(done.stdout, "permissions") == ", ".join(REQUIRED_GRAPH_PERMISSIONS)
    assert f"az login --tenant {TENANT_ID}" in done.stdout
    dry_run, grant = grant_lines(done.stdout)
    # The same command main.bicep outputs as GRAPH_GRANT_COMMAND, and its --dry-run twin.
    assert grant == grant_command_from_bicep(CLIENT_ID)
    assert dry_run == grant + " --dry-run"


def test_hook_reads_the_permissions_as_azd_writes_them_with_or_without_spaces() -> None:
    spaced = json.dumps(list(REQUIRED_GRAPH_PERMISSIONS))  # '["A", "B"]'
    done = run_hook(azd_env(GRAPH_APPLICATION_PERMISSIONS=spaced))
    assert printed_value(done.stdout, "permissions") == ", ".join(REQUIRED_GRAPH_PERMISSIONS)
    missing = run_hook({k: v for k, v in azd_env().items() if k != "GRAPH_APPLICATION_PERMISSIONS"})
    assert missing.returncode == 0
    assert "docs/deploy.md" in printed_value(missing.stdout, "permissions")
    assert grant_lines(missing.stdout)[1] == grant_command_from_bicep(CLIENT_ID)


def test_hook_without_the_client_id_says_so_and_prints_no_command() -> None:
    env = {k: v for k, v in azd_env().items() if k != "AZURE_MANAGED_IDENTITY_CLIENT_ID"}
    done = run_hook(env)
    assert done.returncode == 0  # a print-only hook never fails `azd up`
    assert "AZURE_MANAGED_IDENTITY_CLIENT_ID is not set" in done.stderr
    assert grant_lines(done.stdout) == []


def normalized_lines(text: str, print_command: str) -> list[str]:
    """The printed templates of a hook script, with variable references made comparable."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith(print_command) or stripped.endswith(">&2"):
            continue  # stdout only: the messages to stderr differ in form (pwsh's [Console]::Error)
        body = stripped[len(print_command):].strip()
        assert body.startswith('"') and body.endswith('"'), line
        body = body[1:-1].replace('\\"', '"').replace('`"', '"')
        body = re.sub(r"\$\{(\w+):-\}|\$env:(\w+)", lambda m: "{" + (m.group(1) or m.group(2)) + "}", body)
        body = re.sub(r"\$(client_id|clientId)\b", "{AZURE_MANAGED_IDENTITY_CLIENT_ID}", body)
        body = body.replace("$permissions", "{permissions}")
        lines.append(body)
    return lines


def test_windows_hook_prints_the_same_lines_as_the_posix_hook() -> None:
    """pwsh is not installed here, so the Windows script is compared line by line with the one
    that runs above; a line changed in only one of them fails."""
    windows = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text(encoding="utf-8"))["hooks"]["postprovision"]["windows"]
    assert windows["shell"] == "pwsh" and REPO_ROOT / windows["run"] == HOOK_PS1
    posix = normalized_lines(HOOK_SH.read_text(encoding="utf-8"), "echo")
    powershell = normalized_lines(HOOK_PS1.read_text(encoding="utf-8"), "Write-Host")
    assert len(posix) >= 10 and powershell == posix
    assert any("{AZURE_MANAGED_IDENTITY_CLIENT_ID}" in line for line in posix)


# -- the printed command works for an admin with nothing but that line --------------------------

@pytest.fixture(scope="module")
def hook_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    emulator = start_emulator(state_dir=tmp_path_factory.mktemp("hook-emulator"))
    yield emulator
    emulator.stop()


def test_the_printed_grant_command_grants_with_only_the_client_id(hook_emulator: RunningEmulator) -> None:
    identity: dict[str, Any] = hook_emulator.admin.add_client(
        f"id-api-{uuid.uuid4().hex[:8]}", [], servicePrincipalType="ManagedIdentity"
    )
    hook = run_hook(azd_env(AZURE_MANAGED_IDENTITY_CLIENT_ID=identity["clientId"]))
    assert hook.returncode == 0, hook.stderr
    argv = shlex.split(grant_lines(hook.stdout)[1])
    assert argv[0] == "python"
    # The admin's shell: signed in as the emulator's admin client, in a clone of the repository,
    # with no azd environment (no AZURE_ENV_NAME, no .azure/).
    admin = hook_emulator.admin.client("admin")
    env = {"PATH": "/usr/bin:/bin", **hook_emulator.env,
           "AZURE_CLIENT_ID": admin["clientId"], "AZURE_CLIENT_SECRET": admin["secret"]}
    assert "AZURE_ENV_NAME" not in env and "AZURE_MANAGED_IDENTITY_CLIENT_ID" not in env
    done = subprocess.run([sys.executable, *argv[1:], "--json"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["identity"]["appId"] == identity["clientId"]
    assert result["identity"]["id"] == identity["servicePrincipalId"]
    assert result["granted"] and result["changed"] is True and not result["dryRun"]
    assert admin["secret"] not in done.stdout + done.stderr
    assert Path(REPO_ROOT / argv[1]).is_file()
