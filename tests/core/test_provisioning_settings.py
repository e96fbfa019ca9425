"""Per-instance provisioning settings (docs/request-format.md#provisioning-settings) against the emulator:
the accidental-deletion threshold and the notification email are saved in ``SyncNotificationSettings``
exactly as Graph stores it, together with the credentials (under either secretsPutMode), kept in the
notes so a credential rotation's PUT of the whole set saves the instance's threshold again, read
back by the inventory, and compared by the plan."""

from __future__ import annotations

import json

import pytest

from core_support import CUSTOM_TEMPLATE_ID, graph_requests
from core import fleet, model, steps
from core.graph import applications as apps
from core.graph import synchronization as sync
from core.steps import rotation
from core.steps.records import read_notes


CONTOSO = "https://scim.contoso.test/scim/v2"
GOOD_TOKEN = "demo-scim-token"  # the Contoso target's token


class _Rows:
    """A registry stand-in for rotate_instance's row (the registry itself is tested elsewhere)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def upsert(self, sp_id: str, fields: dict) -> None:
        self.rows.setdefault(sp_id, {}).update(fields)


def _spec(name: str, **settings) -> model.InstanceSpec:
    doc = {"requestId": "settings", "instances": [{
        "applicationTemplate": {"id": CUSTOM_TEMPLATE_ID}, "displayName": name,
        "credentials": {"BaseAddress": CONTOSO, "SecretToken": {"keyVaultSecret": "threshold-token"}},
        **({"provisioningSettings": settings} if settings else {})}]}
    return model.parse_request(doc).instances[0]


def _provision(ctx, spec: model.InstanceSpec) -> tuple[str, dict]:
    """What provision_instance does with the settings: notes (wait_until_visible), then the secret set."""
    found = steps.ensure_application(ctx, batch_id="b", instance_key=spec.key, display_name=spec.display_name,
                                     template_id=CUSTOM_TEMPLATE_ID)
    sp_id = found["servicePrincipalId"]
    seen = steps.wait_until_visible(ctx, service_principal_id=sp_id, instance_key=spec.key,
                                    credentials=spec.credentials, notification_email=spec.notification_email,
                                    deletion_threshold=spec.deletion_threshold)
    steps.ensure_job(ctx, service_principal_id=sp_id)
    saved = steps.save_secrets(ctx, service_principal_id=sp_id, credentials=spec.credentials,
                               notification_email=spec.notification_email,
                               recorded_versions=seen.get("recordedVersions"),
                               deletion_threshold=spec.deletion_threshold)
    return sp_id, saved


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_threshold_and_email_are_saved_as_graph_stores_them_and_survive_a_rotation(ctx, core_env, mode):
    core_env.admin.provisioning_settings(secretsPutMode=mode)
    core_env.admin.seed(secrets={"threshold-token": GOOD_TOKEN})
    spec = _spec(f"Threshold app {mode}", deletionThreshold={"enabled": True, "count": 7},
                 notificationEmail="ops@contoso.com")
    sp_id, saved = _provision(ctx, spec)
    stored = sync.get_secret_keys(ctx.graph, sp_id)
    assert stored["SyncNotificationSettings"] == (
        '{"Enabled":true,"Recipients":"ops@contoso.com","DeleteThresholdEnabled":true,"DeleteThresholdValue":7}')
    assert saved["keys"] == ["BaseAddress", "SecretToken", "SyncAll", "SyncNotificationSettings"]
    assert fleet.provisioning_settings(ctx, sp_id) == {
        "deletionThreshold": {"enabled": True, "count": 7}, "notificationEmail": "ops@contoso.com", "syncAll": False}
    notes = read_notes(ctx, apps.get_service_principal(ctx.graph, sp_id, select="id,notes")["notes"])
    assert notes["deletionThreshold"] == {"enabled": True, "count": 7}
    (listed,) = [i for i in steps.list_managed_instances(ctx)["instances"] if i["servicePrincipalId"] == sp_id]
    assert listed["deletionThreshold"] == {"enabled": True, "count": 7}  # the sweep's restart PUTs it too

    # a rotation PUTs the whole set from the notes: the instance's threshold, not the default
    version = core_env.admin.seed(secrets={"threshold-token": GOOD_TOKEN})["secrets"][0]["version"]
    rotated = rotation.rotate_instance(ctx, service_principal_id=sp_id, secret_name="threshold-token", version=version,
                                    registry=_Rows())
    assert rotated["outcome"] == "rotated", rotated
    assert json.loads(sync.get_secret_keys(ctx.graph, sp_id)["SyncNotificationSettings"]) == {
        "Enabled": True, "Recipients": "ops@contoso.com", "DeleteThresholdEnabled": True, "DeleteThresholdValue": 7}

    # the plan of the same request: nothing changes; of a request that turns it off: one change
    assert fleet.settings_changes(spec, sync.get_secret_keys(ctx.graph, sp_id)) == []
    off = _spec(f"Threshold app {mode}", deletionThreshold={"enabled": False}, notificationEmail="ops@contoso.com")
    assert fleet.settings_changes(off, sync.get_secret_keys(ctx.graph, sp_id)) == ["deletionThreshold on (7) -> off"]

    # turned off by a later request: the same key, no value (Graph's example), whatever the PUT mode
    since = len(graph_requests(core_env))
    _provision(ctx, off)
    stored = sync.get_secret_keys(ctx.graph, sp_id)
    assert stored["SyncNotificationSettings"] == '{"Enabled":true,"Recipients":"ops@contoso.com","DeleteThresholdEnabled":false}'
    assert set(stored) == {"BaseAddress", "SecretToken", "SyncAll", "SyncNotificationSettings"}
    assert fleet.provisioning_settings(ctx, sp_id)["deletionThreshold"] == {"enabled": False, "count": None}
    puts = [e for e in graph_requests(core_env)[since:] if e["method"] == "PUT" and sp_id in e["path"]]
    assert len(puts) == 1  # one PUT of the whole set: the settings ride with the credentials


def test_without_settings_the_default_is_saved_and_old_notes_keep_working(ctx, core_env):
    core_env.admin.seed(secrets={"threshold-token": GOOD_TOKEN})
    spec = _spec("Default threshold app")
    assert spec.deletion_threshold is None
    sp_id, _ = _provision(ctx, spec)
    assert json.loads(sync.get_secret_keys(ctx.graph, sp_id)["SyncNotificationSettings"]) == {
        "Enabled": False, "Recipients": "", "DeleteThresholdEnabled": True, "DeleteThresholdValue": 500}
    notes = read_notes(ctx, apps.get_service_principal(ctx.graph, sp_id, select="id,notes")["notes"])
    assert "deletionThreshold" not in notes  # the notes of instances set up before it existed read the same
    assert fleet.settings_changes(spec, sync.get_secret_keys(ctx.graph, sp_id)) == []
    assert fleet.settings_changes(_spec("Default threshold app", deletionThreshold={"enabled": True, "count": 50}),
                                  sync.get_secret_keys(ctx.graph, sp_id)) == ["deletionThreshold on (500) -> on (50)"]


def test_stored_settings_that_are_absent_or_odd_read_as_nulls():
    assert fleet.settings_of({}) == {"deletionThreshold": {"enabled": None, "count": None}, "notificationEmail": None,
                                     "syncAll": None}
    assert fleet.settings_of({"SyncNotificationSettings": "not json", "SyncAll": "*"})["syncAll"] is None
    portal = fleet.settings_of({"SyncNotificationSettings": '{"Enabled":"True","DeleteThresholdEnabled":"True",'
                                                            '"DeleteThresholdValue":"14","Recipients":"a@b.test"}'})
    assert portal["deletionThreshold"] == {"enabled": True, "count": 14} and portal["notificationEmail"] == "a@b.test"
    assert steps.notification_settings(None, {"enabled": False}) == '{"Enabled":false,"Recipients":"","DeleteThresholdEnabled":false}'


def test_adoption_keeps_the_apps_own_settings_for_the_rotations_to_come(ctx, core_env):
    """found in review: adopting an app set up in the portal kept none of its provisioning settings in the
    notes, so its first rotation (or the sweep's restart) PUT the defaults over them: SyncAll false (the
    scope narrowed to assigned users), no notification email, the threshold back to 500."""
    core_env.admin.seed(secrets={"threshold-token": GOOD_TOKEN})
    found = steps.ensure_application(ctx, batch_id="b", instance_key=model.instance_key("Portal made app"),
                                     display_name="Portal made app", template_id=CUSTOM_TEMPLATE_ID)
    sp_id = found["servicePrincipalId"]
    steps.ensure_job(ctx, service_principal_id=sp_id)
    portal = '{"Enabled":true,"Recipients":"owner@contoso.com","DeleteThresholdEnabled":true,"DeleteThresholdValue":40}'
    sync.put_secrets(ctx.graph, sp_id, {"BaseAddress": CONTOSO, "SecretToken": GOOD_TOKEN, "SyncAll": "true",
                                        "SyncNotificationSettings": portal}, [GOOD_TOKEN])
    fleet.adopt(ctx, service_principal_id=sp_id, credentials={
        "BaseAddress": CONTOSO, "SecretToken": model.SecretRef(key_vault_secret="threshold-token")})
    notes = read_notes(ctx, apps.get_service_principal(ctx.graph, sp_id, select="id,notes")["notes"])
    assert (notes["syncAll"], notes.get("notificationEmail"), notes.get("deletionThreshold")) == (
        True, "owner@contoso.com", {"enabled": True, "count": 40})
    version = core_env.admin.seed(secrets={"threshold-token": GOOD_TOKEN})["secrets"][0]["version"]
    rotated = rotation.rotate_instance(ctx, service_principal_id=sp_id, secret_name="threshold-token", version=version,
                                       registry=_Rows())
    assert rotated["outcome"] == "rotated", rotated
    stored = sync.get_secret_keys(ctx.graph, sp_id)
    assert stored["SyncAll"] == "true" and json.loads(stored["SyncNotificationSettings"]) == json.loads(portal)


def test_adoption_keeps_emails_off_when_the_app_has_them_off():
    off = '{"Enabled":false,"Recipients":"owner@contoso.com","DeleteThresholdEnabled":false}'
    assert fleet._kept_settings({"SyncNotificationSettings": off, "SyncAll": "false"}) == {
        "sync_all": False, "notification_email": None, "deletion_threshold": {"enabled": False}}
    assert fleet._kept_settings({"SyncNotificationSettings": "*"}) == {"sync_all": False, "notification_email": None}
