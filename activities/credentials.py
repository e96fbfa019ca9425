"""Activities of the credentials family: validate the target app's credentials, save them."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities.runner import run
from core import names, steps
from core.contracts import SaveSecretsInput, ValidateCredentialsInput
from core.steps.rotation import record_provisioned

bp = df.Blueprint()


def validate_credentials_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = ValidateCredentialsInput.from_dict(p)
    return steps.validate_credentials(ctx, service_principal_id=i.service_principal_id, job_id=i.job_id,
                                      credentials=i.credential_refs())


def save_secrets_body(p: dict[str, Any], ctx: steps.StepContext) -> dict[str, Any]:
    i = SaveSecretsInput.from_dict(p)
    credentials = i.credential_refs()
    saved = steps.save_secrets(ctx, service_principal_id=i.service_principal_id, credentials=credentials,
                               notification_email=i.notification_email, sync_all=i.sync_all,
                               recorded_versions=i.recorded_versions, current_tags=i.current_tags,
                               deletion_threshold=i.deletion_threshold)
    # the fleet registry's row (references, versions, expiry; best effort: the rebuild restores it)
    record_provisioned(ctx, service_principal_id=i.service_principal_id, credentials=credentials, saved=saved,
                       current_tags=i.current_tags)
    return saved


BODIES = {
    names.VALIDATE_CREDENTIALS: validate_credentials_body,
    names.SAVE_SECRETS: save_secrets_body,
}


@bp.function_name(names.VALIDATE_CREDENTIALS)
@bp.activity_trigger(input_name="payload")
def validate_credentials(payload: dict) -> dict:
    return run(names.VALIDATE_CREDENTIALS, payload, validate_credentials_body)


@bp.function_name(names.SAVE_SECRETS)
@bp.activity_trigger(input_name="payload")
def save_secrets(payload: dict) -> dict:
    return run(names.SAVE_SECRETS, payload, save_secrets_body)
