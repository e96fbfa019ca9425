"""Bulk seeding of a managed fleet: N service principals carrying a correlation tag, each with a job.

What it is for: the health sweep's scale tests and ``benchmarks/sweep_scale.py`` need thousands of
app instances "as the workflow would have left them" without provisioning each one through Graph
(10,000 instances at Graph's 20 writes per second would take an hour of setup). Each instance is
built with the same code paths Graph's own calls use - ``Directory.instantiate`` (application +
service principal from the template), ``ProvisioningService.create_job`` - then its tags and its
job's state are set directly, as the workflow and the provisioning cycles would have left them.

``POST /_emulator/seed-fleet`` (admin API) calls :func:`seed_fleet`. Job states:

* ``steady``: started, a successful cycle behind it, steady state reached (the sweep's "healthy").
* ``quarantined``: ``EncounteredQuarantineException`` with the credential-validation error code
  (the sweep's "quarantined", cause ``credentials``).
* ``notStarted``: created, never started (``NotConfigured``).
* ``missingJob``: no job at all.
"""

from __future__ import annotations

from typing import Any

from emulator.errors import GraphError
from emulator.provisioning.jobs import execution

STATES = ("steady", "quarantined", "notStarted", "missingJob")
MAX_COUNT = 50_000


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def seed_fleet(state: Any, spec: Any) -> dict:
    """Create ``spec["count"]`` tagged instances; returns ``{"created", "servicePrincipalIds"?}``.

    ``spec``: ``{"count", "tag", "templateId", "prefix"?, "states"?: {state: weight}, "labels"?: {k: v},
    "returnIds"?: bool}``. States are dealt round-robin by weight (deterministic: instance i gets
    the state at position ``i mod sum(weights)``), so a fleet of 1,000 with ``{"steady": 49,
    "quarantined": 1}`` has exactly 20 quarantined jobs.
    """
    if not isinstance(spec, dict):
        raise _bad("The body must be a JSON object.")
    count, tag, template_id = spec.get("count"), spec.get("tag"), spec.get("templateId")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
        raise _bad(f"'count' must be an integer from 1 to {MAX_COUNT}.")
    if not isinstance(tag, str) or not tag.strip():
        raise _bad("'tag' must be a non-empty string (the correlation tag).")
    if not isinstance(template_id, str):
        raise _bad("'templateId' must be an application template id.")
    template = state.find_template(template_id)
    if template is None:
        raise _bad(f"'templateId': no application template '{template_id}'.")
    if state.provisioning is None:
        raise _bad("Provisioning is not available in this emulator.")
    weights = spec.get("states") or {"steady": 1}
    if not isinstance(weights, dict) or not weights or any(
            k not in STATES or not isinstance(v, int) or isinstance(v, bool) or v < 0 for k, v in weights.items()) \
            or sum(weights.values()) < 1:
        raise _bad(f"'states' must map some of {', '.join(STATES)} to non-negative integer weights.")
    labels = spec.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise _bad("'labels' must map names to strings.")
    prefix = str(spec.get("prefix") or "Fleet")
    deal = [name for name, weight in weights.items() for _ in range(weight)]
    directory, service = state.directory, state.provisioning
    now = service._now()
    ids = []
    for i in range(count):
        name = f"{prefix} {i:05d}"
        _, sp = directory.instantiate(template, name, None)
        sp_id = sp["id"]
        service.on_instantiate(template["id"], sp_id)
        live = directory.service_principals[sp_id]
        live["tags"] = [*live["tags"], tag, f"{tag}:key:{prefix.lower()}-{i:05d}",
                        *(f"{tag}:label:{k}={v}" for k, v in sorted(labels.items()))]
        # long replicated: the fleet is as old as a real one, so no replication lag applies to it
        for object_id in (sp_id, live["appId"]):
            directory.created_at[object_id] = directory.clock.monotonic() - 86_400
        kind = deal[i % len(deal)]
        if kind != "missingJob":
            templates = service.list_templates(sp_id)
            if not templates:
                raise _bad(f"'templateId': template '{template_id}' has no provisioning (synchronization) template.")
            job = service.engine.jobs[service.create_job(sp_id, {"templateId": templates[0]["id"]})["id"]]
            _set_job_state(job, kind, now)
        ids.append(sp_id)
    return {"created": count, **({"servicePrincipalIds": ids} if spec.get("returnIds") else {})}


def _set_job_state(job: Any, kind: str, now: float) -> None:
    if kind == "notStarted":
        return
    began = now - 600
    job.schedule_state, job.interval, job.running, job.watermark = "Active", "PT40M", True, True
    job.cycle_count = 1
    done = execution(f"seed-{job.id[-8:]}", began, began + 60, {"entitled": 1, "exported": 1}, "Succeeded", None)
    job.last_execution = job.last_successful_execution = job.last_successful_execution_with_exports = done
    job.steady_first = job.steady_last = began + 60
    job.code = "Active"
    if kind == "quarantined":
        error = {"code": "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable",
                 "message": "You appear to have entered invalid credentials. The target answered HTTP 401 "
                            "Unauthorized. Update the credentials and restart the job.",
                 "tenantActionable": True}
        job.quarantine = {"seriesBegan": began, "seriesCount": 1, "currentBegan": began,
                          "reason": "EncounteredQuarantineException", "error": error, "nextAttempt": now + 3600}
        job.code = "Quarantine"
        job.last_execution = execution(f"seed-{job.id[-8:]}-q", began + 120, began + 130, {}, "Failed", error)
        job.successive_failures = 1
