"""infra/scripts/grant_graph_permissions.py against the emulator's Microsoft Graph.

The script runs as a subprocess, as an admin would run it, signed in as the emulator's admin
client. Each test registers its own "managed identity" (a service principal with no Graph
permissions), and every outcome is checked through Graph itself (appRoleAssignments) and through
a fresh token of that identity (its ``roles`` claim).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.identity import ClientSecretCredential

from deploy_support import load_script

from emulator.testing import RunningEmulator, start_emulator

pytestmark = pytest.mark.timeout(120)

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# the README's set, written out: the script must grant exactly these (core.permissions agrees)
LEAST_PRIVILEGE = {
    "Application.ReadWrite.All",
    "Synchronization.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "AuditLog.Read.All",
    "Directory.Read.All",
}
SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "scripts" / "grant_graph_permissions.py"


@pytest.fixture(scope="module")
def grant_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    emulator = start_emulator(state_dir=tmp_path_factory.mktemp("grant-emulator"))
    yield emulator
    emulator.stop()


def client_env(emulator: RunningEmulator, client: dict[str, Any]) -> dict[str, str]:
    """The emulator's environment, signed in as ``client`` (a dict from the admin API)."""
    env = {k: v for k, v in emulator.env.items()}
    env["AZURE_CLIENT_ID"] = client["clientId"]
    env["AZURE_CLIENT_SECRET"] = client["secret"]
    return env


def run_script(emulator: RunningEmulator, *args: str, as_client: str = "admin") -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **client_env(emulator, emulator.admin.client(as_client))}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def run_json(emulator: RunningEmulator, *args: str) -> dict[str, Any]:
    done = run_script(emulator, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def graph_token(emulator: RunningEmulator, identity: dict[str, Any]) -> str:
    """A Graph token issued by the emulator to ``identity`` (its clientId and secret)."""
    credential = ClientSecretCredential(
        emulator.env["AZURE_TENANT_ID"],
        identity["clientId"],
        identity["secret"],
        authority=emulator.env["AZURE_AUTHORITY_HOST"],
        disable_instance_discovery=True,
        connection_verify=emulator.ca_bundle,
    )
    return credential.get_token("https://graph.microsoft.com/.default").token


def graph_get(emulator: RunningEmulator, path: str) -> dict[str, Any]:
    token = graph_token(emulator, emulator.admin.client("admin"))
    response = requests.get(
        f"{emulator.url}/v1.0/{path}",
        headers={"Authorization": f"Bearer {token}"},
        verify=emulator.ca_bundle,
        timeout=30,
    )
    response.raise_for_status()
    return dict(response.json())


def granted_roles(emulator: RunningEmulator, sp_id: str) -> list[str]:
    """Graph permissions held by ``sp_id``, read through Graph (names via Graph's appRoles)."""
    graph_sp = graph_get(emulator, f"servicePrincipals(appId='{GRAPH_APP_ID}')")
    names = {role["id"]: role["value"] for role in graph_sp["appRoles"]}
    assignments = graph_get(emulator, f"servicePrincipals/{sp_id}/appRoleAssignments")["value"]
    return sorted(names[a["appRoleId"]] for a in assignments if a["resourceId"] == graph_sp["id"])


def token_roles(emulator: RunningEmulator, identity: dict[str, Any]) -> set[str]:
    """The ``roles`` claim of a token freshly issued to ``identity``."""
    token = graph_token(emulator, identity)
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return set(claims.get("roles", []))


@pytest.fixture
def identity(grant_emulator: RunningEmulator) -> dict[str, Any]:
    """A new managed identity with no Graph permissions."""
    return grant_emulator.admin.add_client(
        f"id-api-{uuid.uuid4().hex[:8]}", [], servicePrincipalType="ManagedIdentity"
    )


def test_dry_run_changes_nothing(grant_emulator: RunningEmulator, identity: dict[str, Any]) -> None:
    result = run_json(grant_emulator, "--identity-client-id", identity["clientId"], "--dry-run")
    assert set(result["wouldGrant"]) == LEAST_PRIVILEGE
    assert result["granted"] == [] and result["changed"] is False
    assert granted_roles(grant_emulator, identity["servicePrincipalId"]) == []
    assert token_roles(grant_emulator, identity) == set()


def test_first_run_grants_least_privilege_second_run_changes_nothing(
    grant_emulator: RunningEmulator, identity: dict[str, Any]
) -> None:
    assert token_roles(grant_emulator, identity) == set()

    first = run_json(grant_emulator, "--identity-client-id", identity["clientId"])
    assert set(first["granted"]) == LEAST_PRIVILEGE and first["changed"] is True
    assert first["identity"]["id"] == identity["servicePrincipalId"]
    assert granted_roles(grant_emulator, identity["servicePrincipalId"]) == sorted(LEAST_PRIVILEGE)
    assert token_roles(grant_emulator, identity) == LEAST_PRIVILEGE

    assignments_before = graph_get(grant_emulator, f"servicePrincipals/{identity['servicePrincipalId']}/appRoleAssignments")
    second = run_json(grant_emulator, "--identity-object-id", identity["servicePrincipalId"])
    assert second["granted"] == [] and second["changed"] is False
    assert set(second["alreadyGranted"]) == LEAST_PRIVILEGE
    assignments_after = graph_get(grant_emulator, f"servicePrincipals/{identity['servicePrincipalId']}/appRoleAssignments")
    assert assignments_after["value"] == assignments_before["value"]

    dry = run_json(grant_emulator, "--identity-client-id", identity["clientId"], "--dry-run")
    assert dry["wouldGrant"] == []


def test_the_script_grants_exactly_the_documented_set() -> None:
    from core.permissions import REQUIRED_GRAPH_PERMISSIONS

    grant_script = load_script("grant_graph_permissions")
    assert grant_script.LEAST_PRIVILEGE == tuple(REQUIRED_GRAPH_PERMISSIONS)
    assert set(REQUIRED_GRAPH_PERMISSIONS) == LEAST_PRIVILEGE


def test_the_old_fallback_flag_is_a_no_op(grant_emulator: RunningEmulator, identity: dict[str, Any]) -> None:
    run_json(grant_emulator, "--identity-client-id", identity["clientId"])
    done = run_script(grant_emulator, "--identity-name", identity["displayName"], "--fallback", "--json")
    assert done.returncode == 0, done.stderr
    assert "no longer needed" in done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["granted"] == [] and set(result["alreadyGranted"]) == LEAST_PRIVILEGE
    assert token_roles(grant_emulator, identity) == LEAST_PRIVILEGE


def test_an_identity_set_up_by_the_old_script_is_upgraded(grant_emulator: RunningEmulator) -> None:
    """Held before: OwnedBy + Application.Read.All + three of the five. Granted: the two missing;
    with --remove-unneeded the two old ones go (after a dry run that shows it and changes nothing)."""
    old = ["Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All", "Application.Read.All",
           "AuditLog.Read.All", "Directory.Read.All"]
    identity = grant_emulator.admin.add_client(f"id-old-{uuid.uuid4().hex[:8]}", old, servicePrincipalType="ManagedIdentity")
    upgraded = run_json(grant_emulator, "--identity-client-id", identity["clientId"])
    assert sorted(upgraded["granted"]) == ["Application.ReadWrite.All", "Synchronization.ReadWrite.All"]
    assert upgraded["notNeeded"] == ["Application.Read.All", "Application.ReadWrite.OwnedBy"]
    assert upgraded["removed"] == []
    dry = run_json(grant_emulator, "--identity-client-id", identity["clientId"], "--remove-unneeded", "--dry-run")
    assert sorted(dry["wouldRemove"]) == ["Application.Read.All", "Application.ReadWrite.OwnedBy"]
    assert token_roles(grant_emulator, identity) == LEAST_PRIVILEGE | {"Application.Read.All", "Application.ReadWrite.OwnedBy"}
    pruned = run_json(grant_emulator, "--identity-client-id", identity["clientId"], "--remove-unneeded")
    assert sorted(pruned["removed"]) == ["Application.Read.All", "Application.ReadWrite.OwnedBy"] and pruned["changed"]
    assert granted_roles(grant_emulator, identity["servicePrincipalId"]) == sorted(LEAST_PRIVILEGE)
    assert token_roles(grant_emulator, identity) == LEAST_PRIVILEGE
    again = run_json(grant_emulator, "--identity-client-id", identity["clientId"], "--remove-unneeded")
    assert again["changed"] is False and again["removed"] == []


def test_text_output_says_what_it_did(grant_emulator: RunningEmulator, identity: dict[str, Any]) -> None:
    dry = run_script(grant_emulator, "--identity-client-id", identity["clientId"], "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would grant      Application.ReadWrite.All" in dry.stdout
    assert "would grant      Synchronization.ReadWrite.All" in dry.stdout
    assert "nothing was changed" in dry.stdout
    done = run_script(grant_emulator, "--identity-client-id", identity["clientId"])
    assert "granted          AuditLog.Read.All" in done.stdout
    again = run_script(grant_emulator, "--identity-client-id", identity["clientId"])
    assert "Nothing to do" in again.stdout
    for output in (dry.stdout + dry.stderr, done.stdout + done.stderr):
        assert grant_emulator.admin.client("admin")["secret"] not in output


def test_permissions_beyond_the_needed_set_are_reported_not_removed(grant_emulator: RunningEmulator) -> None:
    identity = grant_emulator.admin.add_client(
        f"id-broad-{uuid.uuid4().hex[:8]}", ["Directory.ReadWrite.All"], servicePrincipalType="ManagedIdentity"
    )
    result = run_json(grant_emulator, "--identity-client-id", identity["clientId"])
    assert result["notNeeded"] == ["Directory.ReadWrite.All"]
    assert "Directory.ReadWrite.All" in granted_roles(grant_emulator, identity["servicePrincipalId"])


def test_unknown_identity_is_a_clear_error(grant_emulator: RunningEmulator) -> None:
    done = run_script(grant_emulator, "--identity-client-id", str(uuid.uuid4()))
    assert done.returncode == 1
    assert done.stderr.startswith("error: managed identity not found")
    assert "Traceback" not in done.stderr


def test_a_caller_without_rights_changes_nothing(grant_emulator: RunningEmulator, identity: dict[str, Any]) -> None:
    done = run_script(grant_emulator, "--identity-client-id", identity["clientId"], as_client="unprivileged")
    assert done.returncode == 1
    assert "403" in done.stderr and "Traceback" not in done.stderr
    assert granted_roles(grant_emulator, identity["servicePrincipalId"]) == []


def test_a_grant_made_concurrently_by_someone_else_counts_as_already_granted(
    grant_emulator: RunningEmulator, identity: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the script's read and its write another admin grants one role: Graph answers 400
    "already exists", and the run still succeeds, reporting that role as already granted."""
    grant_script = load_script("grant_graph_permissions")
    admin = grant_emulator.admin.client("admin")
    credential = ClientSecretCredential(
        grant_emulator.env["AZURE_TENANT_ID"], admin["clientId"], admin["secret"],
        authority=grant_emulator.env["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True,
        connection_verify=grant_emulator.ca_bundle,
    )
    graph = grant_script.Graph(credential, grant_emulator.url, "https://graph.microsoft.com/.default")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", grant_emulator.ca_bundle)  # requests prefers it to session.verify
    sp = graph.get(f"servicePrincipals/{identity['servicePrincipalId']}")
    # The "other admin": grant AuditLog.Read.All right after the script has listed the assignments.
    real_list = graph.list

    def list_then_race(path: str) -> list[dict[str, Any]]:
        items = real_list(path)
        if path.endswith("/appRoleAssignments"):
            graph_sp = graph.get(f"servicePrincipals(appId='{GRAPH_APP_ID}')")
            role_id = grant_script.application_roles(graph_sp)["AuditLog.Read.All"]
            graph.call("POST", f"servicePrincipals/{sp['id']}/appRoleAssignments",
                       {"principalId": sp["id"], "resourceId": graph_sp["id"], "appRoleId": role_id})
        return items

    graph.list = list_then_race  # type: ignore[method-assign]
    result = grant_script.grant(graph, sp, sorted(LEAST_PRIVILEGE), dry_run=False)
    assert "AuditLog.Read.All" in result.already_granted
    assert set(result.granted) == LEAST_PRIVILEGE - {"AuditLog.Read.All"}
    assert granted_roles(grant_emulator, sp["id"]) == sorted(LEAST_PRIVILEGE)
