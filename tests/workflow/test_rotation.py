"""Credential rotation end to end on devhost + emulator + Azurite (docs/architecture.md, "The fleet registry and credential rotation").

One batch of three instances referencing Key Vault secret ``scim-contoso-token`` and one
referencing ``scim-fabrikam-token``; then: the fleet registry holds every instance (references and
versions, never a value); a new valid version reaches exactly the three (and only the one in a
credential quarantine is restarted); the same rotation asked again does nothing; an invalid version
changes nothing and is reported; the health sweep's lag check sees a version the registry missed;
the expiry calendar lists each secret with its days left; no secret value anywhere.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest
import requests
from azure.data.tables import TableClient

from core import names
from core.instance_ids import rotation_instance_id
from support import Stack, make_batch, secret_names, secret_values

TAG = "entra-provisioning-fleet"
EXPIRED = "rotation-expired-token"  # played by a wrong token saved on one job behind the workflow's back
INVALID = "rotation-wrong-token-value"  # a new Key Vault version the target refuses
ADDRESS = "https://scim.contoso.test/scim/v2"


#: AWS IAM Identity Center (SCIM: BaseAddress + SecretToken): its instances get a per-template canary
AWS_IDC_TEMPLATE = "21ed01d2-ec13-4e9e-86c1-cd546719ebc4"


def _seeded_group(name: str) -> str:
    """A group's id in the emulator's seeded tenant (seed 0: the same ids in every emulator started with it)."""
    from emulator.state import EmulatorState, Options

    return next(gid for gid, g in EmulatorState(Options()).directory.groups.items() if g.get("displayName") == name)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    canaries = json.dumps({AWS_IDC_TEMPLATE: f"Group:{_seeded_group('SaaS Pilot')}"})
    running = Stack(tmp_path_factory.mktemp("workflow-rotation"), time_scale=30.0,
                    env={"ROTATION_CANARY_BY_TEMPLATE": canaries})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def fleet(stack):
    body = make_batch("rotation-001", 3, prefix="Rotation Contoso")
    body["instances"] += make_batch("x", 1, prefix="Rotation Fabrikam", target="fabrikam")["instances"]
    batch_id = stack.submit(body)
    status = stack.wait(batch_id, timeout=180)
    instances = status["output"]["instances"]
    assert [i["outcome"] for i in instances] == ["steadyState"] * 4, instances
    by_name = {i["displayName"]: i["ids"]["servicePrincipalId"] for i in instances}
    contoso = sorted(sp for name, sp in by_name.items() if "Contoso" in name)
    fabrikam = [sp for name, sp in by_name.items() if "Fabrikam" in name]
    return contoso, fabrikam


def _registry(stack) -> dict[str, dict]:
    table = TableClient.from_connection_string(stack.storage, "fleetregistry")
    return {row["RowKey"]: dict(row) for row in table.list_entities()}


def _saved_tags(stack, sp_id: str) -> dict[str, str]:
    sp = stack.emulator.state.directory.service_principals[sp_id]
    prefix = f"{TAG}:kv-saved:"
    return dict(t[len(prefix):].split("=", 1) for t in sp.get("tags") or [] if t.startswith(prefix))


def _new_version(stack, name: str, value: str, expires_in_days: float | None = None) -> str:
    expires = int(time.time() + expires_in_days * 86400) if expires_in_days is not None else None
    return stack.emulator.state.key_vault.set(name, value, "text/plain", {}, expires)["version"]


def _rotate(stack, secret: str, version: str | None = None, expect_duplicate: bool = False) -> dict:
    body = {"secretName": secret} if version is None else {"secretName": secret, "version": version}
    response = stack.request("POST", "/api/rotations", json=body)
    assert response.status_code == 202, response.text
    assert response.headers["X-Rotation-Duplicate"] == ("true" if expect_duplicate else "false")
    rotation_id = response.json()["id"]
    stack.wait(rotation_id, timeout=120)
    report = stack.request("GET", f"/api/rotations/{rotation_id}")
    assert report.status_code == 200, report.text
    return report.json()["report"]


def _writes_to(stack, sp_ids: list[str]) -> list[dict]:
    return [r for r in stack.graph_requests() if r["method"] in ("PUT", "PATCH", "POST")
            and any(f"/servicePrincipals/{sp}" in r["path"] for sp in sp_ids)]


def _event_lines(stack, event: str) -> list[dict]:
    """The devhost log's structured lines of ``event`` (core/events.py)."""
    lines = [line[line.index("{"):] for line in stack.host.log_text().splitlines() if f'"event": "{event}"' in line]
    return [json.loads(line) for line in lines]


def _put_target_token(stack, sp_id: str, token: str) -> None:
    bearer = stack.emulator.admin.token(client="workflow")
    response = requests.put(f"{stack.emulator.url}/v1.0/servicePrincipals/{sp_id}/synchronization/secrets",
                            json={"value": [{"key": "BaseAddress", "value": ADDRESS},
                                            {"key": "SecretToken", "value": token}]},
                            headers={"Authorization": f"Bearer {bearer}"}, verify=stack.emulator.ca_bundle, timeout=30)
    assert response.status_code == 204, response.text


def test_the_registry_holds_every_instance_with_references_and_versions(stack, fleet):
    contoso, fabrikam = fleet
    rows = _registry(stack)
    assert set(rows) == set(contoso + fabrikam)
    for sp_id in contoso:
        secrets = json.loads(rows[sp_id]["secrets"])
        assert set(secrets) == {"scim-contoso-token"}
        assert secrets["scim-contoso-token"]["version"] == _saved_tags(stack, sp_id)["scim-contoso-token"]
        assert json.loads(rows[sp_id]["credentials"])["SecretToken"] == {"keyVaultSecret": "scim-contoso-token"}
        assert rows[sp_id]["lastOutcome"] == "configured" and rows[sp_id]["instanceKey"]


def test_a_new_version_reaches_every_referencing_instance_and_restarts_only_the_quarantined(stack, fleet):
    contoso, fabrikam = fleet
    quarantined = contoso[0]
    _put_target_token(stack, quarantined, EXPIRED)  # its token "expired": the next cycle quarantines the job
    stack.emulator.admin.advance(3 * 3600)
    (job,) = stack.jobs_of(quarantined)
    assert job["status"]["code"] == "Quarantine", job["status"]
    before = len(stack.graph_requests())

    version = _new_version(stack, "scim-contoso-token", "demo-scim-token", expires_in_days=90)
    report = _rotate(stack, "scim-contoso-token", version)
    assert report["counts"] == {"rotated": 3}, report
    by_sp = {entry["servicePrincipalId"]: entry for entry in report["instances"]}
    assert set(by_sp) == set(contoso)
    assert [sp for sp, e in by_sp.items() if e["restarted"]] == [quarantined]
    for sp_id in contoso:
        assert _saved_tags(stack, sp_id)["scim-contoso-token"] == version
        row = _registry(stack)[sp_id]
        assert json.loads(row["secrets"])["scim-contoso-token"]["version"] == version
        assert json.loads(row["secrets"])["scim-contoso-token"]["expires"]
    after = stack.graph_requests()[before:]
    assert not [r for r in after if r["method"] != "GET" and f"/servicePrincipals/{fabrikam[0]}" in r["path"]]
    restarts = [r for r in after if r["path"].endswith("/restart")]
    assert len(restarts) == 1 and quarantined in restarts[0]["path"]
    stack.emulator.admin.advance(3 * 3600)
    (job,) = stack.jobs_of(quarantined)
    assert job["status"]["code"] == "Active" and job["status"]["quarantine"] is None

    # the same version again (a duplicated event, a retry): the same rotation, nothing new
    writes = len(_writes_to(stack, contoso + fabrikam))
    again = _rotate(stack, "scim-contoso-token", version, expect_duplicate=True)
    assert again == report
    assert len(_writes_to(stack, contoso + fabrikam)) == writes
    # one credentialRotationCompleted line for the rotation, however often it was asked for (not on replay)
    completed = [line for line in _event_lines(stack, "credentialRotationCompleted") if line["rotationId"] == report["rotationId"]]
    assert len(completed) == 1 and completed[0]["counts"] == {"rotated": 3} and completed[0]["total"] == 3, completed


def test_an_invalid_version_changes_nothing_and_is_reported(stack, fleet):
    contoso, fabrikam = fleet
    saved = {sp: _saved_tags(stack, sp) for sp in contoso}
    writes = len(_writes_to(stack, contoso + fabrikam))
    version = _new_version(stack, "scim-contoso-token", INVALID, expires_in_days=5.5)
    report = _rotate(stack, "scim-contoso-token")  # no version: Key Vault's current one
    assert report["version"] == version and report["counts"] == {"invalid": 3}, report
    assert all("refused" in e["reason"] and not e["restarted"] for e in report["instances"])
    # validateCredentials is a POST, nothing else was written
    assert [r["path"].rsplit("/", 1)[-1] for r in _writes_to(stack, contoso + fabrikam)[writes:]] == \
        ["validateCredentials"] * 3
    assert {sp: _saved_tags(stack, sp) for sp in contoso} == saved
    log = stack.host.log_text()
    failed = [json.loads(line[line.index("{"):]) for line in log.splitlines() if "credentialRotationFailed" in line]
    assert {f["servicePrincipalId"] for f in failed if f["rotationId"] == report["rotationId"]} == set(contoso)


def test_the_lag_check_sees_a_version_no_event_delivered(stack, fleet):
    """The sweep's safety net, one page's lag check: the current version (the invalid one) differs from
    the one recorded on the contoso instances (their kv-saved tags, from the listing)."""
    contoso, fabrikam = fleet
    from activities import BODIES, run
    from core import clients
    from emulator.testing import apply_env

    previous = apply_env(stack.env)
    clients.reset()
    try:
        listed = run(names.LIST_MANAGED_INSTANCES, {"pageSize": 50}, BODIES[names.LIST_MANAGED_INSTANCES])
        refs = [{"servicePrincipalId": i["servicePrincipalId"], "savedVersions": i["savedVersions"]}
                for i in listed["instances"] if i.get("savedVersions")]
        page = run(names.CHECK_SWEEP_PAGE_LAG, {"instances": refs}, BODIES[names.CHECK_SWEEP_PAGE_LAG])
        bad = run(names.CHECK_SWEEP_PAGE_LAG, {"instances": [{"savedVersions": "not a map"}]},
                  BODIES[names.CHECK_SWEEP_PAGE_LAG])
        rebuilt = run(names.REBUILD_FLEET_REGISTRY, {}, BODIES[names.REBUILD_FLEET_REGISTRY])
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        clients.reset()
    assert page["ok"], page
    lagging = {e["servicePrincipalId"] for e in page["lagging"]}
    assert contoso[1] in lagging and fabrikam[0] not in lagging, page["lagging"]
    (rotation,) = page["rotations"]
    assert rotation["secretName"] == "scim-contoso-token"
    assert page["secretsRead"] == 2  # Key Vault read once per secret name, not once per instance
    assert bad["ok"] is False and bad["error"]["code"] == "InvalidRequest"
    assert rebuilt["ok"] and rebuilt["instances"] == 4 and rebuilt["removed"] == []

    # what the health sweep starts for it (one call per lagging secret version, however many instances lag)
    from orchestrators.rotate_secret import sweep_rotation_calls
    calls = sweep_rotation_calls([page, page, bad], {})
    assert [instance_id for instance_id, _ in calls] == [rotation_instance_id("scim-contoso-token", rotation["version"])]
    instance_id, payload = calls[0]
    assert payload["source"] == "sweep"
    # under the id the HTTP and event paths use: this version's rotation exists (the invalid-version test asked
    # for it), so the sweep finds it instead of rotating again (the sweep end to end: test_the_sweep_*)
    report = stack.wait(instance_id)["output"]
    assert report["source"] == "http" and report["counts"] == {"invalid": 3}, report


def test_the_calendar_lists_each_secret_with_days_left_and_dependents(stack, fleet):
    contoso, fabrikam = fleet
    response = stack.request("GET", "/api/credentials")
    assert response.status_code == 200, response.text
    by_name = {s["secretName"]: s for s in response.json()["secrets"]}
    assert set(by_name) == {"scim-contoso-token", "scim-fabrikam-token"}
    contoso_entry = by_name["scim-contoso-token"]
    assert contoso_entry["daysLeft"] == 5 and contoso_entry["state"] == "expiring"
    assert {i["servicePrincipalId"] for i in contoso_entry["instances"]} == set(contoso)
    assert by_name["scim-fabrikam-token"]["expires"] is None and by_name["scim-fabrikam-token"]["state"] == "noExpiry"
    assert [i["servicePrincipalId"] for i in by_name["scim-fabrikam-token"]["instances"]] == fabrikam
    assert stack.host.request("GET", "/api/credentials", key=False).status_code == 401
    # reading the calendar logs no event (the sweep and Key Vault's events do): no alert from a person looking
    assert not [line for line in stack.host.log_text().splitlines()
                if '"event": "credentialExpiry"' in line and '"sweepId"' not in line and '"keyVaultEvent"' not in line]


def test_a_canary_confirms_the_rotation_on_each_instance(stack, fleet):
    """provisionOnDemand for an assigned user right after the save: the new token answers at once."""
    contoso, fabrikam = fleet
    directory = stack.emulator.state.directory
    pilot = next(gid for gid, g in directory.groups.items() if g.get("displayName") == "SaaS Pilot")
    user = next(m for m in directory.members[pilot] if m in directory.users)
    version = _new_version(stack, "scim-contoso-token", "demo-scim-token", expires_in_days=30)
    response = stack.request("POST", "/api/rotations", json={
        "secretName": "scim-contoso-token", "version": version, "canary": {"objectId": user, "objectTypeName": "User"}})
    assert response.status_code == 202, response.text
    report = stack.wait(response.json()["id"])["output"]
    assert report["counts"] == {"rotated": 3}, report
    for entry in report["instances"]:
        assert entry["canary"]["objectId"] == user and entry["canary"]["confirmed"] is True, entry
        assert entry["canary"]["source"] == "request"
    on_demand = [r for r in stack.graph_requests(method="POST") if r["path"].endswith("/provisionOnDemand")]
    assert sorted(r["path"].split("/")[3] for r in on_demand[-3:]) == contoso
    bad = stack.request("POST", "/api/rotations", json={"secretName": "scim-contoso-token", "version": version,
                                                         "canary": {"objectId": "someone"}})
    assert bad.status_code == 400 and [d["path"] for d in bad.json()["error"]["details"]] == ["canary"]


def test_bad_rotation_requests_get_field_errors(stack, fleet):
    response = stack.request("POST", "/api/rotations", json={"secretName": "bad name!", "version": "v1", "x": 1})
    assert response.status_code == 400
    paths = {d["path"] for d in response.json()["error"]["details"]}
    assert paths == {"x"} or paths >= {"secretName", "version"}
    response = stack.request("POST", "/api/rotations", json={"secretName": "bad name!", "version": "v1"})
    assert {d["path"] for d in response.json()["error"]["details"]} == {"secretName", "version"}
    assert stack.request("GET", "/api/rotations/rotation-nothing").status_code == 404
    not_json = stack.request("POST", "/api/rotations", data=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "InvalidJson"
    listed = stack.request("POST", "/api/rotations", json=["scim-contoso-token"])
    assert listed.status_code == 400 and listed.json()["error"]["details"][0]["path"] == "$"
    dry = stack.request("POST", "/api/rotations", json={"secretName": "scim-contoso-token", "dryRun": "yes"})
    assert dry.status_code == 400 and {d["path"] for d in dry.json()["error"]["details"]} == {"dryRun"}
    # no version named: Key Vault's current one is read; a secret Key Vault does not hold is named as such
    missing = stack.request("POST", "/api/rotations", json={"secretName": "no-such-secret-here"})
    assert missing.status_code == 400, missing.text
    assert [(d["path"], d["message"]) for d in missing.json()["error"]["details"]] == \
        [("secretName", "Key Vault has no enabled version of this secret")]
    assert stack.host.request("POST", "/api/rotations", key=False, json={}).status_code == 401


def _webhook(stack, function: str = names.EVENTGRID_KEY_VAULT_SECRET, key: str | None = None) -> str:
    return f"{stack.host.base_url}/runtime/webhooks/eventgrid?functionName={function}&code={key or stack.host.eventgrid_key}"


def test_a_key_vault_event_starts_the_rotation_once_in_both_schemas(stack, fleet):
    contoso, fabrikam = fleet
    # both subscriptions pass the handshake (Event Grid schema: validationCode; CloudEvents: OPTIONS)
    stack.emulator.admin.subscribe_events(_webhook(stack), name="eventgrid-schema",
                                          includedEventTypes=["Microsoft.KeyVault.SecretNewVersionCreated"])
    stack.emulator.admin.subscribe_events(_webhook(stack), name="cloudevents", schema="CloudEventSchemaV1_0")
    writes = len(_writes_to(stack, contoso + fabrikam))
    version = stack.emulator.admin.seed(secrets={"scim-contoso-token": "demo-scim-token"})["secrets"][0]["version"]
    rotation_id = rotation_instance_id("scim-contoso-token", version)
    report = stack.wait(rotation_id, timeout=120)["output"]
    assert report["source"] == "event" and report["counts"] == {"rotated": 3}, report
    assert all(_saved_tags(stack, sp)["scim-contoso-token"] == version for sp in contoso)

    def delivered() -> list[dict]:
        found = [d for d in stack.emulator.admin.event_deliveries() if d["subject"] == "scim-contoso-token"]
        return found if len(found) >= 2 else []

    from support import wait_until
    deliveries = wait_until(delivered)
    assert sorted((d["subscription"], d["status"], d["attempt"]) for d in deliveries) == [
        ("cloudevents", 202, 1), ("eventgrid-schema", 202, 1)]
    # two deliveries of the one event (one per schema) and a redelivery by hand: one rotation, its writes once
    event = {"id": "redelivered", "topic": "/subscriptions/x/providers/Microsoft.KeyVault/vaults/v",
             "subject": "scim-contoso-token", "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
             "eventTime": "2026-12-06T00:00:00Z", "dataVersion": "1", "metadataVersion": "1",
             "data": {"Id": f"https://v.vault.azure.net/secrets/scim-contoso-token/{version}",
                      "VaultName": "v", "ObjectType": "Secret", "ObjectName ": "scim-contoso-token",
                      "Version": f" {version}"}}  # the docs' own example: a key and a value with a stray space
    redelivered = requests.post(_webhook(stack), json=[event], headers={"aeg-event-type": "Notification"}, timeout=30)
    assert redelivered.status_code == 202
    rotated_writes = _writes_to(stack, contoso + fabrikam)[writes:]
    assert stack.wait(rotation_id)["output"] == report
    assert len(_writes_to(stack, contoso + fabrikam)) - writes == len(rotated_writes)
    # per instance: validateCredentials, the secrets PUT, the kv-saved PATCH; nothing on the other secret's instance
    assert len(rotated_writes) == 9
    assert all(any(sp in r["path"] for sp in contoso) for r in rotated_writes)


def test_the_webhook_answers_as_the_functions_host(stack, fleet):
    base = f"{stack.host.base_url}/runtime/webhooks/eventgrid"
    name = names.EVENTGRID_KEY_VAULT_SECRET
    assert requests.post(f"{base}?functionName={name}", json=[], timeout=30).status_code == 401
    assert requests.post(f"{base}?functionName={name}&code={stack.host.function_key}", json=[],
                         timeout=30).status_code == 401  # the function key is not the system key
    assert requests.post(_webhook(stack, "no_such_function"), json=[], timeout=30).status_code == 404
    # found in review: the extension finds the function in a Dictionary<string, EventGridListener> with the
    # default (ordinal, case-sensitive) comparer (EventGridExtensionConfigProvider.cs): another case is a 404
    assert requests.post(_webhook(stack, name.upper()), json=[], timeout=30).status_code == 404
    validation = [{"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "subject": "",
                   "eventTime": "2026-12-06T00:00:00Z", "data": {"validationCode": "abc-123"}, "dataVersion": "2"}]
    answer = requests.post(_webhook(stack), json=validation, headers={"aeg-event-type": "SubscriptionValidation"},
                           timeout=30)
    assert answer.status_code == 200 and answer.json() == {"validationResponse": "abc-123"}
    # found in review: the extension compares aeg-event-type ignoring case (HttpRequestProcessor.cs,
    # string.Equals(..., StringComparison.OrdinalIgnoreCase))
    answer = requests.post(_webhook(stack), json=validation, headers={"aeg-event-type": "subscriptionvalidation"},
                           timeout=30)
    assert answer.status_code == 200 and answer.json() == {"validationResponse": "abc-123"}
    # ... and reads a CloudEvents validation event, whose data is double-encoded (a JSON string)
    cloud_validation = {"specversion": "1.0", "id": "2", "source": "s", "type": validation[0]["eventType"],
                        "data": json.dumps({"validationCode": "def-456"})}
    answer = requests.post(_webhook(stack), json=cloud_validation, headers={"aeg-event-type": "SubscriptionValidation"},
                           timeout=30)
    assert answer.status_code == 200 and answer.json() == {"validationResponse": "def-456"}
    options = requests.options(_webhook(stack), headers={"WebHook-Request-Origin": "eventgrid.azure.net"}, timeout=30)
    assert options.status_code == 200 and options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    # near expiry with nothing newer in Key Vault: one credentialExpiry line, no rotation
    fabrikam_version = stack.emulator.state.key_vault.get("scim-fabrikam-token", None)["version"]
    near = {"id": "near-1", "topic": "t", "subject": "scim-fabrikam-token", "eventTime": "2026-12-06T00:00:00Z",
            "eventType": "Microsoft.KeyVault.SecretNearExpiry", "dataVersion": "1",
            "data": {"ObjectName": "scim-fabrikam-token", "Version": fabrikam_version}}
    assert requests.post(_webhook(stack), json=[near], headers={"aeg-event-type": "Notification"},
                         timeout=30).status_code == 202
    assert stack.host.durable_request("GET", f"instances/{rotation_instance_id('scim-fabrikam-token', fabrikam_version)}"
                                      ).status_code == 404
    assert '"eventId": "near-1"' in stack.host.log_text()
    # expired, but Key Vault already holds a newer version: that version's rotation (here the one the
    # event test ran, so nothing new starts)
    current = stack.emulator.state.key_vault.get("scim-contoso-token", None)["version"]
    expired = {**near, "id": "expired-1", "subject": "scim-contoso-token", "eventType": "Microsoft.KeyVault.SecretExpired",
               "data": {"Id": "https://v.vault.azure.net/secrets/scim-contoso-token/" + "0" * 32}}
    assert requests.post(_webhook(stack), json=[expired], headers={"aeg-event-type": "Notification"},
                         timeout=30).status_code == 202
    assert stack.wait(rotation_instance_id("scim-contoso-token", current))["output"]["counts"] == {"rotated": 3}
    dry = stack.request("POST", "/api/rotations", json={"secretName": "scim-contoso-token", "version": "f" * 32,
                                                        "dryRun": True})
    superseded = stack.wait(dry.json()["id"])["output"]
    assert superseded["dryRun"] is True and superseded["counts"] == {"superseded": 3}
    dry = stack.request("POST", "/api/rotations", json={"secretName": "scim-contoso-token", "dryRun": True})
    assert dry.json()["id"] == rotation_instance_id("scim-contoso-token", current) + ":dryrun"
    assert stack.wait(dry.json()["id"])["output"]["counts"] == {"alreadyCurrent": 3}
    other = {"specversion": "1.0", "id": "x", "source": "s", "type": "Microsoft.Storage.BlobCreated", "subject": "b"}
    assert requests.post(_webhook(stack), json=other, headers={"Content-Type": "application/cloudevents+json"},
                         timeout=30).status_code == 202  # another event type: acknowledged, ignored


def test_a_failed_delivery_is_retried_until_it_succeeds(stack, fleet):
    """Event Grid retries a non-2xx answer on its schedule (scaled by the emulator's clock)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    answers: list[int] = []

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.headers.get("aeg-event-type") == "SubscriptionValidation":
                reply, status = json.dumps({"validationResponse": body[0]["data"]["validationCode"]}).encode(), 200
            else:
                status, reply = (503 if len(answers) < 2 else 200), b""
                answers.append(status)
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stack.emulator.admin.subscribe_events(f"http://127.0.0.1:{server.server_port}/hook", name="flaky",
                                              includedEventTypes=["Microsoft.KeyVault.SecretNewVersionCreated"])
        stack.emulator.admin.seed(secrets={"scim-slow-token": "slow-scim-token-value"})
        from support import wait_until
        wait_until(lambda: answers == [503, 503, 200], timeout=30)
        attempts = [(d["attempt"], d["status"]) for d in stack.emulator.admin.event_deliveries()
                    if d["subscription"] == "flaky"]
        assert attempts == [(1, 503), (2, 503), (3, 200)]
    finally:
        server.shutdown()


def test_key_vault_expiry_events_reach_the_app_once_per_version(stack, fleet):
    """The emulator's vault publishes SecretNearExpiry for a version set with less than 30 days left and
    SecretExpired when the emulator's clock passes its exp, once each; the app logs credentialExpiry."""
    from emulator.clock import parse_iso
    from support import wait_until

    contoso, fabrikam = fleet
    stack.emulator.admin.subscribe_events(_webhook(stack), name="expiry", includedEventTypes=[
        "Microsoft.KeyVault.SecretNearExpiry", "Microsoft.KeyVault.SecretExpired"])
    expires = int(parse_iso(stack.emulator.admin.clock()["now"]).timestamp()) + 3600  # an hour left (emulator clock)
    # Set Secret through Key Vault's REST API: the same token value, now expiring
    bearer = stack.emulator.admin.token(client="workflow", audience="vault")
    put = requests.put(f"{stack.env['KEY_VAULT_URL']}/secrets/scim-fabrikam-token?api-version=7.5",
                       json={"value": "fabrikam-token", "attributes": {"exp": expires}},
                       headers={"Authorization": f"Bearer {bearer}"}, verify=stack.emulator.ca_bundle, timeout=30)
    assert put.status_code == 200, put.text
    version = put.json()["id"].rsplit("/", 1)[-1]
    # its SecretNewVersionCreated (the cloudevents subscription) rotates the one fabrikam instance
    report = stack.wait(rotation_instance_id("scim-fabrikam-token", version), timeout=120)["output"]
    assert report["counts"] == {"rotated": 1}, report

    def expiry_deliveries(event_type: str) -> list[dict]:
        return [d for d in stack.emulator.admin.event_deliveries()
                if d["subject"] == "scim-fabrikam-token" and d["eventType"] == event_type]

    near = wait_until(lambda: [d for d in expiry_deliveries("Microsoft.KeyVault.SecretNearExpiry")
                               if d["subscription"] == "expiry"])
    assert [(d["attempt"], d["status"]) for d in near] == [(1, 202)]
    lines = wait_until(lambda: [line for line in _event_lines(stack, "credentialExpiry")
                                if line.get("eventId") == near[0]["eventId"]])
    assert {(line["source"], line["state"], line["expired"], line["version"], line["daysLeft"], line["instances"])
            for line in lines} == {("keyVaultEvent", "expiring", False, version, 0, 1)}
    # the clock passes exp: SecretExpired once; later checks publish nothing more for this version
    stack.emulator.admin.advance(2 * 3600)
    expired = wait_until(lambda: [d for d in expiry_deliveries("Microsoft.KeyVault.SecretExpired")
                                  if d["subscription"] == "expiry"])
    assert [(d["attempt"], d["status"]) for d in expired] == [(1, 202)]
    wait_until(lambda: [line for line in _event_lines(stack, "credentialExpiry")
                        if line.get("eventId") == expired[0]["eventId"] and line["expired"] is True])
    stack.emulator.admin.advance(3600)  # the clock change checks again (synchronously): nothing new is due
    assert len({d["eventId"] for d in expiry_deliveries("Microsoft.KeyVault.SecretNearExpiry")}) == 1
    assert len({d["eventId"] for d in expiry_deliveries("Microsoft.KeyVault.SecretExpired")}) == 1
    # the event's version is Key Vault's current one: nothing newer to rotate to, no second rotation
    assert stack.host.durable_request("GET", f"instances/{rotation_instance_id('scim-fabrikam-token', version)}"
                                      ).json()["output"] == report


def test_a_crash_between_recording_and_restarting_still_restarts_the_quarantine(stack, fleet):
    """Found in review: the versions are recorded before the restart, so a worker that dies between the two
    left a retry (or the next event for that version) finding ``alreadyCurrent`` and the job in its credential
    quarantine for good. Here: the state such a crash leaves (the new set saved on the job, both records
    written, no restart) - the rotation of that version must still restart it, and only it."""
    contoso, fabrikam = fleet
    crashed = contoso[1]
    _put_target_token(stack, crashed, EXPIRED)
    stack.emulator.admin.advance(3 * 3600)
    (job,) = stack.jobs_of(crashed)
    assert job["status"]["code"] == "Quarantine", job["status"]
    version = _new_version(stack, "scim-contoso-token", "demo-scim-token", expires_in_days=60)
    _put_target_token(stack, crashed, "demo-scim-token")  # saved, then the worker died
    sp = stack.emulator.state.directory.service_principals[crashed]
    kept = [t for t in sp["tags"] if not t.startswith((f"{TAG}:kv-saved:", f"{TAG}:kv-restarted:"))]
    sp["tags"] = kept + [f"{TAG}:kv-saved:scim-contoso-token={version}",
                         f"{TAG}:kv-restarted:scim-contoso-token={version}"]
    before = len(stack.graph_requests())
    report = _rotate(stack, "scim-contoso-token", version)
    by_sp = {entry["servicePrincipalId"]: entry for entry in report["instances"]}
    assert by_sp[crashed]["outcome"] == "alreadyCurrent" and by_sp[crashed]["restarted"] is True, by_sp[crashed]
    restarts = [r["path"] for r in stack.graph_requests()[before:] if r["path"].endswith("/restart")]
    assert len(restarts) == 1 and crashed in restarts[0], restarts
    stack.emulator.admin.advance(3 * 3600)
    (job,) = stack.jobs_of(crashed)
    assert job["status"]["code"] == "Active", job["status"]
    # that version once more (as the sweep starts it, under its own id): out of quarantine, nothing written
    from core.rotation_contracts import RotateSecretInput
    before = len(stack.graph_requests())
    again_id = rotation_instance_id("scim-contoso-token", version) + ":review"
    payload = RotateSecretInput(secret_name="scim-contoso-token", version=version, source="sweep").to_dict()
    started = stack.host.durable_request("POST", f"orchestrators/{names.ROTATE_SECRET}/{again_id}", json=payload)
    assert started.status_code == 202, started.text
    assert stack.wait(again_id)["output"]["counts"] == {"alreadyCurrent": 3}
    assert not [r for r in stack.graph_requests()[before:] if r["method"] != "GET"]


def test_an_instance_without_our_tag_is_not_touched_even_when_the_registry_lists_it(stack, fleet):
    """Review: the registry says which instances to try, the tag on the service principal says which we own."""
    contoso, fabrikam = fleet
    untagged = contoso[2]
    sp = stack.emulator.state.directory.service_principals[untagged]
    original = list(sp["tags"])
    sp["tags"] = [t for t in original if t != TAG]
    try:
        before = len(stack.graph_requests())
        version = _new_version(stack, "scim-contoso-token", "demo-scim-token", expires_in_days=60)
        report = _rotate(stack, "scim-contoso-token", version)
        by_sp = {entry["servicePrincipalId"]: entry for entry in report["instances"]}
        assert by_sp[untagged]["outcome"] == "notOurs" and by_sp[untagged]["restarted"] is False, by_sp[untagged]
        assert report["counts"] == {"rotated": 2, "notOurs": 1}, report
        assert not [r for r in stack.graph_requests()[before:]
                    if r["method"] != "GET" and f"/servicePrincipals/{untagged}" in r["path"]]
    finally:
        sp["tags"] = original


def _sweep(stack, sweep_id: str, **options) -> dict:
    """One paged health sweep (two instances a page, so the fleet spans pages) with the given duties."""
    body = {"options": {"sweepPageSize": 2, "sweepMaxInFlight": 5, **options}}
    started = stack.host.durable_request("POST", f"orchestrators/{names.HEALTH_SWEEP}/{sweep_id}", json=body)
    assert started.status_code == 202, started.text
    status = stack.wait(sweep_id, timeout=120)
    assert status["runtimeStatus"] == "Completed", status
    return status["output"]


def _events(stack, event: str, sweep_id: str) -> list[dict]:
    found = [json.loads(line[line.index("{"):]) for line in stack.host.log_text().splitlines()
             if f'"event": "{event}"' in line]
    return [f for f in found if f.get("sweepId") == sweep_id]


def _report_lines(stack, report: dict) -> dict[str, dict]:
    from azure.storage.blob import BlobServiceClient

    blob = BlobServiceClient.from_connection_string(stack.storage).get_blob_client(
        report["report"]["container"], report["report"]["blobName"])
    lines = [json.loads(line) for line in blob.download_blob().readall().decode().splitlines()]
    return {line["servicePrincipalId"]: line for line in lines}


def test_the_sweep_catches_a_missed_key_vault_event_and_the_rotation_reaches_every_referencing_instance(stack, fleet):
    """Issue #12's safety net: a version put into Key Vault whose event never came is found by the next
    sweep, whose rotation (under the event's id) reaches every instance referencing the secret; a second
    sweep starts nothing."""
    contoso, fabrikam = fleet
    left_behind = contoso[2]  # untagged while its version was rotated (test above): it lags on a rotation that ran
    old = stack.emulator.state.key_vault.get("scim-contoso-token", None)["version"]
    baseline = _sweep(stack, "sweep-net-0", sweepRotationSafetyNet=True)
    assert baseline["total"] == 4 and baseline["rotationsStarted"] == 0, baseline
    # an instance a version's rotation left behind is reported with that rotation, which is not run again
    assert [(e["servicePrincipalId"], e["secrets"]) for e in baseline["lagging"]] in (
        [], [(left_behind, ["scim-contoso-token"])])
    assert baseline["rotations"] == ([{"rotationId": rotation_instance_id("scim-contoso-token", old),
                                       "secretName": "scim-contoso-token", "version": old, "started": False}]
                                     if baseline["lagging"] else [])

    version = _new_version(stack, "scim-contoso-token", "demo-scim-token", expires_in_days=10)  # no event: missed
    report = _sweep(stack, "sweep-net-1", sweepRotationSafetyNet=True)
    rotation_id = rotation_instance_id("scim-contoso-token", version)
    assert report["rotationsStarted"] == 1 and report["pages"] == 2, report
    assert report["rotations"] == [{"rotationId": rotation_id, "secretName": "scim-contoso-token",
                                    "version": version, "started": True}]
    # the page that found the lag started the rotation, which may finish an instance of a later page
    # before that page reads it: at least the first page's lagged, and no instance of another secret did
    lagging = sorted(e["servicePrincipalId"] for e in report["lagging"])
    assert lagging and set(lagging) <= set(contoso) and report["laggingOmitted"] == 0, report["lagging"]
    lines = _report_lines(stack, report)
    for sp_id in lagging:
        lag = lines[sp_id]["lag"]
        assert lag["secrets"]["scim-contoso-token"]["current"] == version
        assert [r["rotationId"] for r in lag["rotations"]] == [rotation_id]
    assert "lag" not in lines[fabrikam[0]]
    rotated = stack.wait(rotation_id, timeout=120)["output"]
    assert rotated["source"] == "sweep" and rotated["counts"] == {"rotated": 3}, rotated
    assert all(_saved_tags(stack, sp)["scim-contoso-token"] == version for sp in contoso)
    assert _saved_tags(stack, fabrikam[0])["scim-fabrikam-token"] != version
    # the rotation the event would have started is this one: a late event finds it, a second sweep starts nothing
    writes = len(_writes_to(stack, contoso + fabrikam))
    again = _sweep(stack, "sweep-net-2", sweepRotationSafetyNet=True)
    assert again["rotationsStarted"] == 0 and again["rotations"] == [] and again["lagging"] == [], again
    assert len(_writes_to(stack, contoso + fabrikam)) == writes
    # the new version expires in 10 days: one credentialExpiry line per sweep, none per page
    (expiring,) = [e for e in _events(stack, "credentialExpiry", "sweep-net-2") if e["secretName"] == "scim-contoso-token"]
    assert (expiring["secretName"], expiring["state"], expiring["expired"], expiring["daysLeft"],
            expiring["instances"], expiring["version"]) == ("scim-contoso-token", "expiring", False, 9, 3, version)
    assert "scim-contoso-token" in [s["secretName"] for s in again["credentialsExpiring"]]
    (completed,) = _events(stack, "healthSweepCompleted", "sweep-net-1")
    assert completed["total"] == 4 and completed["rotationsStarted"] == 1 and completed["pages"] == 2
    assert completed["durationSeconds"] >= 0 and sum(completed["counts"].values()) == 4


def test_a_classification_change_between_sweeps_is_one_event(stack, fleet):
    """Issue #13's alerts: healthy -> quarantined between two sweeps is one provisioningClassificationChanged
    event (with the owner label); the same classification again is none. And an expired secret is one line."""
    contoso, fabrikam = fleet
    watched = contoso[0]
    sp = stack.emulator.state.directory.service_principals[watched]
    sp["tags"] = list(sp["tags"]) + [f"{TAG}:label:owner=team-identity"]
    fabrikam_value = stack.emulator.state.key_vault.get("scim-fabrikam-token", None)["value"]
    stack.emulator.state.key_vault.set("scim-fabrikam-token", fabrikam_value, "text/plain", {},
                                       int(time.time() - 86400))  # the current version expired yesterday
    first = _sweep(stack, "sweep-class-1")  # the safety net off: the expired version stays unrotated
    assert first["counts"]["quarantined"] == 0 and "rotationsStarted" in first and first["rotations"] == []
    expiry = {e["secretName"]: e for e in _events(stack, "credentialExpiry", "sweep-class-1")}
    assert expiry["scim-fabrikam-token"]["state"] == "expired" and expiry["scim-fabrikam-token"]["expired"] is True
    assert expiry["scim-fabrikam-token"]["instances"] == 1 and len(_events(stack, "credentialExpiry", "sweep-class-1")) == 2

    _put_target_token(stack, watched, EXPIRED)  # its token "expired": the next cycle quarantines the job
    stack.emulator.admin.advance(3 * 3600)
    (job,) = stack.jobs_of(watched)
    assert job["status"]["code"] == "Quarantine", job["status"]
    second = _sweep(stack, "sweep-class-2")
    assert second["counts"]["quarantined"] == 1 and second["classificationChanges"] == 1, second
    (change,) = _events(stack, "provisioningClassificationChanged", "sweep-class-2")
    assert (change["servicePrincipalId"], change["to"], change["owner"]) == (watched, "quarantined", "team-identity")
    assert change["from"] in ("healthy", "running"), change  # one classification: between cycles or in one
    assert change["instanceKey"] and change["displayName"] and change["reason"]
    assert _report_lines(stack, second)[watched]["classificationChange"] == {"from": change["from"], "to": "quarantined"}
    assert json.loads(_registry(stack)[watched]["lastSweepResult"])["category"] == "quarantined"
    unhealthy = _events(stack, "unhealthyProvisioningInstance", "sweep-class-2")
    assert [u["servicePrincipalId"] for u in unhealthy] == [watched]

    third = _sweep(stack, "sweep-class-3")
    assert third["counts"]["quarantined"] == 1 and third["classificationChanges"] == 0, third
    assert _events(stack, "provisioningClassificationChanged", "sweep-class-3") == []
    sp["tags"] = [t for t in sp["tags"] if t != f"{TAG}:label:owner=team-identity"]


# after the sweep tests above: its three instances would change their fleet's counts
def test_an_instance_or_template_canary_confirms_its_rotation(stack, fleet):
    """Canary precedence per instance: the request's (above) > the instance's own (its request's ``canary``,
    kept in its notes) > ROTATION_CANARY_BY_TEMPLATE for its template > ROTATION_CANARY (none here)."""
    directory = stack.emulator.state.directory
    pilot = _seeded_group("SaaS Pilot")
    assert directory.groups[pilot]["displayName"] == "SaaS Pilot"  # the running emulator has the seeded id
    user = next(m for m in directory.members[pilot] if m in directory.users)
    stack.emulator.admin.seed(secrets={"scim-canary-token": "demo-scim-token"})
    body = make_batch("rotation-canary", 3, prefix="Rotation Canary")
    for instance in body["instances"]:
        instance["credentials"]["SecretToken"] = {"keyVaultSecret": "scim-canary-token"}
    own, by_template, plain = body["instances"]
    own["canary"] = {"objectId": user, "objectType": "user"}
    own["applicationTemplate"] = by_template["applicationTemplate"] = {"id": AWS_IDC_TEMPLATE}
    bad = dict(plain, canary={"objectId": "someone", "objectType": "device", "x": 1})
    refused = stack.request("POST", "/api/provisioning-requests", json={"requestId": "rotation-bad-canary",
                                                                        "instances": [bad]})
    assert refused.status_code == 400
    assert sorted(d["path"] for d in refused.json()["error"]["details"]) == [
        "instances[0].canary.objectId", "instances[0].canary.objectType", "instances[0].canary.x"]
    status = stack.wait(stack.submit(body), timeout=180)
    instances = status["output"]["instances"]
    assert [i["outcome"] for i in instances] == ["steadyState"] * 3, instances
    sp_of = {i["displayName"]: i["ids"]["servicePrincipalId"] for i in instances}
    notes = {name: json.loads(directory.service_principals[sp]["notes"]) for name, sp in sp_of.items()}
    assert notes[own["displayName"]]["canary"] == {"objectId": user, "objectType": "user"}
    assert "canary" not in notes[by_template["displayName"]] and "canary" not in notes[plain["displayName"]]

    version = _new_version(stack, "scim-canary-token", "demo-scim-token", expires_in_days=90)
    report = _rotate(stack, "scim-canary-token", version)
    assert report["counts"] == {"rotated": 3}, report
    by_name = {e["displayName"]: e for e in report["instances"]}
    assert {k: by_name[own["displayName"]]["canary"][k] for k in ("objectId", "objectTypeName", "source", "confirmed")} \
        == {"objectId": user, "objectTypeName": "User", "source": "instance", "confirmed": True}
    assert {k: by_name[by_template["displayName"]]["canary"][k] for k in ("objectId", "objectTypeName", "source",
                                                                          "confirmed")} \
        == {"objectId": pilot, "objectTypeName": "Group", "source": "template", "confirmed": True}
    assert by_name[plain["displayName"]].get("canary") is None  # Custom template, no ROTATION_CANARY: none
    on_demand = [r["path"].split("/")[3] for r in stack.graph_requests(method="POST") if r["path"].endswith("/provisionOnDemand")]
    assert sorted(on_demand[-2:]) == sorted([sp_of[own["displayName"]], sp_of[by_template["displayName"]]])
    # recorded per instance in the fleet registry
    row = _registry(stack)[sp_of[own["displayName"]]]
    assert json.loads(row["lastRotation"])["canary"]["confirmed"] is True


def test_the_rotation_demo_runs_on_this_stack(stack, fleet):
    """``make demo-rotation``'s core (examples/demo_rotation.py) on this module's emulator and devhost
    (whose ROTATION_CANARY_BY_TEMPLATE is the demo's): four instances sharing one secret, one of them
    credential-quarantined, a new Key Vault version through the real SecretClient, the event's rotation."""
    from examples.demo_rotation import run_rotation_demo

    lines: list[str] = []
    ok, report = run_rotation_demo(stack.host, stack.emulator, deadline=time.monotonic() + 150, out=lines.append)
    assert ok, "\n".join(lines)
    assert report["source"] == "event" and report["counts"] == {"rotated": 4}
    assert [e["displayName"] for e in report["instances"] if e["restarted"]] == ["Rotation Demo SCIM token expired"]
    assert any("SCIM token expired" in line and "Quarantine" in line and "yes" in line for line in lines), lines


def test_a_rotation_that_left_an_instance_failed_is_followed_up_by_the_sweep_once(stack, fleet):
    """Issue #12 point 4: a version's rotation that completed with an instance ``failed`` (Graph answered
    500 throughout: a transient failure beyond the activity's retries) is followed up by the next sweep under
    ``<rotation id>:retry-1`` (core/steps/rotation_retry.py), which rotates that instance; the sweep after
    that starts nothing."""
    contoso, fabrikam = fleet
    (sp,) = fabrikam  # the one instance referencing scim-fabrikam-token
    before = _saved_tags(stack, sp)["scim-fabrikam-token"]
    version = _new_version(stack, "scim-fabrikam-token", "fabrikam-token")  # no event
    stack.emulator.admin.set_faults(replace=False, errors={"rate": 1.0, "statuses": [500]})
    try:
        failed = _rotate(stack, "scim-fabrikam-token", version)
    finally:
        stack.emulator.admin.set_faults(replace=False, errors={"rate": 0.0, "statuses": [503, 504]})
    rotation_id = rotation_instance_id("scim-fabrikam-token", version)
    assert failed["rotationId"] == rotation_id and failed["counts"] == {"failed": 1}, failed
    assert _saved_tags(stack, sp)["scim-fabrikam-token"] == before  # left behind

    writes = len(_writes_to(stack, [sp]))
    report = _sweep(stack, "sweep-retry-1", sweepRotationSafetyNet=True)
    retry_id = f"{rotation_id}:retry-1"
    (started,) = [r for r in report["rotations"] if r["secretName"] == "scim-fabrikam-token"]
    assert started == {"rotationId": retry_id, "secretName": "scim-fabrikam-token", "version": version,
                       "started": True, "retryOf": rotation_id}, report["rotations"]
    assert report["rotationsStarted"] >= 1
    lag = _report_lines(stack, report)[sp]["lag"]
    assert lag["rotations"] == [{"rotationId": retry_id, "retryOf": rotation_id, "started": True}], lag
    retried = stack.wait(retry_id, timeout=60)["output"]
    assert retried["rotationId"] == retry_id and retried["source"] == "sweep", retried
    assert retried["version"] == version and retried["counts"] == {"rotated": 1}, retried
    assert _saved_tags(stack, sp)["scim-fabrikam-token"] == version
    # validateCredentials, the secrets PUT, the kv-saved PATCH: once
    assert len(_writes_to(stack, [sp])) - writes == 3
    assert stack.wait(rotation_id)["output"] == failed  # the version's own rotation is not run again

    again = _sweep(stack, "sweep-retry-2", sweepRotationSafetyNet=True)
    assert [r for r in again["rotations"] if r["secretName"] == "scim-fabrikam-token"] == [], again["rotations"]
    assert sp not in {e["servicePrincipalId"] for e in again["lagging"]}
    assert len(_writes_to(stack, [sp])) - writes == 3
    absent = stack.host.durable_request("GET", f"instances/{rotation_id}:retry-2")
    assert absent.status_code == 404, absent.text


def test_no_secret_value_in_history_registry_logs_or_responses(stack, fleet):
    from examples.demo_rotation import EXPIRED_TOKEN

    values = secret_values(stack) | {EXPIRED, INVALID, "slow-scim-token-value", EXPIRED_TOKEN}
    haystacks = {"task hub": stack.task_hub_bytes().decode("utf-8", "replace"),
                 "registry": json.dumps(_registry(stack), default=str),
                 "devhost log": stack.host.log_text(), "responses": "\n".join(stack.responses)}
    names_re = re.compile("|".join(sorted(map(re.escape, secret_names()), key=len, reverse=True)))
    assert "demo-scim-token" in values  # the scan covers the rotated value
    for where, text in haystacks.items():
        leaked = sorted(v for v in values if v in names_re.sub("<secret-name>", text))
        assert not leaked, f"{where} holds secret values"
    assert not re.search(r"Bearer\s+ey", haystacks["devhost log"])
