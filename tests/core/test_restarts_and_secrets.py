"""Secrets that converge and restarts that cannot loop, against the emulator.

* save_secrets: a credential key dropped from the request is cleared with an empty value when
  Graph merges the PUT (the emulator's default), and nothing extra is sent when it replaces.
* The Key Vault version saved is recorded as a tag on the service principal (no value anywhere).
* restart_quarantined_job: only a credential-caused quarantine, only when Key Vault holds a version
  other than the saved one, the saved credentials fail and the current ones validate, and at most
  once per version; a SCIM-compliance quarantine needs an operator and is not even validated.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from core_support import CUSTOM_TEMPLATE_ID, SEEDED_SECRETS, graph_requests
from core import model, steps
from core.graph import applications as apps
from core.graph import synchronization as sync

CONTOSO = "https://scim.contoso.test/scim/v2"
GOOD_TOKEN = "demo-scim-token"  # the Contoso target's token (seeded as scim-contoso-token)
EXPIRED = ["expired-contoso-token", "still-wrong-token"]  # Key Vault values in these tests, never in a log


def _setup(ctx, name: str, credentials: dict, notification_email: str | None = None) -> tuple[str, str, dict]:
    """What provision_instance does, minus validateCredentials: app, labels + record, job, secrets, start."""
    key = model.instance_key(name)
    refs = model.parse_credentials(credentials)
    found = steps.ensure_application(ctx, batch_id="b", instance_key=key, display_name=name,
                                     template_id=CUSTOM_TEMPLATE_ID)
    sp_id = found["servicePrincipalId"]
    seen = steps.wait_until_visible(ctx, service_principal_id=sp_id, instance_key=key, credentials=refs,
                                    notification_email=notification_email)
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id)["jobId"]
    saved = steps.save_secrets(ctx, service_principal_id=sp_id, credentials=refs, notification_email=notification_email,
                               recorded_versions=seen.get("recordedVersions"))
    steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    return sp_id, job_id, {"seen": seen, "saved": saved}


def _calls(core_env, since: int, sp_id: str) -> list[tuple[str, str]]:
    """(method, last route segment) of the requests to one service principal since ``since``."""
    return [(e["method"], e["route"].rsplit("/", 1)[-1]) for e in graph_requests(core_env)[since:]
            if sp_id in e["path"]]


def _tags(ctx, sp_id: str) -> list[str]:
    return apps.get_service_principal(ctx.graph, sp_id, select="id,tags")["tags"]


def _restarts(core_env) -> int:
    return sum(1 for e in graph_requests(core_env, method="POST") if e["route"].endswith("/restart"))


def _validations(core_env) -> int:
    return sum(1 for e in graph_requests(core_env, method="POST") if e["route"].endswith("/validateCredentials"))


# -- 7. secrets that converge --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_a_credential_dropped_from_the_request_is_cleared(ctx, core_env, mode):
    if mode == "replace":
        core_env.admin.provisioning_settings(secretsPutMode="replace")
    else:
        assert core_env.admin.provisioning_settings()["secretsPutMode"] == "merge"  # the emulator's default
    with_domain = {"BaseAddress": CONTOSO, "SecretToken": {"keyVaultSecret": "scim-contoso-token"},
                   "Domain": "contoso.com"}
    sp_id, _, first = _setup(ctx, f"Converging app {mode}", with_domain)
    assert set(sync.get_secret_keys(ctx.graph, sp_id)) == {"BaseAddress", "SecretToken", "Domain", "SyncAll",
                                                           "SyncNotificationSettings"}
    assert first["saved"]["cleared"] == []

    since = len(graph_requests(core_env))
    without = model.parse_credentials({k: v for k, v in with_domain.items() if k != "Domain"})
    again = steps.save_secrets(ctx, service_principal_id=sp_id, credentials=without,
                               recorded_versions=first["saved"]["savedVersions"])
    stored = sync.get_secret_keys(ctx.graph, sp_id)
    assert set(stored) == {"BaseAddress", "SecretToken", "SyncAll", "SyncNotificationSettings"}
    assert again["keys"] == sorted(stored) and stored["SecretToken"] == "*"  # key names compared, values masked
    if mode == "merge":  # the PUT kept Domain: it is PUT again with an empty value, with the full set
        assert again["cleared"] == ["Domain"]
        assert _calls(core_env, since, sp_id)[:4] == [("PUT", "secrets"), ("GET", "secrets"),
                                                      ("PUT", "secrets"), ("GET", "secrets")]
    else:  # replace dropped it already: nothing extra is sent
        assert again["cleared"] == []
        assert _calls(core_env, since, sp_id)[:2] == [("PUT", "secrets"), ("GET", "secrets")]
    assert ("PATCH", "{sp_id}") not in _calls(core_env, since, sp_id)  # same Key Vault version: record unchanged

    # the same request again: one PUT and one GET, whatever the mode
    since = len(graph_requests(core_env))
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=without,
                       recorded_versions=again["savedVersions"])
    assert _calls(core_env, since, sp_id) == [("PUT", "secrets"), ("GET", "secrets")]


def test_the_saved_key_vault_version_is_recorded_as_a_tag(ctx, core_env):
    refs = {"BaseAddress": CONTOSO, "SecretToken": {"keyVaultSecret": "scim-contoso-token"}}
    sp_id, _, first = _setup(ctx, "Recorded app", refs)
    version = first["saved"]["savedVersions"]["scim-contoso-token"]
    assert first["seen"]["recordedVersions"] == {"scim-contoso-token": version}  # written by the labelling PATCH
    assert f"{ctx.tag}:kv-saved:scim-contoso-token={version}" in _tags(ctx, sp_id)

    # a new Key Vault version, saved: the record follows (one read, one PATCH); the value is nowhere
    rotated = core_env.admin.seed(secrets={"scim-contoso-token": GOOD_TOKEN})["secrets"][0]["version"]
    since = len(graph_requests(core_env))
    saved = steps.save_secrets(ctx, service_principal_id=sp_id, credentials=model.parse_credentials(refs),
                               recorded_versions={"scim-contoso-token": version})
    assert saved["savedVersions"] == {"scim-contoso-token": rotated} != {"scim-contoso-token": version}
    assert [c for c in _calls(core_env, since, sp_id) if c[1] == "{sp_id}"] == [("GET", "{sp_id}"),
                                                                               ("PATCH", "{sp_id}")]
    tags = _tags(ctx, sp_id)
    assert f"{ctx.tag}:kv-saved:scim-contoso-token={rotated}" in tags
    assert not any(t.endswith(f"={version}") for t in tags)
    assert GOOD_TOKEN not in json.dumps([tags, saved])
    # without a record passed in (an orchestration from before), save_secrets reads and finds it current
    since = len(graph_requests(core_env))
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=model.parse_credentials(refs))
    assert [c for c in _calls(core_env, since, sp_id) if c[1] == "{sp_id}"] == [("GET", "{sp_id}")]


# -- 6. restarts that cannot loop ---------------------------------------------------------------------------

def _quarantine_again(ctx, core_env, sp_id: str) -> None:
    """Make the job fail its next cycle (the target revokes the token it holds): saved credentials go bad."""
    sync.put_secrets(ctx.graph, sp_id, {"BaseAddress": CONTOSO, "SecretToken": EXPIRED[0]}, [EXPIRED[0]])
    core_env.admin.advance(3 * 3600)


def test_a_credential_quarantine_is_restarted_once_per_new_key_vault_version(ctx, core_env):
    """The token expired, the job quarantined; the operator puts new versions into Key Vault."""
    rotating = {"BaseAddress": CONTOSO, "SecretToken": {"keyVaultSecret": "rotating-contoso-token"}}
    v1 = core_env.admin.seed(secrets={"rotating-contoso-token": EXPIRED[0]})["secrets"][0]["version"]
    sp_id, job_id, _ = _setup(ctx, "Rotated app", rotating, notification_email="ops@contoso.com")
    core_env.admin.advance(3 * 3600)
    status = steps.get_job_status(ctx, service_principal_id=sp_id, job_id=job_id, started_at=None)["status"]
    assert status["state"] == "Quarantined" and status["quarantine"]["cause"] == "credentials"
    (listed,) = [i for i in steps.list_managed_instances(ctx)["instances"] if i["servicePrincipalId"] == sp_id]
    refs = {"credentials": model.parse_credentials(listed["credentials"]), "sync_all": listed["syncAll"],
            "notification_email": listed["notificationEmail"]}

    def restart(context=None, **given) -> dict:
        return steps.restart_quarantined_job(context or on, service_principal_id=sp_id, job_id=job_id,
                                             **(given if given else refs))

    off = steps.restart_quarantined_job(ctx, service_principal_id=sp_id, job_id=job_id, **refs)  # default: report
    assert off["restarted"] is False and "switched off" in off["reason"]
    on = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings,
                                                               health_sweep_restart_credential_quarantine=True))
    unknown = steps.restart_quarantined_job(on, service_principal_id=sp_id, job_id=job_id)
    assert unknown["restarted"] is False and "no Key Vault references" in unknown["reason"]

    # Key Vault still holds the saved version (v1): nothing to try, not even a validation
    validations = _validations(core_env)
    for _ in range(3):
        same = restart()
        assert same["restarted"] is False and "still holds the saved version" in same["reason"]
        assert same["secretVersions"] == {"rotating-contoso-token": v1}
    assert _validations(core_env) == validations

    # a new version that is still wrong: validated, refused
    core_env.admin.seed(secrets={"rotating-contoso-token": EXPIRED[1]})
    still_bad = restart()
    assert still_bad["restarted"] is False and "still invalid" in still_bad["reason"]

    # saved credentials that validate (fixed in Graph behind our back): the quarantine is not theirs
    sync.put_secrets(ctx.graph, sp_id, {"BaseAddress": CONTOSO, "SecretToken": GOOD_TOKEN}, [GOOD_TOKEN])
    assert "saved credentials validate" in restart()["reason"]
    sync.put_secrets(ctx.graph, sp_id, {"BaseAddress": CONTOSO, "SecretToken": EXPIRED[0]}, [EXPIRED[0]])

    # the fix: a version that validates - restarted once, recorded as saved and restarted-with
    assert _restarts(core_env) == 0
    v3 = core_env.admin.seed(secrets={"rotating-contoso-token": GOOD_TOKEN})["secrets"][0]["version"]
    fixed = restart()
    assert fixed["restarted"] is True and fixed["secretVersions"] == {"rotating-contoso-token": v3}
    assert _restarts(core_env) == 1
    tags = _tags(ctx, sp_id)
    assert {f"{ctx.tag}:kv-saved:rotating-contoso-token={v3}",
            f"{ctx.tag}:kv-restarted:rotating-contoso-token={v3}"} <= set(tags)
    stored = sync.get_secret_keys(ctx.graph, sp_id)  # the full set, from the notes
    assert stored["SyncAll"] == "false" and json.loads(stored["SyncNotificationSettings"])["Recipients"] == \
        "ops@contoso.com"
    core_env.admin.advance(3 * 3600)
    after = steps.get_job_status(ctx, service_principal_id=sp_id, job_id=job_id, started_at=fixed["restartedAt"])
    assert after["status"]["state"] == "SteadyState"
    assert restart()["reason"].startswith("not quarantined")

    # quarantined again while Key Vault still holds v3: never a second restart with it
    _quarantine_again(ctx, core_env, sp_id)
    for _ in range(3):
        assert "still holds the saved version" in restart()["reason"]
    # even with the saved record lost (someone edited the tags), the restarted-with record holds
    apps.update_service_principal(ctx.graph, sp_id, {"tags": [t for t in _tags(ctx, sp_id) if ":kv-saved:" not in t]})
    assert "already restarted once with rotating-contoso-token@" in restart()["reason"]
    assert _restarts(core_env) == 1

    # the next new version that validates: exactly one more restart
    v4 = core_env.admin.seed(secrets={"rotating-contoso-token": GOOD_TOKEN})["secrets"][0]["version"]
    assert restart()["restarted"] is True and _restarts(core_env) == 2
    _quarantine_again(ctx, core_env, sp_id)
    assert "still holds the saved version" in restart()["reason"] and _restarts(core_env) == 2
    assert f"{ctx.tag}:kv-restarted:rotating-contoso-token={v4}" in _tags(ctx, sp_id)
    everything = json.dumps([fixed, still_bad, tags, _tags(ctx, sp_id)])
    assert not any(v in everything for v in [*SEEDED_SECRETS.values(), *EXPIRED])


def test_a_scim_compliance_quarantine_needs_an_operator_and_is_never_validated(ctx, core_env):
    refs = {"BaseAddress": "https://scim-non-compliant.scim.test/scim/v2",
            "SecretToken": {"keyVaultSecret": "scenario-target-token"}}
    sp_id, job_id, _ = _setup(ctx, "Non-compliant app", refs)
    core_env.admin.advance(3 * 3600)
    status = steps.get_job_status(ctx, service_principal_id=sp_id, job_id=job_id, started_at=None)["status"]
    quarantine = status["quarantine"]
    assert status["state"] == "Quarantined" and quarantine["reason"] == "EncounteredQuarantineException"
    assert quarantine["cause"] == "scimCompliance" and quarantine["credentialProblem"] is False
    on = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings,
                                                               health_sweep_restart_credential_quarantine=True))
    core_env.admin.seed(secrets={"scenario-target-token": "a-brand-new-token"})  # even a new version changes nothing
    validations = _validations(core_env)
    for _ in range(3):
        result = steps.restart_quarantined_job(on, service_principal_id=sp_id, job_id=job_id,
                                               credentials=model.parse_credentials(refs))
        assert result["restarted"] is False and result["cause"] == "scimCompliance"
        assert "needs an operator" in result["reason"] and "ServiceIncompatible" in result["reason"]
    assert _validations(core_env) == validations and _restarts(core_env) == 0


def test_version_tags_replace_their_kind_and_skip_what_is_too_long(ctx):
    tag = ctx.tag
    tags = [tag, f"{tag}:key:k1", f"{tag}:kv-saved:old-secret=v0", f"{tag}:kv-restarted:s1=v1", "Other"]
    wanted = steps.records._with_versions(ctx, tags, steps.SAVED, {"s1": "v2", "x" * 300: "v9"})
    assert wanted == [tag, f"{tag}:key:k1", f"{tag}:kv-restarted:s1=v1", "Other", f"{tag}:kv-saved:s1=v2"]
    assert steps.read_versions(ctx, wanted, steps.SAVED) == {"s1": "v2"}
    assert steps.read_versions(ctx, wanted, steps.RESTARTED) == {"s1": "v1"}
    assert steps.read_versions(ctx, ["someone-else:kv-saved:s1=v3", f"{tag}:kv-saved:broken"], steps.SAVED) == {}


def test_recording_a_new_version_right_after_labelling_keeps_the_labels_under_lagging_replicas(ctx, core_env,
                                                                                              monkeypatch):
    """Found in review: save_secrets read the tags back (one GET) and PATCHed the complete list.

    A GET right after wait_until_visible's labelling PATCH may land on a replica that has not seen
    that write (Microsoft: "a recent update may not be visible yet"); the record PATCH then put the
    old list back, without the instance tag and labels - and a run that cannot find the instance
    by its tag instantiates a second application. The tags wait_until_visible left are the base.
    """
    core_env.admin.set_faults(replicationLag={"replicas": [0, 600]})
    refs = model.parse_credentials({"BaseAddress": CONTOSO, "SecretToken": {"keyVaultSecret": "scim-contoso-token"}})
    key = model.instance_key("Relabelled app")
    found = steps.ensure_application(ctx, batch_id="b", instance_key=key, display_name="Relabelled app",
                                     template_id=CUSTOM_TEMPLATE_ID)
    sp_id = found["servicePrincipalId"]
    core_env.admin.advance(601)  # the new SP is on every replica; the labelling PATCH below is not yet
    monkeypatch.setattr(core_env.state.faults, "pick_replica", lambda: (0, 0.0))
    seen = steps.wait_until_visible(ctx, service_principal_id=sp_id, instance_key=key, labels={"env": "prod"},
                                    credentials=refs)
    assert seen["tagged"] is True
    # Key Vault rotated between the two steps: save_secrets records the version it saved; every
    # request of it lands on the replica 600 s behind
    core_env.admin.seed(secrets={"scim-contoso-token": GOOD_TOKEN})
    monkeypatch.setattr(core_env.state.faults, "pick_replica", lambda: (1, 600.0))
    saved = steps.save_secrets(ctx, service_principal_id=sp_id, credentials=refs,
                               recorded_versions=seen["recordedVersions"], current_tags=seen.get("tags"))
    assert saved["savedVersions"] != seen["recordedVersions"]
    live = core_env.state.directory.service_principals[sp_id]["tags"]
    assert model.instance_tag(ctx.tag, key) in live and f"{ctx.tag}:label:env=prod" in live
    assert f"{ctx.tag}:kv-saved:scim-contoso-token={saved['savedVersions']['scim-contoso-token']}" in live
    # a tag list without the correlation tag (not ours, or read from before our labels): nothing written
    patches = len(graph_requests(core_env, method="PATCH"))
    steps.record_saved_versions(ctx, sp_id, {"scim-contoso-token": "0" * 32},
                                current_tags=["WindowsAzureActiveDirectoryIntegratedApp"])
    assert len(graph_requests(core_env, method="PATCH")) == patches
