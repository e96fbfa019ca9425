"""The Durable activities: thin adapters from a JSON dict to one :mod:`core.steps` call.

One module (and one blueprint, registered by ``function_app.py``) per family: ``applications``,
``jobs``, ``credentials``, ``assignments``, ``sweep``, ``fleet``, ``profiles``, ``rotation``, ``reports``.
Every body parses its input with its
contract in :mod:`core.contracts` (a bad field is a field-level ``InvalidRequest``) and runs under
:func:`activities.runner.run`, which applies the activity contract of docs/architecture.md
section 3 (success / permanent / throttled returned, transient raised). Inputs and outputs hold no
secret values: credentials travel as Key Vault references.
"""

from __future__ import annotations

from activities import applications, assignments, credentials, fleet, jobs, profiles, reports, rotation, sweep
from activities.applications import (discard_application, ensure_application, resolve_application_template,
                                     wait_until_visible)
from activities.assignments import assign_principals
from activities.credentials import save_secrets, validate_credentials
from activities.jobs import ensure_job, get_job_status, get_provisioning_errors, start_job
from activities.reports import read_batch_report, read_request_part, write_batch_report
from activities.runner import Body, run
from activities.sweep import commit_sweep_report, list_managed_instances, restart_quarantined_job, stage_sweep_report
from core import names

#: one blueprint per family, each registered by function_app.py
BLUEPRINTS = (applications.bp, jobs.bp, credentials.bp, assignments.bp, sweep.bp, fleet.bp, profiles.bp, rotation.bp,
              reports.bp)

#: activity name -> its body (tests call a body through :func:`run` with their own step context)
BODIES: dict[str, Body] = {**applications.BODIES, **jobs.BODIES, **credentials.BODIES, **assignments.BODIES,
                           **sweep.BODIES, **fleet.BODIES, **profiles.BODIES, **rotation.BODIES, **reports.BODIES}
assert set(BODIES) == set(names.ACTIVITIES), "every activity name needs a body"

__all__ = ["BLUEPRINTS", "BODIES", "assign_principals", "commit_sweep_report", "discard_application", "ensure_application", "ensure_job",
           "get_job_status", "get_provisioning_errors", "list_managed_instances", "read_batch_report", "read_request_part",
           "resolve_application_template",
           "restart_quarantined_job", "run", "save_secrets", "stage_sweep_report", "start_job", "validate_credentials",
           "wait_until_visible", "write_batch_report"]
