"""Two runs that set up the same instance at the same moment leave exactly one application.

Both looked the instance up before either had created it (the lists lag), so both instantiated.
wait_until_visible reads the name look-up until its own new SP is listed VISIBILITY_CONSECUTIVE_READS
times in a row; both runs then see both apps and keep the same one (already tagged for the instance, else the lowest appId);
the other run deletes the application it made and answers ``yielded`` with the kept ids.
"""

from __future__ import annotations

import pytest
import requests

from core import errors, model, odata, steps
from core.graph import applications as apps
from core_support import CUSTOM_TEMPLATE_ID, graph_requests

NAME = "Raced app"
KEY = model.instance_key(NAME)
LAG_SECONDS = 5


def _instantiate_twice(ctx, core_env) -> list[dict]:
    """Two runs' ensure_application, the second while the first's app is still missing from lists."""
    core_env.admin.set_faults(replicationLag={"seconds": LAG_SECONDS})
    runs = [steps.ensure_application(ctx, batch_id=b, instance_key=KEY, display_name=NAME,
                                     template_id=CUSTOM_TEMPLATE_ID) for b in ("batch-a", "batch-b")]
    assert [r["created"] for r in runs] == [True, True]
    assert runs[0]["servicePrincipalId"] != runs[1]["servicePrincipalId"]
    core_env.admin.advance(LAG_SECONDS + 1)
    return runs


def _visible(ctx, run: dict) -> dict:
    return steps.wait_until_visible(ctx, service_principal_id=run["servicePrincipalId"],
                                    application_id=run["applicationId"], instance_key=KEY,
                                    display_name=NAME, template_id=CUSTOM_TEMPLATE_ID, created=True)


def _listed(ctx) -> list[dict]:
    return apps.find_service_principals(ctx.graph, odata.eq("displayName", NAME))


@pytest.mark.parametrize("first", [0, 1], ids=["a-checks-first", "b-checks-first"])
def test_two_runs_that_instantiated_the_same_instance_keep_one_application(ctx, core_env, first):
    runs = _instantiate_twice(ctx, core_env)
    lowest = min(runs, key=lambda r: r["appId"])
    results = {}
    for index in (first, 1 - first):
        results[index] = _visible(ctx, runs[index])

    kept = [i for i in (0, 1) if not results[i].get("yielded")]
    assert len(kept) == 1, results
    winner, loser = runs[kept[0]], runs[1 - kept[0]]
    yielded = results[1 - kept[0]]
    assert yielded["kept"] == {"servicePrincipalId": winner["servicePrincipalId"], "appId": winner["appId"]}
    assert yielded["discard"] == {"applicationId": loser["applicationId"],
                                  "servicePrincipalId": loser["servicePrincipalId"]}
    assert winner is lowest  # both untagged when the first check decided: the lowest appId stays
    # at least once: the yielding step run again gives the same answer (nothing deleted yet)
    assert _visible(ctx, loser) == {**yielded, "reads": ctx.settings.visibility_consecutive_reads}
    assert graph_requests(core_env, method="DELETE") == []
    # the next step deletes the loser's copy; twice is fine
    assert steps.discard_application(ctx, application_id=loser["applicationId"],
                                     service_principal_id=loser["servicePrincipalId"], instance_key=KEY) == \
        {"deleted": True}
    assert steps.discard_application(ctx, application_id=loser["applicationId"],
                                     service_principal_id=loser["servicePrincipalId"], instance_key=KEY) == \
        {"deleted": False}
    (left,) = _listed(ctx)
    assert apps.object_id(left) == winner["servicePrincipalId"]
    assert model.instance_tag(ctx.tag, KEY) in left["tags"]
    deleted = graph_requests(core_env, method="DELETE")
    # the second call believes the 404 only after VISIBILITY_CONSECUTIVE_READS of them (replica lag)
    assert [d["path"].rsplit("/", 1)[-1] for d in deleted] == \
        [loser["applicationId"]] * (1 + ctx.settings.visibility_consecutive_reads)
    assert [d["status"] for d in deleted] == [204] + [404] * ctx.settings.visibility_consecutive_reads

    # a re-run of either finds the one kept app by its tag
    again = steps.ensure_application(ctx, batch_id="batch-c", instance_key=KEY, display_name=NAME,
                                     template_id=CUSTOM_TEMPLATE_ID)
    assert again["servicePrincipalId"] == winner["servicePrincipalId"] and again["created"] is False


def test_a_run_alone_keeps_its_application_at_no_extra_cost(ctx, core_env):
    run = steps.ensure_application(ctx, batch_id="b", instance_key=KEY, display_name=NAME,
                                   template_id=CUSTOM_TEMPLATE_ID)
    since = len(graph_requests(core_env))
    result = _visible(ctx, run)
    assert result["visible"] and result["tagged"] and not result.get("yielded")
    assert [(e["method"], e["route"]) for e in graph_requests(core_env)[since:]] == \
        [("GET", "/v1.0/servicePrincipals")] * ctx.settings.visibility_consecutive_reads + \
        [("PATCH", "/v1.0/servicePrincipals/{sp_id}")]


def test_an_app_of_another_instance_with_the_same_name_is_no_rival(ctx, core_env):
    other = steps.ensure_application(ctx, batch_id="b", instance_key="another-key", display_name=NAME,
                                     template_id=CUSTOM_TEMPLATE_ID)
    steps.wait_until_visible(ctx, service_principal_id=other["servicePrincipalId"], instance_key="another-key")
    run = steps.ensure_application(ctx, batch_id="b", instance_key=KEY, display_name=NAME,
                                   template_id=CUSTOM_TEMPLATE_ID)
    assert run["created"] is True
    result = _visible(ctx, run)
    assert not result.get("yielded") and len(_listed(ctx)) == 2


def test_the_copy_in_use_is_never_discarded(ctx, core_env):
    run = steps.ensure_application(ctx, batch_id="b", instance_key=KEY, display_name=NAME,
                                   template_id=CUSTOM_TEMPLATE_ID)
    assert _visible(ctx, run)["tagged"] is True
    with pytest.raises(errors.GraphPermanent) as refused:
        steps.discard_application(ctx, application_id=run["applicationId"],
                                  service_principal_id=run["servicePrincipalId"], instance_key=KEY)
    assert refused.value.code == "InUse" and graph_requests(core_env, method="DELETE") == []


def test_after_a_lost_instantiate_answer_the_app_found_is_not_called_this_runs_own(ctx, core_env, monkeypatch):
    """The app found after a lost answer may be a concurrent run's: no createdHere, so never discarded."""
    session = ctx.graph._session
    real = session.request
    lost = {"armed": True}

    def request(method, url, **kwargs):
        response = real(method, url, **kwargs)
        if lost["armed"] and method == "POST" and url.split("?")[0].endswith("/instantiate"):
            lost["armed"] = False
            raise requests.ReadTimeout("read timed out")
        return response

    monkeypatch.setattr(session, "request", request)
    found = steps.ensure_application(ctx, batch_id="b", instance_key=KEY, display_name=NAME,
                                     template_id=CUSTOM_TEMPLATE_ID)
    assert found["created"] is True and not found.get("createdHere")
    direct = steps.ensure_application(ctx, batch_id="b", instance_key="other", display_name="Other app",
                                      template_id=CUSTOM_TEMPLATE_ID)
    assert direct["createdHere"] is True
