"""How many Graph requests (and writes) the core spends to set up one new app instance.

Runs the setup steps of the request budget (core/README.md, "Graph request budget per instance"; article steps 1-4: template, application, visibility,
job, credentials, secrets, start - no status polls) against a fresh in-process emulator, with the
production clients (DefaultAzureCredential, SecretClient), and reads the emulator's request log
per step. Two look-ups are amortised over a batch (cached per process): the application template
and the synchronization template list of that application template; they are shown but not
counted.

The budget (at most 10 requests, 5 of them writes) is counted the way core/README.md
("Graph request budget per instance") defines it: polls are left out (the visibility reads of
wait_until_visible: VISIBILITY_CONSECUTIVE_READS, 5 by default, more under replication lag, as a
status poll's number depends on the cycle), and a write is a request that changes something. validateCredentials is a POST that stores
nothing; Graph's throttling still meters it as a write, so ``meteredWrites`` (every POST, PUT,
PATCH, DELETE) is printed too and is what the write pacer spaces. Prints one line per step, then
one JSON object (last line).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from core import model, steps  # noqa: E402

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
AMORTISED = ("resolve_application_template",)
TEMPLATE = model.TemplateRef(display_name="Custom")
CREDENTIALS = {"BaseAddress": "https://scim.contoso.test/scim/v2", "SecretToken": {"keyVaultSecret": "scim-contoso-token"}}


def provision_one(ctx: steps.StepContext, display_name: str, read_log: Callable[[], list[dict]],
                  template: model.TemplateRef = TEMPLATE, credentials: dict | None = None) -> dict[str, list]:
    """Set up one new instance; return ``{step: [(method, route, status), ...]}`` from the request log."""
    per_step: dict[str, list] = {}
    seen = len(read_log())

    def record(step: str) -> None:
        nonlocal seen
        log = read_log()
        per_step[step] = [(e["method"], e["route"], e["status"]) for e in log[seen:]]
        seen = len(log)

    template_id = steps.resolve_template(ctx, template)["templateId"]
    record("resolve_application_template")
    key = model.instance_key(display_name)
    app = steps.ensure_application(ctx, batch_id="cost", instance_key=key, display_name=display_name,
                                   template_id=template_id)
    record("ensure_application")
    sp_id = app["servicePrincipalId"]
    refs = model.parse_credentials(credentials or CREDENTIALS)
    # one PATCH: the tags, the credential references (notes) and the Key Vault versions (tags) for the health sweep
    seen_twice = steps.wait_until_visible(ctx, service_principal_id=sp_id, application_id=app["applicationId"],
                                          instance_key=key, credentials=refs, display_name=display_name,
                                          template_id=template_id, created=app["created"])
    record("wait_until_visible")
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id, application_template_id=template_id)["jobId"]
    record("ensure_job")
    steps.validate_credentials(ctx, service_principal_id=sp_id, job_id=job_id, credentials=refs)
    record("validate_credentials")
    # as provision_instance does: the Key Vault versions recorded by that PATCH (nothing more to write)
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=refs,
                       recorded_versions=seen_twice.get("recordedVersions"))
    record("save_secrets")
    steps.start_job(ctx, service_principal_id=sp_id, job_id=job_id)
    record("start_job")
    return per_step


def _amortised(step: str, route: str) -> bool:
    return step in AMORTISED or route.endswith("/synchronization/templates")


#: POSTs that only test something and store nothing (Graph's throttling still meters them as writes).
NON_STORING_POSTS = ("/validateCredentials",)
#: the budget: one new instance, steps 1-4, no polls, nothing failing.
BUDGET = {"requests": 10, "writes": 5}


def summarize(per_step: dict[str, list]) -> dict[str, Any]:
    """The per-instance figures, with the amortised look-ups (cached per process) left out of the totals.

    ``requests``: every counted Graph request; ``visibilityPolls``: the reads of wait_until_visible;
    ``meteredWrites``: the POST/PUT/PATCH/DELETE among them (Graph's write quota);
    ``stateChangingWrites``: those that store something (all but validateCredentials);
    ``budgetRequests`` / ``budgetWrites``: requests without the polls, and state-changing writes -
    the figures the budget (:data:`BUDGET`) is about.
    """
    calls = [(step, m, r) for step, items in per_step.items() for m, r, _ in items if not _amortised(step, r)]
    writes = [(step, m, r) for step, m, r in calls if m in WRITE_METHODS]
    storing = [(step, m, r) for step, m, r in writes if not r.endswith(NON_STORING_POSTS)]
    visibility = sum(1 for step, m, _ in calls if step == "wait_until_visible" and m == "GET")
    amortised = sum(1 for step, items in per_step.items() for _, r, _ in items if _amortised(step, r))
    return {"requests": len(calls), "reads": len(calls) - len(writes), "visibilityPolls": visibility,
            "meteredWrites": len(writes), "stateChangingWrites": len(storing),
            "budgetRequests": len(calls) - visibility, "budgetWrites": len(storing),
            "withinBudget": len(calls) - visibility <= BUDGET["requests"] and len(storing) <= BUDGET["writes"],
            "amortisedLookups": amortised,
            "writeCalls": [f"{m} {r.rsplit('/', 1)[-1]}" for _, m, r in writes],
            "byStep": {step: len(items) for step, items in per_step.items()}}


def main() -> None:
    from core import clients
    from emulator.testing import start_emulator

    emu = start_emulator(port=0)
    try:
        os.environ.update(emu.env)
        # The emulator has no replication lag here: the visibility reads' spacing (5 s by default)
        # would only cost time; their number (VISIBILITY_CONSECUTIVE_READS) is what is counted.
        os.environ.setdefault("VISIBILITY_POLL_SECONDS", "0.05")
        clients.reset()
        ctx = steps.default_context()

        def read_log() -> list[dict]:
            return emu.admin.requests(kind="graph")["value"]

        first = provision_one(ctx, "Cost benchmark app 0", read_log)
        for step, items in first.items():
            print(f"{step:30s} {len(items):2d}: " + ", ".join(
                f"{m} {r} {s}" + (" (amortised)" if _amortised(step, r) else "") for m, r, s in items))
        summary = summarize(first)
        more = [summarize(provision_one(ctx, f"Cost benchmark app {i}", read_log)) for i in range(1, 6)]
        summary["batchOf5AverageRequestsPerInstance"] = sum(m["requests"] + m["amortisedLookups"]
                                                            for m in more) / len(more)
        print(f"one new instance: {summary['budgetRequests']} requests and {summary['budgetWrites']} state-changing "
              f"writes by the budget's count (budget {BUDGET['requests']} and {BUDGET['writes']}: "
              f"{'met' if summary['withinBudget'] else 'MISSED'}); plus {summary['visibilityPolls']} visibility polls "
              f"= {summary['requests']} requests in all, {summary['meteredWrites']} of them metered as writes by Graph "
              f"(validateCredentials included); +{summary['amortisedLookups']} look-ups amortised over the batch")
        print(json.dumps(summary, sort_keys=True))
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
