"""Steps of the credentials family: validate the target app's credentials and save them as the
job's secrets (the full set, converging under merge or replace semantics)."""

from __future__ import annotations

import json
import logging
from typing import Any

from core import errors, model
from core.graph import synchronization as sync
from core.steps.context import StepContext, _wait_for
from core.steps.records import record_saved_versions, secret_versions

logger = logging.getLogger("core.steps")



def _resolve(ctx: StepContext, credentials: dict) -> Any:
    if ctx.secrets is None:
        raise errors.ConfigurationError([errors.Problem("KEY_VAULT_URL", "no Key Vault resolver configured")])
    return ctx.secrets.resolve(credentials)


def _validate(ctx: StepContext, sp_id: str, job_id: str | None, values: dict[str, str], template_id: str | None = None,
              use_saved: bool = False) -> None:
    try:
        _wait_for(ctx, f"validate credentials on {sp_id}",
                  lambda: sync.validate_credentials(ctx.graph, sp_id, job_id, values, template_id, use_saved))
    except (errors.BadRequest, errors.GraphPermanent) as exc:
        if isinstance(exc, (errors.PermissionDenied, errors.NotFound, errors.Conflict)):
            raise
        raise errors.InvalidCredentials(
            f"the target app refused the credentials: {exc.message}", code=exc.code, status=exc.status,
            request_id=exc.request_id) from None


def validate_credentials(ctx: StepContext, *, service_principal_id: str, job_id: str, credentials: dict) -> dict:
    """Test the credentials against the target app; invalid ones are a permanent error with Graph's reason."""
    resolved = _resolve(ctx, credentials)
    _validate(ctx, service_principal_id, job_id, resolved.values)
    return {"secretVersions": dict(resolved.versions)}


def notification_settings(email: str | None, deletion_threshold: dict | None = None) -> str:
    """The ``SyncNotificationSettings`` JSON string: quarantine emails and the accidental-deletion threshold.

    The shape Graph stores (a JSON *string* as the secret's value): ``Enabled`` and
    ``DeleteThresholdEnabled`` as in Graph's own example
    (https://learn.microsoft.com/graph/api/synchronization-serviceprincipal-put-synchronization:
    ``{"Enabled":false,"DeleteThresholdEnabled":false}``), ``Recipients`` and ``DeleteThresholdValue``
    as in the Entra provisioning team's accidental-deletes instructions, which set the threshold with
    this very PUT (https://github.com/ArvindHarinder1/PrivatePreviewDocs/blob/60ca5d8e8ac8b36cdc02bdeb556fa6a4f289794c/AccidentalDeletes.md:
    ``{"Enabled":true,"Recipients":"johndoe@xyz.com","DeleteThresholdEnabled":true,"DeleteThresholdValue":50}``);
    the portal's "Prevent accidental deletions" check box and threshold
    (https://learn.microsoft.com/entra/identity/app-provisioning/accidental-deletions). A threshold
    that is off carries no value, as in Graph's example. ``deletion_threshold``: the request's
    ``provisioningSettings.deletionThreshold`` (None = on, 500: :func:`model.effective_deletion_threshold`).
    """
    threshold = model.effective_deletion_threshold(deletion_threshold)
    value: dict = {"Enabled": bool(email), "Recipients": email or "", "DeleteThresholdEnabled": threshold["enabled"]}
    if threshold["enabled"]:
        value["DeleteThresholdValue"] = threshold["count"]
    return json.dumps(value, separators=(",", ":"))


def save_secrets(ctx: StepContext, *, service_principal_id: str, credentials: dict,
                 notification_email: str | None = None, sync_all: bool = False,
                 recorded_versions: dict | None = None, current_tags: list[str] | None = None,
                 deletion_threshold: dict | None = None) -> dict:
    """PUT the complete secret set (credentials + SyncAll + notification settings) until Graph stores exactly it.

    Always the full set, and a key the request no longer has is cleared explicitly
    (:func:`_put_secret_set`): Graph may merge a PUT into the saved set rather than replace it.
    Then the Key Vault versions just saved are recorded on the service principal
    (:func:`record_saved_versions`) unless ``recorded_versions`` - what :func:`wait_until_visible`
    recorded for this run - already says so (the common case: no request). ``current_tags``: the
    tags wait_until_visible left on the service principal, the base of that record (a read right
    after its PATCH may come from a replica that has not seen it, and PATCHing that list back would
    drop the instance tag and labels).
    """
    resolved = _resolve(ctx, credentials)
    saved = _put_secret_set(ctx, service_principal_id, resolved, sync_all, notification_email, deletion_threshold)
    versions = secret_versions(credentials, resolved)
    if recorded_versions is None or dict(recorded_versions) != versions:
        record_saved_versions(ctx, service_principal_id, versions, current_tags=current_tags)
    expires = {ref.key_vault_secret: resolved.expires[key] for key, ref in credentials.items()
               if hasattr(ref, "key_vault_secret") and resolved.expires.get(key)}
    return {**saved, "secretVersions": dict(resolved.versions), "savedVersions": versions, "savedExpires": expires}


def _stored_keys(ctx: StepContext, sp_id: str) -> set[str]:
    """The key names Graph has saved (values come back masked as ``*``; a key with no value counts as cleared)."""
    return {key for key, value in sync.get_secret_keys(ctx.graph, sp_id).items() if value != ""}


def _put_secret_set(ctx: StepContext, sp_id: str, resolved: Any, sync_all: bool,
                    notification_email: str | None, deletion_threshold: dict | None = None) -> dict:
    """PUT resolved credentials + SyncAll + SyncNotificationSettings; converge the saved key set on exactly them.

    Why the second PUT: whether Graph replaces the saved set or merges the PUT into it is not
    documented, and Terraform's azuread provider removes a key by PUTting it with an empty value
    (``synchronizationSecretResourceDelete`` in
    https://github.com/hashicorp/terraform-provider-azuread/blob/main/internal/services/synchronization/synchronization_secret_resource.go).
    So after the PUT the saved keys are read back (GET .../synchronization/secrets, the call
    Terraform reads with; values are masked, so key names are compared, never values): keys
    missing are waited for (replication), and keys the request does not have - a credential
    dropped since the last save, kept by a merge - are PUT again with an empty value, together
    with the full set (were the PUT a replace after all, the set stays complete). Under replace
    semantics that second PUT never happens.
    """
    values = dict(resolved.values)
    values["SyncAll"] = "true" if sync_all else "false"
    values["SyncNotificationSettings"] = notification_settings(notification_email, deletion_threshold)
    secret_values = resolved.secret_values()
    wanted = set(values)
    _wait_for(ctx, f"save secrets on {sp_id}", lambda: sync.put_secrets(ctx.graph, sp_id, values, secret_values))

    def saved() -> set[str]:
        stored = _stored_keys(ctx, sp_id)
        missing = sorted(wanted - stored)
        if missing:
            raise errors.NotFound(f"stored secrets lack {', '.join(missing)}", code="SecretKeysMissing")
        return stored

    extra = sorted(_wait_for(ctx, f"check secrets on {sp_id}", saved, retry_on=(errors.NotFound,)) - wanted)
    if extra:
        logger.info("secrets of %s still hold %s, which the request does not have (Graph merged the PUT); "
                    "clearing them with empty values", sp_id, ", ".join(extra))
        clearing = {**values, **{key: "" for key in extra}}
        _wait_for(ctx, f"clear secrets on {sp_id}",
                  lambda: sync.put_secrets(ctx.graph, sp_id, clearing, secret_values))

        def exact() -> set[str]:
            stored = _stored_keys(ctx, sp_id)
            if stored != wanted:
                raise errors.NotFound(
                    f"stored secrets differ from the request (missing: {', '.join(sorted(wanted - stored)) or '-'}; "
                    f"not cleared: {', '.join(sorted(stored - wanted)) or '-'})", code="SecretKeysNotConverged")
            return stored

        _wait_for(ctx, f"check cleared secrets on {sp_id}", exact, retry_on=(errors.NotFound,))
    return {"keys": sorted(wanted), "cleared": extra}
