"""Resource calls the steps do not use on the happy path, the Key Vault error mapping, and the process clients."""

from __future__ import annotations

import os

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.keyvault.secrets import SecretClient

from core_support import CUSTOM_TEMPLATE_ID, HEALTHY_CREDENTIALS
from core import clients, errors, model, steps
from core.graph import applications as apps
from core.graph import assignments, provisioning_logs
from core.graph import synchronization as sync
from core.secrets import SecretResolver


def _job(ctx, name: str) -> tuple[str, str]:
    sp_id = steps.ensure_application(ctx, batch_id="r", instance_key=model.instance_key(name), display_name=name,
                                     template_id=CUSTOM_TEMPLATE_ID)["servicePrincipalId"]
    return sp_id, steps.ensure_job(ctx, service_principal_id=sp_id)["jobId"]


def test_job_lifecycle_schema_and_on_demand(ctx, core_env):
    sp_id, job_id = _job(ctx, "Lifecycle app")
    values = ctx.secrets.resolve(model.parse_credentials(HEALTHY_CREDENTIALS))
    sync.validate_credentials(ctx.graph, sp_id, None, values.values, template_id="scim")  # collection-bound form
    sync.put_secrets(ctx.graph, sp_id, values.values, values.secret_values())
    assert sync.get_secret_keys(ctx.graph, sp_id)["SecretToken"] == "*"  # Graph masks secret values
    schema = sync.get_schema(ctx.graph, sp_id, job_id)
    assert schema["synchronizationRules"]
    sync.put_schema(ctx.graph, sp_id, job_id, schema)  # PUT, never PATCH
    sync.start_job(ctx.graph, sp_id, job_id)
    sync.pause_job(ctx.graph, sp_id, job_id)
    assert sync.get_job(ctx.graph, sp_id, job_id)["status"]["code"] == "Paused"
    sync.restart_job(ctx.graph, sp_id, job_id, "Watermark, Escrows, QuarantineState")
    sync.restart_job(ctx.graph, sp_id, job_id)
    user = assignments.resolve_user(ctx.graph, "sean.obrien@contoso-emulator.onmicrosoft.com")
    rule = schema["synchronizationRules"][0]["id"]
    results = sync.provision_on_demand(ctx.graph, sp_id, job_id, rule, [{"objectId": user, "objectTypeName": "User"}])
    assert isinstance(results, list) and results and isinstance(results[0], dict)
    sync.delete_job(ctx.graph, sp_id, job_id)
    with pytest.raises(errors.NotFound):
        sync.get_job(ctx.graph, sp_id, job_id)


def test_applications_read_and_delete(ctx):
    created = steps.ensure_application(ctx, batch_id="r", instance_key="k", display_name="Deleted app",
                                       template_id=CUSTOM_TEMPLATE_ID)
    app = apps.get_application(ctx.graph, created["applicationId"])
    assert app["appId"] == created["appId"]
    apps.delete_application(ctx.graph, created["applicationId"])
    with pytest.raises(errors.NotFound):
        apps.get_application(ctx.graph, created["applicationId"])
    assert apps.object_id({"objectId": "legacy"}) == "legacy"


def test_app_role_choice():
    role = {"id": "r-user", "displayName": "User", "allowedMemberTypes": ["User"], "isEnabled": True}
    access = {"id": "r-msiam", "displayName": "msiam_access", "allowedMemberTypes": ["User"]}
    other = {"id": "r-other", "displayName": "Reader", "allowedMemberTypes": ["User"]}
    apps_only = {"id": "r-app", "displayName": "Daemon", "allowedMemberTypes": ["Application"]}
    assert assignments.pick_app_role({"appRoles": [access, role]}) == "r-user"
    assert assignments.pick_app_role({"appRoles": [other, access]}) == "r-msiam"
    assert assignments.pick_app_role({"appRoles": [apps_only, other]}) == "r-other"
    assert assignments.pick_app_role({"appRoles": [apps_only]}) == assignments.DEFAULT_ACCESS_ROLE


def test_provisioning_log_rows_and_pacer():
    v1 = {"id": "1", "activityDateTime": "t", "cycleId": "c", "provisioningAction": "create",
          "provisioningStatusInfo": {"status": "failure", "errorInformation": {"errorCode": "E", "reason": "r"}},
          "sourceIdentity": {"id": "u", "displayName": "Sean", "identityType": "User"}, "targetIdentity": {}}
    beta = {"id": "2", "action": "Create", "statusInfo": {"status": "Failure", "errorCode": "B", "reason": "why"}}
    assert provisioning_logs.summarize(v1)["errorCode"] == "E" and provisioning_logs.summarize(v1)["action"] == "create"
    row = provisioning_logs.summarize(beta)
    assert (row["status"], row["errorCode"], row["reason"], row["action"]) == ("failure", "B", "why", "Create")
    now = [100.0]
    waits: list[float] = []
    pacer = provisioning_logs.Pacer(2.0, clock=lambda: now[0], sleep=waits.append)
    assert pacer.wait() == 0
    assert pacer.wait() == 2.0 and pacer.wait() == 4.0
    now[0] = 200.0
    assert pacer.wait() == 0 and waits == [2.0, 4.0]


class _Vault:
    """Stands in for SecretClient only to raise the SDK's own exception types (no HTTP involved)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_secret(self, name: str):
        raise self.error


def _http_error(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"status {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize("error, expected", [
    (_http_error(403), errors.SecretAccessDenied),
    (_http_error(429), errors.SecretUnavailable),
    (_http_error(503), errors.SecretUnavailable),
    (_http_error(400), errors.SecretError),
    (ClientAuthenticationError("no token"), errors.SecretAccessDenied),
])
def test_key_vault_errors_map_to_the_tree(error, expected):
    with pytest.raises(expected) as caught:
        SecretResolver(_Vault(error)).read("my-secret")
    assert type(caught.value) is expected and caught.value.secret_name == "my-secret"
    assert "my-secret" in caught.value.message


def test_unreachable_vault_is_transient(core_env):
    from azure.identity import DefaultAzureCredential

    client = SecretClient("https://127.0.0.1:9/", DefaultAzureCredential(disable_instance_discovery=True),
                          verify_challenge_resource=False, retry_total=0)
    with pytest.raises(errors.SecretUnavailable) as caught:
        SecretResolver(client).resolve({"SecretToken": model.SecretRef("x")})
    assert caught.value.kind == "transient" and caught.value.secret_name == "x"


def test_empty_secret_is_not_found(core_env):
    core_env.admin.seed(secrets={"empty-one": ""})
    with pytest.raises(errors.SecretNotFound):
        clients.get_secret_resolver().read("empty-one")


def test_resolved_credentials_hide_values(ctx):
    resolved = ctx.secrets.resolve(model.parse_credentials({**HEALTHY_CREDENTIALS, "Url": "https://x.test"}))
    assert "demo-scim-token" not in repr(resolved) and resolved.values["SecretToken"] == "demo-scim-token"
    assert resolved.secret_values() == ["demo-scim-token"] and set(resolved.versions) == {"SecretToken"}


def test_process_clients_are_built_once(core_env):
    assert clients.get_graph() is clients.get_graph()
    assert clients.get_secret_resolver() is clients.get_secret_resolver()
    assert clients.get_log_pacer().interval == float(os.environ["PROVISIONING_LOG_MIN_INTERVAL_SECONDS"])
    first = clients.get_graph()
    clients.reset()
    assert clients.get_graph() is not first


def test_a_context_without_key_vault_is_a_configuration_error(ctx):
    bare = steps.StepContext(graph=ctx.graph, settings=ctx.settings)
    with pytest.raises(errors.ConfigurationError):
        steps.validate_credentials(bare, service_principal_id="x", job_id="y",
                                   credentials=model.parse_credentials(HEALTHY_CREDENTIALS))
