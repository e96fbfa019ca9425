"""Synchronization (provisioning) API under ``/servicePrincipals/{id}/synchronization``.

Paths take the service principal *object id* (not the appId). Schema updates use PUT: the SDKs'
PATCH fails with "No HTTP resource was found" (msgraph-sdk-powershell#3391).
"""

from __future__ import annotations

import json
import threading
from typing import Iterable

from core.graph.transport import GraphClient

#: ``(graph root, applicationTemplateId) -> templates``; see :func:`list_templates_cached`.
_template_cache: dict[tuple[str, str], list[dict]] = {}
_lock = threading.Lock()


def _base(sp_id: str) -> str:
    return f"/servicePrincipals/{sp_id}/synchronization"


def list_templates(client: GraphClient, sp_id: str) -> list[dict]:
    """The synchronization templates the app offers (e.g. ``aws``, ``scim``)."""
    return client.get_all(_base(sp_id) + "/templates")


def list_templates_cached(client: GraphClient, sp_id: str, application_template_id: str | None) -> list[dict]:
    """The templates, listed once per process per gallery application template.

    Why cached: every instance of a gallery app offers the same synchronization templates (the
    connector comes with the gallery entry), so one list serves a whole batch, like the application
    template look-up. Without an application template id nothing is cached. Callers that see a
    cached template id refused call :func:`forget_templates` and list again.
    """
    key = (client.root, (application_template_id or "").lower())
    if application_template_id:
        with _lock:
            hit = _template_cache.get(key)
        if hit:
            return [dict(t) for t in hit]
    found = list_templates(client, sp_id)
    if application_template_id and found:  # an empty list is never cached (it may be replication lag)
        with _lock:
            _template_cache[key] = [dict(t) for t in found]
    return found


def is_template_cached(client: GraphClient, application_template_id: str | None) -> bool:
    """Whether :func:`list_templates_cached` would answer from the cache."""
    with _lock:
        return bool(application_template_id) and (client.root, str(application_template_id).lower()) in _template_cache


def forget_templates(client: GraphClient, application_template_id: str | None) -> None:
    """Drop the cached templates of one application template (a cached id was refused)."""
    with _lock:
        _template_cache.pop((client.root, (application_template_id or "").lower()), None)


def clear_cache() -> None:
    """Forget every cached template list (tests)."""
    with _lock:
        _template_cache.clear()


def list_jobs(client: GraphClient, sp_id: str) -> list[dict]:
    """Every synchronization job of the service principal."""
    return client.get_all(_base(sp_id) + "/jobs")


def create_job(client: GraphClient, sp_id: str, template_id: str) -> dict:
    """POST a job (created disabled). Not idempotent: callers list jobs first."""
    return client.post(_base(sp_id) + "/jobs", {"templateId": template_id}, idempotent=False) or {}


def get_job(client: GraphClient, sp_id: str, job_id: str) -> dict:
    """One synchronizationJob (schedule + status)."""
    return client.get(f"{_base(sp_id)}/jobs/{job_id}")


def start_job(client: GraphClient, sp_id: str, job_id: str) -> None:
    """POST start. Not repeated on 5xx: Microsoft warns against repeated Start calls."""
    client.post(f"{_base(sp_id)}/jobs/{job_id}/start", idempotent=False)


def pause_job(client: GraphClient, sp_id: str, job_id: str) -> None:
    """POST pause; the running cycle still completes (known issue)."""
    client.post(f"{_base(sp_id)}/jobs/{job_id}/pause", idempotent=True)


def restart_job(client: GraphClient, sp_id: str, job_id: str, reset_scope: str | None = None) -> None:
    """POST restart; ``reset_scope`` e.g. ``"QuarantineState"`` (comma-separated flags)."""
    body = {"criteria": {"resetScope": reset_scope}} if reset_scope else {}
    client.post(f"{_base(sp_id)}/jobs/{job_id}/restart", body, idempotent=True)


def delete_job(client: GraphClient, sp_id: str, job_id: str) -> None:
    """DELETE the job and its state; the SP's secrets stay."""
    client.delete(f"{_base(sp_id)}/jobs/{job_id}")


def _pairs(values: dict[str, str]) -> list[dict]:
    return [{"key": k, "value": v} for k, v in values.items()]


def validate_credentials(client: GraphClient, sp_id: str, job_id: str | None, credentials: dict[str, str],
                         template_id: str | None = None, use_saved: bool = False) -> None:
    """POST validateCredentials (job-bound, or collection-bound with ``template_id``); 204 = valid.

    The values are scrubbed from any error message Graph returns.
    """
    path = f"{_base(sp_id)}/jobs/{job_id}/validateCredentials" if job_id else _base(sp_id) + "/jobs/validateCredentials"
    body: dict = {"useSavedCredentials": use_saved, "credentials": [] if use_saved else _pairs(credentials)}
    if template_id:
        body["templateId"] = template_id
    client.post(path, body, idempotent=True, secret_values=credentials.values())


def put_secrets(client: GraphClient, sp_id: str, values: dict[str, str], secret_values: Iterable[str]) -> None:
    """PUT the complete secret set (``value`` property, as every working example sends).

    An empty value clears a key (how Terraform's azuread provider removes one, since Graph may merge
    the PUT into the saved set): see ``core.steps.credentials._put_secret_set``.
    """
    client.put(_base(sp_id) + "/secrets", {"value": _pairs(values)}, secret_values=secret_values)


def get_secret_keys(client: GraphClient, sp_id: str) -> dict[str, str]:
    """The stored secrets as ``{key: value}``; Graph masks secret values as ``*``.

    No API reference page documents this GET, but Entra's how-to uses it (read the set, add a key, PUT
    it all back: https://learn.microsoft.com/entra/identity/app-provisioning/skip-out-of-scope-deletions),
    and it is in Graph's API metadata (the Go SDK's generated
    ``ListSynchronizationSecrets``, which Terraform's azuread provider reads with:
    https://github.com/hashicorp/terraform-provider-azuread/blob/main/vendor/github.com/hashicorp/go-azure-sdk/microsoft-graph/serviceprincipals/stable/synchronizationsecret/method_listsynchronizationsecrets.go).
    Callers compare key names only.
    """
    body = client.get(_base(sp_id) + "/secrets")
    return {str(p.get("key")): str(p.get("value") if p.get("value") is not None else "") for p in body.get("value") or []}


def get_schema(client: GraphClient, sp_id: str, job_id: str) -> dict:
    """The job's synchronizationSchema (rules, mappings)."""
    return client.get(f"{_base(sp_id)}/jobs/{job_id}/schema")


def put_schema(client: GraphClient, sp_id: str, job_id: str, schema: dict) -> None:
    """Replace the job schema with PUT (never PATCH); starts a new initial cycle."""
    client.put(f"{_base(sp_id)}/jobs/{job_id}/schema", schema)


def provision_on_demand(client: GraphClient, sp_id: str, job_id: str, rule_id: str,
                        subjects: list[dict]) -> list[dict]:
    """POST provisionOnDemand (200 is success); returns the parsed result objects (both documented shapes)."""

    body = {"parameters": [{"ruleId": rule_id, "subjects": subjects}]}
    answer = client.post(f"{_base(sp_id)}/jobs/{job_id}/provisionOnDemand", body, idempotent=False) or {}
    value = answer.get("value")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [{"raw": value}]
    if isinstance(value, dict):
        return [value]
    return list(value or [])
