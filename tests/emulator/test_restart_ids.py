"""Restarts with ``--state-dir``: ids drawn after a restart never repeat ids drawn before it, and
what ``PATCH /_emulator/settings`` changed survives the restart (found in review)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from emulator.testing import start_emulator
from emulator_graph import GraphClient

pytestmark = pytest.mark.timeout(120)

SCIM_CREDS = [{"key": "BaseAddress", "value": "https://scim.contoso.test/scim/v2"},
              {"key": "SecretToken", "value": "demo-scim-token"}]


def _kv(emu, method: str, path: str, **kwargs) -> requests.Response:
    token = emu.admin.token("workflow", audience="vault")
    return requests.request(method, f"{emu.env['KEY_VAULT_URL']}{path}", params={"api-version": "7.6"},
                            headers={"Authorization": f"Bearer {token}"}, verify=emu.ca_bundle, timeout=10, **kwargs)


def _version(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["id"].rsplit("/", 1)[1]


def test_key_vault_version_ids_do_not_repeat_after_restart(tmp_path: Path):
    emu = start_emulator(state_dir=tmp_path)
    try:
        first = _version(_kv(emu, "PUT", "/secrets/my-secret", json={"value": "one"}))
    finally:
        emu.stop()
    emu = start_emulator(state_dir=tmp_path)
    try:
        second = _version(_kv(emu, "PUT", "/secrets/my-secret", json={"value": "two"}))
        assert second != first
        versions = [item["id"].rsplit("/", 1)[1] for item in _kv(emu, "GET", "/secrets/my-secret/versions").json()["value"]]
        assert sorted(versions) == sorted([first, second])
        assert _kv(emu, "GET", f"/secrets/my-secret/{first}").json()["value"] == "one"
        assert _kv(emu, "GET", f"/secrets/my-secret/{second}").json()["value"] == "two"
    finally:
        emu.stop()


def _create_job(graph: GraphClient, name: str) -> tuple[dict, dict]:
    _, sp = graph.instantiate(name)
    response = graph.post(f"servicePrincipals/{sp['id']}/synchronization/jobs", json={"templateId": "scim"})
    assert response.status_code == 201, response.text
    return sp, response.json()


def test_job_ids_do_not_repeat_after_restart_and_other_jobs_are_untouched(tmp_path: Path):
    emu = start_emulator(state_dir=tmp_path)
    try:
        sp1, job1 = _create_job(GraphClient(emu), "Before restart")
    finally:
        emu.stop()
    emu = start_emulator(state_dir=tmp_path)
    try:
        graph = GraphClient(emu)
        sp2, job2 = _create_job(graph, "After restart")
        assert job2["id"] != job1["id"]
        base2 = f"servicePrincipals/{sp2['id']}/synchronization"
        assert graph.put(f"{base2}/secrets", json={"value": SCIM_CREDS}).status_code == 204
        assert graph.post(f"{base2}/jobs/{job2['id']}/start").status_code == 204
        old = graph.get(f"servicePrincipals/{sp1['id']}/synchronization/jobs/{job1['id']}")
        assert old.status_code == 200, old.text
        assert old.json()["status"]["code"] == "NotConfigured"  # never started, no secrets: still its own job
        assert [j["id"] for j in graph.get(f"{base2}/jobs").json()["value"]] == [job2["id"]]
    finally:
        emu.stop()


def _settings(emu, patch: dict | None = None) -> dict:
    url = f"{emu.env['EMULATOR_URL']}/settings"
    if patch is None:
        response = requests.get(url, verify=emu.ca_bundle, timeout=10)
    else:
        response = requests.patch(url, json=patch, verify=emu.ca_bundle, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_settings_changed_at_runtime_survive_a_restart(tmp_path: Path):
    emu = start_emulator(state_dir=tmp_path, provisioning_settings={"pauseScheduleState": "Paused"})
    try:
        _settings(emu, {"directory": {"duplicateAssignmentStatus": 409},
                        "provisioning": {"secretKeyErrorStatus": 400, "cycleStartDelaySeconds": 5,
                                         "pauseScheduleState": "Disabled"}})
    finally:
        emu.stop()
    # The same start settings: everything PATCHed is back, including what overrode the start file.
    emu = start_emulator(state_dir=tmp_path)
    try:
        settings = _settings(emu)
        assert settings["directory"]["duplicateAssignmentStatus"] == 409
        assert settings["provisioning"]["secretKeyErrorStatus"] == 400
        assert settings["provisioning"]["cycleStartDelaySeconds"] == 5
        assert settings["provisioning"]["pauseScheduleState"] == "Disabled"
        emu.admin.reset()  # reset goes back to this start's values
        settings = _settings(emu)
        assert settings["directory"]["duplicateAssignmentStatus"] == 400
        assert settings["provisioning"]["secretKeyErrorStatus"] == 500
        _settings(emu, {"provisioning": {"secretKeyErrorStatus": 400}, "directory": {"duplicateAssignmentStatus": 409}})
    finally:
        emu.stop()
    # Keys named by the new start's settings win over the saved values; the others are restored.
    emu = start_emulator(state_dir=tmp_path, provisioning_settings={"secret_key_error_status": 500},
                         directory_settings={"duplicateAssignmentStatus": 400})
    try:
        settings = _settings(emu)
        assert settings["provisioning"]["secretKeyErrorStatus"] == 500
        assert settings["directory"]["duplicateAssignmentStatus"] == 400
    finally:
        emu.stop()
