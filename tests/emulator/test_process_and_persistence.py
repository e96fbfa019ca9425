"""``python -m emulator`` as a process: env file, flags, and a tenant that survives restarts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.clock import parse_iso
from emulator.testing import REPO_ROOT, start_emulator_process
from emulator_graph import GraphClient

ENV_KEYS = {
    "AZURE_AUTHORITY_HOST", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "GRAPH_BASE_URL",
    "KEY_VAULT_URL", "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE", "AZURE_DISABLE_INSTANCE_DISCOVERY",
    "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "EMULATOR_URL",
}

pytestmark = pytest.mark.timeout(120)


def _kv_put(emu, name: str, value: str) -> str:
    import requests

    token = emu.admin.token("workflow", audience="vault")
    response = requests.put(f"{emu.env['KEY_VAULT_URL']}/secrets/{name}", params={"api-version": "7.6"},
                            json={"value": value}, headers={"Authorization": f"Bearer {token}"}, verify=emu.ca_bundle)
    assert response.status_code == 200, response.text
    return response.json()["id"].rsplit("/", 1)[1]


def _kv_versions(emu, name: str) -> list[str]:
    import requests

    token = emu.admin.token("workflow", audience="vault")
    response = requests.get(f"{emu.env['KEY_VAULT_URL']}/secrets/{name}/versions", params={"api-version": "7.6"},
                            headers={"Authorization": f"Bearer {token}"}, verify=emu.ca_bundle)
    return [item["id"].rsplit("/", 1)[1] for item in response.json()["value"]]


def test_env_file_and_flags(tmp_path: Path):
    env_file = tmp_path / "out" / "emulator.env"
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--env-file", str(env_file), "--seed", "7",
         "--cert-dir", str(REPO_ROOT / ".emulator")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not env_file.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        assert env_file.exists(), process.stderr.read() if process.poll() is not None else "no env file"
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert ENV_KEYS <= set(env)
        assert env["KEY_VAULT_VERIFY_CHALLENGE_RESOURCE"] == "false"
        assert env["AZURE_DISABLE_INSTANCE_DISCOVERY"] == "true"
        assert env["GRAPH_BASE_URL"].startswith("https://127.0.0.1:")
        assert env["EMULATOR_URL"] == env["GRAPH_BASE_URL"] + "/_emulator"
        assert Path(env["REQUESTS_CA_BUNDLE"]).is_file()
        # The env file is only written once the server accepts connections.
        import requests

        assert requests.get(f"{env['EMULATOR_URL']}/health", verify=env["REQUESTS_CA_BUNDLE"]).json() == {"status": "ok"}
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert f"AZURE_TENANT_ID={env['AZURE_TENANT_ID']}" in out


def test_same_seed_same_tenant_other_seed_other_tenant():
    from emulator.directory import Directory
    from emulator.clock import Clock

    first, again, other = Directory(Clock(), 7), Directory(Clock(), 7), Directory(Clock(), 8)
    assert first.tenant_id == again.tenant_id != other.tenant_id
    assert first.client_by_name("workflow")["secret"] == again.client_by_name("workflow")["secret"]


@pytest.mark.parametrize(
    "args, message",
    [(["--time-scale", "0"], "time-scale"), (["--port", "70000"], "port"), (["--faults", "/nonexistent.json"], "faults"),
     (["--settings", "/nonexistent.json"], "settings")],
)
def test_bad_flags_exit_with_usage_error(args, message):
    result = subprocess.run([sys.executable, "-m", "emulator", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_faults_settings_and_secrets_files_are_applied(tmp_path: Path):
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"latency": {"ms": 1}, "throttling": {"retryAfter": "integer"}}))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"directory": {"duplicateAssignmentStatus": 409},
                                    "provisioning": {"secretKeyErrorStatus": 400, "pauseScheduleState": "Paused",
                                                     "logCapacity": 500, "targetsPath": str(REPO_ROOT / "emulator/data/targets.json")}}))
    vault_seed = tmp_path / "secrets.json"
    vault_seed.write_text(json.dumps({"secrets": {"my-target-token": {"value": "s3cret", "tags": {"scenario": "healthy"}},
                                                  "plain-one": "plain"}}))
    emu = start_emulator_process(faults_file=faults, extra_args=["--settings", str(settings), "--secrets-file", str(vault_seed)])
    try:
        import requests

        vault_token = GraphClient(emu).fetch_token("https://vault.azure.net/.default")
        seeded = requests.get(f"{emu.env['KEY_VAULT_URL']}/secrets/my-target-token", params={"api-version": "7.6"},
                              headers={"Authorization": f"Bearer {vault_token}"}, verify=emu.ca_bundle, timeout=10)
        assert seeded.status_code == 200 and seeded.json()["value"] == "s3cret"
        assert seeded.json()["tags"] == {"scenario": "healthy"}
        default_seed = requests.get(f"{emu.env['KEY_VAULT_URL']}/secrets/scim-contoso-token", params={"api-version": "7.6"},
                                    headers={"Authorization": f"Bearer {vault_token}"}, verify=emu.ca_bundle, timeout=10)
        assert default_seed.status_code == 404  # the file replaces the default seed
        config = emu.admin.faults()
        assert config["latency"]["ms"] == 1 and config["throttling"]["retryAfter"] == "integer"
        assert emu.admin.settings()["directory"]["duplicateAssignmentStatus"] == 409
        knobs = emu.admin.provisioning_settings()
        assert knobs["secretKeyErrorStatus"] == 400 and knobs["pauseScheduleState"] == "Paused"
        graph = GraphClient(emu)
        _, sp = graph.instantiate("Settings file app")
        wrong = graph.put(f"servicePrincipals/{sp['id']}/synchronization/secrets", json={"value": [{"key": "baseAddress", "value": "x"}]})
        assert wrong.status_code == 400
    finally:
        emu.stop()


@pytest.mark.parametrize(
    "content",
    [{"provisioning": {"noSuchKnob": 1}}, {"provisioning": {"secretKeyErrorStatus": 418}},
     {"directory": {"duplicateAssignmentStatus": 401}}, {"other": {}}, [], {"provisioning": {"logCapacity": "many"}}],
)
def test_bad_settings_file_is_a_usage_error(tmp_path: Path, capsys, content):
    """Checked by the argument parser (in-process here; the subprocess path is in the test above)."""
    from emulator.__main__ import parse_args

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(content))
    with pytest.raises(SystemExit) as exited:
        parse_args(["--settings", str(settings)])
    assert exited.value.code == 2
    assert "--settings" in capsys.readouterr().err


def test_tenant_survives_graceful_restart(tmp_path: Path):
    state_dir = tmp_path / "state"
    emu = start_emulator_process(state_dir=state_dir)
    try:
        graph = GraphClient(emu)
        app, sp = graph.instantiate("Persistent app")
        job = graph.post(f"servicePrincipals/{sp['id']}/synchronization/jobs", json={"templateId": "scim"}).json()
        assert graph.put(f"servicePrincipals/{sp['id']}/synchronization/secrets", json={"value": [
            {"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"},
            {"key": "SecretToken", "value": "demo-scim-token"}]}).status_code == 204
        user_id = graph.get("users", params={"$top": "1"}).json()["value"][0]["id"]
        role_id = next(r["id"] for r in sp["appRoles"] if r["displayName"] == "User")
        assert graph.post(f"servicePrincipals/{sp['id']}/appRoleAssignedTo",
                          json={"principalId": user_id, "resourceId": sp["id"], "appRoleId": role_id}).status_code == 201
        assert graph.post(f"servicePrincipals/{sp['id']}/synchronization/jobs/{job['id']}/start").status_code == 204
        clock_before = emu.admin.advance(600)["now"]
        status_before = graph.get(f"servicePrincipals/{sp['id']}/synchronization/jobs/{job['id']}").json()["status"]
        assert status_before["code"] == "Active"
        logs_before = graph.get("auditLogs/provisioning", params={"$filter": f"jobId eq '{job['id']}'"}).json()["value"]
        assert logs_before
        first = _kv_put(emu, "persisted-secret", "one")
        second = _kv_put(emu, "persisted-secret", "two")
        emu.admin.add_client("added-later", ["Application.Read.All"])
        tenant = emu.env["AZURE_TENANT_ID"]
        old_token = graph.token
    finally:
        emu.stop()
    assert (state_dir / "tenant.json").is_file() and (state_dir / "ca.pem").is_file()

    emu = start_emulator_process(state_dir=state_dir)
    try:
        assert emu.env["AZURE_TENANT_ID"] == tenant
        graph = GraphClient(emu)
        # A token issued before the restart is still valid (same signing key).
        assert graph.get(f"servicePrincipals/{sp['id']}", token=old_token).status_code == 200
        assert graph.get(f"applications/{app['id']}").json()["displayName"] == "Persistent app"
        jobs = graph.get(f"servicePrincipals/{sp['id']}/synchronization/jobs").json()["value"]
        assert [j["id"] for j in jobs] == [job["id"]]
        secrets = graph.get(f"servicePrincipals/{sp['id']}/synchronization/secrets").json()["value"]
        assert {s["key"] for s in secrets} == {"BaseAddress", "SecretToken"}
        assert _kv_versions(emu, "persisted-secret") == [first, second]
        assert emu.admin.client("added-later")["clientId"]
        # The simulation continues where it was: clock not behind, job still steady, its logs kept.
        assert parse_iso(emu.admin.clock()["now"]) >= parse_iso(clock_before)
        status_after = graph.get(f"servicePrincipals/{sp['id']}/synchronization/jobs/{job['id']}").json()["status"]
        assert status_after["code"] == "Active"
        assert status_after["steadyStateFirstAchievedTime"] == status_before["steadyStateFirstAchievedTime"]
        logs_after = graph.get("auditLogs/provisioning", params={"$filter": f"jobId eq '{job['id']}'"}).json()["value"]
        assert {r["id"] for r in logs_before} <= {r["id"] for r in logs_after}
        # Ownership survived too: the least-privilege app can still write its own SP.
        assert graph.patch(f"servicePrincipals/{sp['id']}", json={"tags": ["after-restart"]}).status_code == 204
    finally:
        emu.stop()


def test_tenant_survives_kill_after_flush(tmp_path: Path):
    state_dir = tmp_path / "state"
    emu = start_emulator_process(state_dir=state_dir)
    try:
        graph = GraphClient(emu)
        _, sp = graph.instantiate("Survives SIGKILL")
        emu.admin.add_client("registered-before-kill", [])  # admin changes are flushed too
        deadline = time.monotonic() + 10
        state_file = state_dir / "tenant.json"
        while time.monotonic() < deadline:
            if state_file.exists() and "registered-before-kill" in state_file.read_text():
                break
            time.sleep(0.05)
        emu.kill()
    finally:
        emu.stop()
    emu = start_emulator_process(state_dir=state_dir)
    try:
        assert GraphClient(emu).get(f"servicePrincipals/{sp['id']}").status_code == 200
        assert emu.admin.client("registered-before-kill")["clientId"]
    finally:
        emu.stop()


def test_port_in_use_is_a_clear_error():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "emulator", "--port", str(port), "--cert-dir", str(REPO_ROOT / ".emulator")],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr
