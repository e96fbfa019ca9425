"""Idempotent provisioning steps; each is the body of exactly one activity.

Why every step can run twice: Durable runs an activity at least once, so each step looks before it
writes (find the app before ``instantiate``, list jobs before creating one, read the job before
starting it) and a second run converges on the same objects. Replication lag is waited out inside
the step, bounded by ``VISIBILITY_WAIT_SECONDS``; beyond that the step raises a transient error and
the orchestrator retries it (the step then finds whatever the first run created).

Each step takes a :class:`StepContext` (Graph client, settings, Key Vault resolver, clock) and
returns a small JSON-ready dict; secret values never leave a step.

One module per family: :mod:`~core.steps.applications` (template, application, visibility),
:mod:`~core.steps.jobs` (job, start, status, errors), :mod:`~core.steps.credentials`,
:mod:`~core.steps.assignments`, :mod:`~core.steps.sweep`; :mod:`~core.steps.records` holds what we
write on a service principal (tags, notes, Key Vault version records) and
:mod:`~core.steps.context` the :class:`StepContext` and the replication-lag wait.
"""

from __future__ import annotations

from core.status import MISSING_JOB
from core.steps import applications, assignments, context, credentials, jobs, records, sweep
from core.steps.applications import discard_application, ensure_application, resolve_template, wait_until_visible
from core.steps.assignments import assign_principals
from core.steps.context import StepContext, default_context
from core.steps.credentials import notification_settings, save_secrets, validate_credentials
from core.steps.jobs import ensure_job, get_job_status, get_provisioning_errors, start_job
from core.steps.records import (NOTES_MAX_CHARS, RESTARTED, SAVED, TAG_MAX_CHARS, instance_notes, read_notes,
                                read_versions, record_saved_versions, secret_versions)
from core.steps.sweep import list_managed_instances, list_managed_page, restart_quarantined_job

__all__ = [
    "MISSING_JOB", "NOTES_MAX_CHARS", "RESTARTED", "SAVED", "TAG_MAX_CHARS", "StepContext", "applications",
    "assign_principals", "assignments", "context", "credentials", "default_context", "discard_application",
    "ensure_application", "ensure_job", "get_job_status", "get_provisioning_errors", "instance_notes", "jobs",
    "list_managed_instances", "list_managed_page", "notification_settings", "read_notes", "read_versions", "record_saved_versions",
    "records", "resolve_template", "restart_quarantined_job", "save_secrets", "secret_versions", "start_job",
    "sweep", "validate_credentials", "wait_until_visible",
]
