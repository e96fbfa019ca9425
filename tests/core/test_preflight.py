"""core/preflight.py against the real emulator (real azure-identity, requests and Key Vault SDK) and a
real Azurite, as a library and as the ``python -m core.preflight`` CLI (a subprocess).

Permissions are removed the way an admin would: the ``admin`` client DELETEs the workflow identity's
app role assignment on the Microsoft Graph service principal. The preflight builds a new credential
each run, so the next token carries the new ``roles``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.identity import ClientSecretCredential
from azure.storage.queue import QueueServiceClient

from core import names, preflight
from core.permissions import REQUIRED_GRAPH_PERMISSIONS
from core_support import REPO, leaks, secret_texts
from devhost.testing import free_port
from emulator.permissions import GRAPH_APP_ROLES

EXPECTED_ROWS = (["settings", "graph token"] + [f"graph permission: {p}" for p in REQUIRED_GRAPH_PERMISSIONS]
                 + ["graph gallery", "key vault", "storage"])


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    """A private Azurite (started the way devhost starts it) holding the request queue; its connection string."""
    from devhost.azurite import AzuriteProcess, dev_connection_string, resolve_connection

    conn = dev_connection_string(free_port(), free_port(), free_port())
    process = AzuriteProcess.start(resolve_connection("AzureWebJobsStorage", {"AzureWebJobsStorage": conn}),
                                   str(tmp_path_factory.mktemp("azurite")), [str(REPO)])
    try:
        QueueServiceClient.from_connection_string(conn).create_queue(names.QUEUE_PROVISIONING_REQUESTS)
        yield conn
    finally:
        process.stop()


@pytest.fixture
def env(core_env, azurite) -> dict[str, str]:
    """The emulator's environment (reset tenant) plus the Azurite connection, as the app would have them."""
    return {**os.environ, "AzureWebJobsStorage": azurite}


def remove_permission(emu, permission: str, client: str = "workflow") -> None:
    """The admin deletes ``client``'s app role assignment of ``permission`` (Graph's own route)."""
    sp_id = emu.admin.client(client)["servicePrincipalId"]
    headers = {"Authorization": "Bearer " + emu.admin.token(client="admin")}
    url = f"{emu.url}/v1.0/servicePrincipals/{sp_id}/appRoleAssignments"
    listed = requests.get(url, headers=headers, verify=emu.ca_bundle, timeout=30)
    assert listed.status_code == 200, listed.text
    ids = [a["id"] for a in listed.json()["value"] if a["appRoleId"] == GRAPH_APP_ROLES[permission]]
    assert len(ids) == 1, f"{client} should hold {permission} exactly once"
    gone = requests.delete(f"{url}/{ids[0]}", headers=headers, verify=emu.ca_bundle, timeout=30)
    assert gone.status_code == 204, gone.text


def credential_of(emu, client: str) -> ClientSecretCredential:
    record = emu.admin.client(client)
    return ClientSecretCredential(os.environ["AZURE_TENANT_ID"], record["clientId"], record["secret"],
                                  authority=os.environ["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True)


def rows(report: preflight.PreflightReport) -> dict[str, preflight.CheckResult]:
    return {row.name: row for row in report.checks}


def assert_no_secret(text: str, env: dict[str, str], emu=None) -> None:
    values = secret_texts(env) + [env["AzureWebJobsStorage"].split("AccountKey=")[1].split(";")[0]]
    if emu is not None:
        values += [c["secret"] for c in emu.admin.clients() if c.get("secret")]
    found = leaks(text, values)
    assert not found, f"secret values in the preflight output: {found}"


# ------------------------------------------------------------------------------------------ library
def test_every_check_passes_with_the_default_client(env, core_env):
    report = preflight.run_preflight(env)
    assert [row.name for row in report.checks] == EXPECTED_ROWS
    assert report.ok and report.counts() == {"ok": len(EXPECTED_ROWS), "failed": 0, "warning": 0, "skipped": 0}, \
        preflight.format_report(report)
    by_name = rows(report)
    assert core_env.admin.client("workflow")["clientId"] in by_name["graph token"].detail
    assert "queue 'provisioning-requests' exists" in by_name["storage"].detail
    # Key Vault: one list of secret properties, never a secret read (GET /secrets/{name})
    vault = core_env.admin.requests(kind="keyvault")["value"]
    assert vault and {r["path"].rstrip("/") for r in vault} == {"/secrets"}, vault
    assert_no_secret(json.dumps(report.to_dict()) + preflight.format_report(report), env, core_env)


@pytest.mark.parametrize("permission", list(REQUIRED_GRAPH_PERMISSIONS))
def test_a_removed_permission_is_named_with_its_fix(env, core_env, permission):
    remove_permission(core_env, permission)
    report = preflight.run_preflight(env)
    failed = report.failed()
    assert [row.name for row in failed] == [f"graph permission: {permission}"], preflight.format_report(report)
    row = failed[0]
    assert "not granted" in row.detail and REQUIRED_GRAPH_PERMISSIONS[permission] in row.detail
    assert permission in row.fix and "grant_graph_permissions.py" in row.fix
    assert not report.ok
    # the other four stay granted, and the gallery read still works with the remaining roles
    assert rows(report)["graph gallery"].status == preflight.OK
    assert_no_secret(json.dumps(report.to_dict()), env, core_env)


def test_missing_and_invalid_settings_are_named_and_their_values_not_echoed(env, core_env):
    bad = {**env, "GRAPH_MAX_ATTEMPTS": "many-attempts-value", "MONITOR_FIRST_POLL_SECONDS": "soon"}
    del bad["KEY_VAULT_URL"]
    report = preflight.run_preflight(bad)
    by_name = rows(report)
    assert [r.name for r in report.failed()] == ["setting: KEY_VAULT_URL", "setting: GRAPH_MAX_ATTEMPTS",
                                                 "setting: MONITOR_FIRST_POLL_SECONDS"]
    assert "is required" in by_name["setting: KEY_VAULT_URL"].detail
    assert "expected an integer" in by_name["setting: GRAPH_MAX_ATTEMPTS"].detail
    assert "KEY_VAULT_URL" in by_name["setting: KEY_VAULT_URL"].fix
    # the Key Vault check reads the missing setting: skipped, not guessed; Graph does not read it: checked
    assert by_name["key vault"].status == preflight.SKIPPED and "KEY_VAULT_URL" in by_name["key vault"].detail
    assert by_name["graph gallery"].status == preflight.OK and by_name["storage"].status == preflight.OK
    assert not report.ok
    text = json.dumps(report.to_dict())
    assert "many-attempts-value" not in text and "soon" not in text


def test_an_invalid_graph_setting_skips_the_graph_checks_instead_of_using_the_default(env):
    report = preflight.run_preflight({**env, "GRAPH_BASE_URL": "http://graph.example"})
    by_name = rows(report)
    assert [r.name for r in report.failed()] == ["setting: GRAPH_BASE_URL"]
    assert by_name["graph gallery"].status == preflight.SKIPPED
    assert by_name["graph token"].status == preflight.OK and by_name["key vault"].status == preflight.OK


def test_key_vault_denied_is_named(env, core_env):
    """The ``unprivileged`` client has no Key Vault access (and no Graph permission)."""
    report = preflight.run_preflight(env, credential=credential_of(core_env, "unprivileged"))
    by_name = rows(report)
    vault = by_name["key vault"]
    assert vault.status == preflight.FAILED and "HTTP 403" in vault.detail
    assert "Key Vault Secrets User" in vault.fix
    assert {r.name for r in report.failed()} == {"key vault"} | {f"graph permission: {p}"
                                                                 for p in REQUIRED_GRAPH_PERMISSIONS}
    assert_no_secret(json.dumps(report.to_dict()), env, core_env)


def test_permissions_beyond_the_required_set_are_a_warning(env, core_env):
    report = preflight.run_preflight(env, credential=credential_of(core_env, "admin"))
    extra = rows(report)["graph permissions: beyond the required set"]
    assert extra.status == preflight.WARNING and "Directory.ReadWrite.All" in extra.detail
    assert report.ok  # a warning does not fail the preflight


class _StaticToken:
    """A credential that hands out one given token (here: a delegated token the emulator signed)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken(self.token, 4102444800)


def test_a_user_token_is_not_taken_for_the_apps_permissions(env, core_env):
    token = core_env.admin.token(client="workflow", roles=[], scp="Application.ReadWrite.All")
    report = preflight.run_preflight(env, credential=_StaticToken(token))
    by_name = rows(report)
    assert by_name["graph token"].status == preflight.FAILED and "delegated" in by_name["graph token"].detail
    assert by_name["graph permissions"].status == preflight.SKIPPED
    assert token not in json.dumps(report.to_dict())


def test_a_token_that_cannot_be_had_is_reported(env, core_env):
    cred = ClientSecretCredential(os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"], "wrong-secret-value",
                                  authority=os.environ["AZURE_AUTHORITY_HOST"], disable_instance_discovery=True)
    report = preflight.run_preflight(env, credential=cred)
    by_name = rows(report)
    assert by_name["graph token"].status == preflight.FAILED and "AZURE_CLIENT_SECRET" in by_name["graph token"].fix
    assert by_name["graph gallery"].status == preflight.SKIPPED
    assert "wrong-secret-value" not in json.dumps(report.to_dict())


def test_storage_problems_are_named(env, azurite):
    closed = azurite.replace(azurite.split("QueueEndpoint=http://127.0.0.1:")[1].split("/")[0], str(free_port()))
    unreachable = preflight.check_storage({"AzureWebJobsStorage": closed}, None)
    assert unreachable.status == preflight.FAILED and "did not list queues" in unreachable.detail
    missing = preflight.check_storage({}, None)
    assert missing.status == preflight.FAILED and "AzureWebJobsStorage is not set" in missing.detail
    dts = preflight.check_storage({"AzureWebJobsStorage": azurite, preflight.DTS_SETTING: "Endpoint=x"}, None)
    assert dts.status == preflight.OK and "Durable Task Scheduler" in dts.detail
    service = QueueServiceClient.from_connection_string(azurite)
    service.delete_queue(names.QUEUE_PROVISIONING_REQUESTS)
    try:
        absent = preflight.check_storage({"AzureWebJobsStorage": azurite}, None)
        assert absent.status == preflight.WARNING and "does not exist yet" in absent.detail
    finally:
        service.create_queue(names.QUEUE_PROVISIONING_REQUESTS)
    for row in (unreachable, missing, absent):
        assert "AccountKey" not in row.detail + row.fix


def test_the_task_hub_row_reads_the_answer_of_the_status_probe():
    assert preflight.task_hub_result(404, "hub").status == preflight.OK
    failed = preflight.task_hub_result(500, "hub")
    assert failed.status == preflight.FAILED and "HTTP 500" in failed.detail and failed.fix
    assert preflight.task_hub_result(None, "hub", ConnectionError("x")).status == preflight.FAILED


# ------------------------------------------------------------------------------------------ CLI
def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.preflight", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_prints_the_table_and_exits_0_when_all_pass(env, core_env):
    done = _cli(env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("Preflight PASSED")
    for name in EXPECTED_ROWS:
        assert name in done.stdout
    assert_no_secret(done.stdout + done.stderr, env, core_env)


def test_cli_json_names_a_removed_permission_and_exits_1(env, core_env):
    remove_permission(core_env, "AuditLog.Read.All")
    done = _cli(env, "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    failed = [c for c in report["checks"] if c["status"] == "failed"]
    assert [c["name"] for c in failed] == ["graph permission: AuditLog.Read.All"]
    assert "grant_graph_permissions.py" in failed[0]["fix"]
    assert_no_secret(done.stdout + done.stderr, env, core_env)


def test_cli_reads_settings_from_an_env_file_or_local_settings_json(env, core_env, tmp_path: Path):
    values = {**core_env.env, "AzureWebJobsStorage": env["AzureWebJobsStorage"]}
    dotenv = tmp_path / "app.env"
    dotenv.write_text("# the emulator's variables\n" + "".join(f"{k}={v}\n" for k, v in values.items()))
    local_settings = tmp_path / "local.settings.json"
    local_settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    bare = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    for path in (dotenv, local_settings):
        done = _cli(bare, "--env-file", str(path))
        assert done.returncode == 0, done.stdout + done.stderr
    # the environment wins over the file, as with the Functions host
    overridden = _cli({**bare, "GRAPH_API_VERSION": "v3"}, "--env-file", str(local_settings), "--json")
    assert overridden.returncode == 1
    assert [c["name"] for c in json.loads(overridden.stdout)["checks"] if c["status"] == "failed"] == [
        "setting: GRAPH_API_VERSION"]
    missing = _cli(bare)
    assert missing.returncode == 1 and "setting: KEY_VAULT_URL" in missing.stdout


def test_unreachable_graph_and_key_vault_are_named(env):
    closed = f"https://127.0.0.1:{free_port()}"
    report = preflight.run_preflight({**env, "GRAPH_BASE_URL": closed, "KEY_VAULT_URL": closed,
                                      "GRAPH_MAX_ATTEMPTS": "1", "GRAPH_CONNECT_TIMEOUT_SECONDS": "2"})
    by_name = rows(report)
    assert [r.name for r in report.failed()] == ["graph gallery", "key vault"]
    assert "ConnectionError" in by_name["graph gallery"].detail and "network" in by_name["graph gallery"].fix
    assert "cannot reach Key Vault" in by_name["key vault"].detail and "KEY_VAULT_URL" in by_name["key vault"].fix
    assert by_name["graph token"].status == preflight.OK  # the token comes from the authority, not from Graph


def test_a_token_that_is_not_a_jwt_is_reported():
    with pytest.raises(ValueError):
        preflight.decode_claims("opaque-token")
    with pytest.raises(ValueError):
        preflight.decode_claims("a.bm90LWpzb24tb2JqZWN0.c")  # payload 'not-json-object'


def test_preflight_and_the_graph_client_read_the_token_with_one_decoder(env):
    """Found in review: two JWT decoders (preflight's and GraphClient.granted_roles) could drift apart."""
    import base64
    import json

    from azure.core.credentials import AccessToken

    from core import identity
    from core.graph.transport import GraphClient
    from core.settings import Settings

    assert preflight.decode_claims is identity.decode_claims
    payload = base64.urlsafe_b64encode(json.dumps({"roles": ["B.Read", "A.Write"]}).encode()).decode().rstrip("=")
    client = GraphClient(Settings.from_env(env), credential=None, write_pacer=False)
    client._token = AccessToken(f"e30.{payload}.sig", 4102444800)
    assert client.granted_roles() == ("A.Write", "B.Read") == tuple(sorted(preflight.decode_claims(client._token.token)["roles"]))
    client._token = AccessToken("opaque-token", 4102444800)
    assert client.granted_roles() is None


def test_a_setting_whose_default_conflicts_is_left_out_too(env):
    """MONITOR_FIRST_POLL_SECONDS invalid: its default (60) would exceed MONITOR_MAX_POLL_SECONDS=3."""
    report = preflight.run_preflight({**env, "MONITOR_FIRST_POLL_SECONDS": "x", "MONITOR_MAX_POLL_SECONDS": "3"})
    assert [r.name for r in report.failed()] == ["setting: MONITOR_FIRST_POLL_SECONDS"]
    assert rows(report)["key vault"].status == preflight.OK


def test_main_in_process_prints_json_and_the_table(env, core_env, monkeypatch, capsys):
    monkeypatch.setenv("AzureWebJobsStorage", env["AzureWebJobsStorage"])
    assert preflight.main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    remove_permission(core_env, "Directory.Read.All")
    assert preflight.main([]) == 1
    out = capsys.readouterr().out
    assert out.startswith("Preflight FAILED: 9 ok, 1 failed") and "fix: an admin grants" in out


def test_a_bad_identity_setting_skips_every_check_that_gets_a_token(env):
    report = preflight.run_preflight({**env, "AZURE_DISABLE_INSTANCE_DISCOVERY": "perhaps"})
    by_name = rows(report)
    assert [r.name for r in report.failed()] == ["setting: AZURE_DISABLE_INSTANCE_DISCOVERY"]
    for name in ("graph token", "graph gallery", "key vault"):
        assert by_name[name].status == preflight.SKIPPED, name
    assert not report.ok


def test_env_files_are_read_as_dotenv_or_local_settings_json(tmp_path: Path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\n\nexport GRAPH_API_VERSION=beta\nKEY_VAULT_URL=\"https://v.vault.azure.net\"\nnoise\n")
    assert preflight.read_env_file(dotenv) == {"GRAPH_API_VERSION": "beta", "KEY_VAULT_URL": "https://v.vault.azure.net"}
    settings_json = tmp_path / "local.settings.json"
    settings_json.write_text(json.dumps({"IsEncrypted": False, "Values": {"A": "1", "B": None}}))
    assert preflight.read_env_file(settings_json) == {"A": "1"}


class _BrokenCredential:
    """A credential that answers something that is not a token (a bug in a custom credential)."""

    def get_token(self, *scopes, **kwargs):
        return None

    get_token_info = None


def test_a_check_that_raises_is_a_failed_row_and_the_others_still_run(env):
    report = preflight.run_preflight(env, credential=_BrokenCredential())
    by_name = rows(report)
    assert by_name["graph token"].status == preflight.FAILED
    assert "the check itself failed: AttributeError" in by_name["graph token"].detail
    assert by_name["key vault"].status == preflight.FAILED and by_name["storage"].status == preflight.OK
