"""The Graph cost of one new instance, counted from the emulator's request log (the request budget).

Measured: 10 requests plus the VISIBILITY_CONSECUTIVE_READS visibility polls (5 by default: 15 in
all), 6 of them POST/PUT/PATCH/DELETE (what Graph's write quota meters). By the budget's count - no
polls, writes are requests that store something (core/README.md, "Graph request budget per
instance") - that is 10 requests and 5 writes, the budget: the visibility polls are left out
(their number is a setting, and grows with replication lag), and so is validateCredentials from
the writes (it tests the target and stores nothing; a test below checks that). Two look-ups are
amortised over a batch (cached per process): the application template and its synchronization
template list. The exact figures are pinned so any extra call fails; benchmarks/core_request_count.py
prints the same breakdown.

Also here: the fallback when Graph refuses the combined service principal filter, and the safety of
the synchronization template cache (explicit id: no list; a refused cached id: list once, one job).
"""

from __future__ import annotations

import logging
import os
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

import activities

from benchmarks.core_request_count import BUDGET, provision_one, summarize
from core_support import CUSTOM_TEMPLATE_ID, HEALTHY_CREDENTIALS, WRONG_CREDENTIALS, graph_requests
from core import clients, errors, model, names, odata, steps
from core.graph import synchronization
from core.graph.transport import GraphClient
from core.settings import Settings

COMBINED = "combined service principal filter"
EXPECTED_BY_STEP = {
    "ensure_application": [("GET", "servicePrincipals"), ("POST", "instantiate")],
    # the tag PATCH comes after the SP has read back VISIBILITY_CONSECUTIVE_READS times in a row (a PATCH
    # right after instantiate fails while it replicates, and must not make ensure_application
    # instantiate again); for a new app the visibility reads are the name + template look-up (it also
    # settles a concurrent creator of the same instance: tests/core/test_concurrent_creators.py).
    # The reads are filled in by _expected() from the setting.
    "wait_until_visible": [("PATCH", "servicePrincipals/{sp_id}")],
    "ensure_job": [("GET", "jobs"), ("POST", "jobs")],  # + the amortised template list on a cold process
    "validate_credentials": [("POST", "validateCredentials")],
    "save_secrets": [("PUT", "secrets"), ("GET", "secrets")],
    "start_job": [("GET", "jobs/{job_id}"), ("POST", "start")],
}
#: without the visibility polls; _expected() adds them
EXPECTED_FIGURES = {"requests": 10, "reads": 4, "visibilityPolls": 0, "meteredWrites": 6, "stateChangingWrites": 5,
                    "budgetRequests": 10, "budgetWrites": 5, "withinBudget": True}


def _expected(polls: int) -> tuple[dict[str, list], dict]:
    """The calls per step and the figures with ``polls`` visibility reads (VISIBILITY_CONSECUTIVE_READS)."""
    by_step = dict(EXPECTED_BY_STEP)
    by_step["wait_until_visible"] = [("GET", "/servicePrincipals")] * polls + EXPECTED_BY_STEP["wait_until_visible"]
    figures = dict(EXPECTED_FIGURES, requests=10 + polls, reads=4 + polls, visibilityPolls=polls)
    return by_step, figures


def _check_steps(per_step: dict[str, list], cold: bool, polls: int) -> None:
    for step, expected in _expected(polls)[0].items():
        calls = per_step[step]
        if step == "ensure_job" and cold:
            assert calls[1][:2] == ("GET", "/v1.0/servicePrincipals/{sp_id}/synchronization/templates"), calls
            calls = calls[:1] + calls[2:]
        assert len(calls) == len(expected), (step, calls)
        for (method, route, status), (want_method, want_route) in zip(calls, expected):
            assert method == want_method and route.endswith(want_route) and status < 300, (step, calls)


def test_one_new_instance_stays_within_the_budget_of_ten_requests_and_five_writes(ctx, core_env):
    polls = ctx.settings.visibility_consecutive_reads
    assert polls == 5  # the default (Terraform's 5 in a row); the polls are what changes with it
    expected_figures = _expected(polls)[1]
    since = len(graph_requests(core_env))
    cold = provision_one(ctx, "Counted app", lambda: graph_requests(core_env))
    assert len(cold["resolve_application_template"]) == 1
    _check_steps(cold, cold=True, polls=polls)
    summary = summarize(cold)
    assert {k: summary[k] for k in expected_figures} == expected_figures
    assert summary["amortisedLookups"] == 2  # application template + synchronization template list
    assert summary["budgetRequests"] <= BUDGET["requests"] == 10
    assert summary["budgetWrites"] <= BUDGET["writes"] == 5
    assert summary["writeCalls"] == ["POST instantiate", "PATCH {sp_id}", "POST jobs", "POST validateCredentials",
                                     "PUT secrets", "POST start"]
    # The one look-up is the combined filter: instance tag, or name + application template.
    lookup = next(e for e in graph_requests(core_env)[since:] if e["route"] == "/v1.0/servicePrincipals")
    sent = parse_qs(lookup["query"])["$filter"][0]
    tag = model.instance_tag(ctx.tag, model.instance_key("Counted app"))
    assert sent == (f"tags/any(t:t eq '{tag}') or (displayName eq 'Counted app' "
                    f"and applicationTemplateId eq '{CUSTOM_TEMPLATE_ID}')")

    warm = provision_one(ctx, "Counted app 2", lambda: graph_requests(core_env))
    assert warm["resolve_application_template"] == []  # both look-ups are amortised over the batch
    _check_steps(warm, cold=False, polls=polls)
    warm_summary = summarize(warm)
    assert {k: warm_summary[k] for k in expected_figures} == expected_figures
    assert warm_summary["amortisedLookups"] == 0


def _ensure(ctx: steps.StepContext, key: str, name: str) -> dict:
    """ensure_application, then wait_until_visible, which tags the service principal."""
    found = steps.ensure_application(ctx, batch_id="b", instance_key=key, display_name=name,
                                     template_id=CUSTOM_TEMPLATE_ID)
    steps.wait_until_visible(ctx, service_principal_id=found["servicePrincipalId"], instance_key=key)
    return found


def test_combined_lookup_finds_the_instance_again_by_tag_and_by_name(ctx, core_env):
    created = _ensure(ctx, "k-o-brien", "O'Brien's app")
    again = _ensure(ctx, "k-o-brien", "O'Brien's app")
    assert again["servicePrincipalId"] == created["servicePrincipalId"] and again["created"] is False
    # A second instance key with the same name: the first SP carries another key tag, so it is not taken.
    other = _ensure(ctx, "k-other", "O'Brien's app")
    assert other["servicePrincipalId"] != created["servicePrincipalId"] and other["created"] is True


class _RefuseOrFilter(HTTPAdapter):
    """Makes the emulator refuse the combined filter with a 400, as Graph may (UNCONFIRMED).

    A ``$filter`` with ``or`` gets ``$orderby`` added, which directory collections refuse without
    ``ConsistencyLevel: eventual`` (400 Request_UnsupportedQuery) - a real 400 with Graph's envelope.
    """

    def send(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        query = parse_qs(urlsplit(request.url or "").query)
        if " or " in query.get("$filter", [""])[0]:
            request.url = f"{request.url}&%24orderby=displayName"
        return super().send(request, *args, **kwargs)


def _context(**overrides) -> steps.StepContext:
    settings = Settings.from_env(os.environ, **overrides)
    session = requests.Session()
    session.mount("https://", _RefuseOrFilter())
    return steps.StepContext(graph=GraphClient(settings, clients.get_credential(), session=session),
                             settings=settings, secrets=clients.get_secret_resolver())


def _lookups(core_env, since: int) -> list[tuple[str, int]]:
    found = []
    for entry in graph_requests(core_env)[since:]:
        if entry["route"] == "/v1.0/servicePrincipals":
            found.append((parse_qs(entry["query"])["$filter"][0], entry["status"]))
    return found


def test_a_refused_combined_filter_falls_back_to_two_lookups_once_per_process(core_env, no_secret_in_logs):
    ctx = _context()
    since = len(graph_requests(core_env))
    first = _ensure(ctx, "k-fallback", "Fallback app")
    tag = model.instance_tag(ctx.tag, "k-fallback")
    by_tag = odata.any_eq("tags", tag)
    by_name = f"displayName eq 'Fallback app' and applicationTemplateId eq '{CUSTOM_TEMPLATE_ID}'"
    looked = _lookups(core_env, since)
    assert [status for _, status in looked] == [400, 200, 200]
    assert " or " in looked[0][0] and [f for f, _ in looked[1:]] == [by_tag, by_name]
    assert first["created"] is True

    # Remembered for the process: the next instance goes straight to the two look-ups, and a re-run
    # of the first finds its SP by tag alone (exactly one application per instance).
    since = len(graph_requests(core_env))
    second = _ensure(ctx, "k-fallback-2", "Fallback app 2")
    again = _ensure(ctx, "k-fallback", "Fallback app")
    looked = _lookups(core_env, since)
    assert all(" or " not in f and status == 200 for f, status in looked) and len(looked) == 3
    assert second["created"] is True
    assert again["servicePrincipalId"] == first["servicePrincipalId"] and again["created"] is False
    warnings = [r for r in no_secret_in_logs if r.levelno == logging.WARNING and COMBINED in r.getMessage()]
    assert len(warnings) == 1


def test_combined_lookup_can_be_switched_off(core_env):
    ctx = _context(graph_combined_lookup=False)
    since = len(graph_requests(core_env))
    steps.ensure_application(ctx, batch_id="b", instance_key="k-off", display_name="Off app",
                             template_id=CUSTOM_TEMPLATE_ID)
    looked = _lookups(core_env, since)
    assert len(looked) == 2 and all(" or " not in f and status == 200 for f, status in looked)


def _new_sp(ctx: steps.StepContext, name: str) -> str:
    return _ensure(ctx, model.instance_key(name), name)["servicePrincipalId"]


def _job_calls(core_env, since: int) -> list[tuple[str, str, int]]:
    return [(e["method"], e["route"].rsplit("/", 1)[-1], e["status"]) for e in graph_requests(core_env)[since:]
            if "/synchronization/" in e["route"]]


def test_an_explicit_synchronization_template_needs_no_list(ctx, core_env):
    sp_id = _new_sp(ctx, "Explicit sync template")
    since = len(graph_requests(core_env))
    job = steps.ensure_job(ctx, service_principal_id=sp_id, synchronization_template_id="scim",
                           application_template_id=CUSTOM_TEMPLATE_ID)
    assert job["templateId"] == "scim" and job["created"] is True
    assert _job_calls(core_env, since) == [("GET", "jobs", 200), ("POST", "jobs", 201)]


def test_a_refused_cached_template_is_dropped_and_listed_once(ctx, core_env, monkeypatch):
    sp_id = _new_sp(ctx, "Stale sync template")
    key = (ctx.graph.root, CUSTOM_TEMPLATE_ID.lower())
    monkeypatch.setitem(synchronization._template_cache, key, [{"id": "retired", "default": True}])
    since = len(graph_requests(core_env))
    job = steps.ensure_job(ctx, service_principal_id=sp_id, application_template_id=CUSTOM_TEMPLATE_ID)
    assert job["templateId"] == "scim" and job["created"] is True
    assert _job_calls(core_env, since) == [("GET", "jobs", 200), ("POST", "jobs", 400), ("GET", "templates", 200),
                                           ("POST", "jobs", 201)]
    assert [t["id"] for t in synchronization._template_cache[key]] == ["scim"]  # the fresh list replaced it
    # Run twice: the same single job.
    again = steps.ensure_job(ctx, service_principal_id=sp_id, application_template_id=CUSTOM_TEMPLATE_ID)
    assert again == {"jobId": job["jobId"], "templateId": "scim", "created": False}
    assert len(synchronization.list_jobs(ctx.graph, sp_id)) == 1


def test_the_ensure_job_activity_lists_templates_once_per_application_template(ctx, core_env):
    def ensure_job(sp_id: str) -> dict:
        return getattr(activities, names.ENSURE_JOB)({"servicePrincipalId": sp_id,
                                                      "applicationTemplateId": CUSTOM_TEMPLATE_ID})

    first, second = _new_sp(ctx, "Activity cache 1"), _new_sp(ctx, "Activity cache 2")
    since = len(graph_requests(core_env))
    assert ensure_job(first)["ok"] and ensure_job(second)["ok"]
    assert [c[:2] for c in _job_calls(core_env, since)] == [("GET", "jobs"), ("GET", "templates"), ("POST", "jobs"),
                                                            ("GET", "jobs"), ("POST", "jobs")]


def test_validate_credentials_stores_nothing_so_the_budget_does_not_count_it_as_a_write(ctx, core_env):
    """The budget's write count leaves validateCredentials out; this is the behaviour that rests on."""
    sp_id = _new_sp(ctx, "Validate stores nothing")
    job_id = steps.ensure_job(ctx, service_principal_id=sp_id, application_template_id=CUSTOM_TEMPLATE_ID)["jobId"]
    refs = model.parse_credentials(HEALTHY_CREDENTIALS)
    steps.save_secrets(ctx, service_principal_id=sp_id, credentials=refs, sync_all=True)
    stored, job = synchronization.get_secret_keys(ctx.graph, sp_id), synchronization.get_job(ctx.graph, sp_id, job_id)

    steps.validate_credentials(ctx, service_principal_id=sp_id, job_id=job_id, credentials=refs)
    with pytest.raises(errors.InvalidCredentials):
        steps.validate_credentials(ctx, service_principal_id=sp_id, job_id=job_id,
                                   credentials=model.parse_credentials(WRONG_CREDENTIALS))

    assert synchronization.get_secret_keys(ctx.graph, sp_id) == stored  # the wrong token was not saved
    after = synchronization.get_job(ctx.graph, sp_id, job_id)
    assert after["status"]["code"] == job["status"]["code"] and after["schedule"] == job["schedule"]
    methods = {e["method"] for e in graph_requests(core_env) if e["route"].endswith("/validateCredentials")}
    assert methods == {"POST"}  # metered as a write by Graph's throttling, hence meteredWrites


def test_the_visibility_polls_follow_the_setting_and_stay_out_of_the_budget(core_env):
    """Two reads in a row instead of five: three requests fewer, the budget figures unchanged."""
    settings = Settings.from_env(os.environ, visibility_consecutive_reads=2)
    ctx = steps.StepContext(graph=GraphClient(settings, clients.get_credential()), settings=settings,
                            secrets=clients.get_secret_resolver())
    per_step = provision_one(ctx, "Counted twice", lambda: graph_requests(core_env))
    _check_steps(per_step, cold=True, polls=2)
    summary = summarize(per_step)
    expected_figures = _expected(2)[1]
    assert {k: summary[k] for k in expected_figures} == expected_figures
