"""Answers that go missing or come back odd, and inputs at the edges (found in a review of core/).

* A 201 from instantiate whose body breaks while read, or is cut short, may hide a new app: the
  step looks it up (waiting out list lag) instead of letting its retry instantiate again.
* A lost answer to a create-job POST: the step waits for the job to show in the list.
* Entra answers a duplicate app role assignment 400, not 409: a re-run whose list missed it counts it.
* A guest's userPrincipalName holds '#': it is percent-encoded in the URL path; the request model
  refuses user references that could walk to another resource ('/', '?', '\\').
* A token endpoint that cannot be reached is a transient error (retried), for Graph and Key Vault;
  a credential that is refused stays permanent.
* 408 from Graph is transient.
"""

from __future__ import annotations

import dataclasses
import os
import time

import pytest
import requests
from azure.identity import ClientSecretCredential

import activities
from core import errors, model, names, odata, steps
from core.graph import applications as apps
from core.graph import assignments as assign
from core.graph import synchronization as sync
from core.graph.transport import GraphClient
from core.identity import token_failure_is_transient
from core.secrets import SecretResolver
from core.settings import Settings
from core_support import CUSTOM_TEMPLATE_ID, graph_requests

GUEST_UPN = "alex_fabrikam.com#EXT#@contoso-emulator.onmicrosoft.com"
MEMBER_UPN = "sean.obrien@contoso-emulator.onmicrosoft.com"


def _break_first_answer(monkeypatch, graph: GraphClient, method: str, path_end: str, how) -> None:
    """The first ``method`` request to a path ending in ``path_end`` is sent; ``how`` then spoils its answer."""
    session = graph._session
    real = session.request
    state = {"done": False}

    def request(m, url, **kwargs):
        response = real(m, url, **kwargs)
        if m == method and url.split("?")[0].endswith(path_end) and not state["done"]:
            state["done"] = True
            return how(response)
        return response

    monkeypatch.setattr(session, "request", request)


def _cut_body(response: requests.Response) -> requests.Response:
    response._content = response.content[:100]  # the 201 arrives, its JSON cut short
    return response


def _broken_read(response: requests.Response) -> requests.Response:
    raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(1200 bytes read)")


def _read_timeout(response: requests.Response) -> requests.Response:
    raise requests.ReadTimeout("read timed out")


@pytest.mark.parametrize("how", [_broken_read, _cut_body, _read_timeout], ids=["broken-read", "cut-201", "timeout"])
def test_a_lost_instantiate_answer_under_list_lag_leaves_one_application(ctx, core_env, monkeypatch, how):
    ctx = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, visibility_wait_seconds=20,
                                                                visibility_poll_seconds=0.2))
    name = f"Lost answer {how.__name__}"
    key = model.instance_key(name)
    core_env.admin.set_faults(replicationLag={"seconds": 3})  # lists leave the new SP out for 3 s
    _break_first_answer(monkeypatch, ctx.graph, "POST", "/instantiate", how)
    try:
        first = steps.ensure_application(ctx, batch_id="b", instance_key=key, display_name=name,
                                         template_id=CUSTOM_TEMPLATE_ID)
    except errors.ProvisioningError:  # the orchestrator retries the activity
        first = steps.ensure_application(ctx, batch_id="b", instance_key=key, display_name=name,
                                         template_id=CUSTOM_TEMPLATE_ID)
    assert first["created"] is True
    assert [r["status"] for r in graph_requests(core_env, method="POST", pathContains="/instantiate")] == [201]
    core_env.admin.advance(60)
    (sp,) = apps.find_service_principals(ctx.graph, odata.eq("displayName", name))
    assert apps.object_id(sp) == first["servicePrincipalId"]


def test_a_lost_create_job_answer_waits_for_the_job_to_be_listed(ctx, core_env, monkeypatch):
    name = "Lost job answer"
    key = model.instance_key(name)
    sp_id = steps.ensure_application(ctx, batch_id="b", instance_key=key, display_name=name,
                                     template_id=CUSTOM_TEMPLATE_ID)["servicePrincipalId"]
    steps.wait_until_visible(ctx, service_principal_id=sp_id, instance_key=key)
    _break_first_answer(monkeypatch, ctx.graph, "POST", "/synchronization/jobs", _read_timeout)
    real_list, first_seen = sync.list_jobs, {}

    def lagging_list(client, sp):  # the emulator lists a new job at once; Graph may not
        jobs = real_list(client, sp)
        now = time.monotonic()
        return [j for j in jobs if now - first_seen.setdefault(j["id"], now) >= 0.5]

    monkeypatch.setattr(sync, "list_jobs", lagging_list)
    job = steps.ensure_job(ctx, service_principal_id=sp_id, application_template_id=CUSTOM_TEMPLATE_ID)
    assert job["created"] is True
    assert [j["id"] for j in real_list(ctx.graph, sp_id)] == [job["jobId"]]
    again = steps.ensure_job(ctx, service_principal_id=sp_id, application_template_id=CUSTOM_TEMPLATE_ID)
    assert again["jobId"] == job["jobId"] and len(real_list(ctx.graph, sp_id)) == 1


def _new_app(ctx, name: str) -> str:
    key = model.instance_key(name)
    found = steps.ensure_application(ctx, batch_id="b", instance_key=key, display_name=name,
                                     template_id=CUSTOM_TEMPLATE_ID)
    steps.wait_until_visible(ctx, service_principal_id=found["servicePrincipalId"], instance_key=key)
    return found["servicePrincipalId"]


def test_a_duplicate_assignment_answered_400_counts_as_already_assigned(ctx, core_env, monkeypatch):
    sp_id = _new_app(ctx, "Duplicate assignment")
    assert steps.assign_principals(ctx, service_principal_id=sp_id, users=[MEMBER_UPN]) == \
        {"assigned": 1, "alreadyAssigned": 0}
    real_list = assign.list_assigned
    monkeypatch.setattr(assign, "list_assigned", lambda client, sp: [])  # a re-run whose list is behind
    assert steps.assign_principals(ctx, service_principal_id=sp_id, users=[MEMBER_UPN]) == \
        {"assigned": 0, "alreadyAssigned": 1}
    duplicate = graph_requests(core_env, method="POST", pathContains="/appRoleAssignedTo")[-1]
    assert duplicate["status"] == 400  # Entra's answer (the emulator's default), not 409
    assert len(real_list(ctx.graph, sp_id)) == 1


def test_another_400_on_assignment_still_fails(ctx, core_env, monkeypatch):
    sp_id = _new_app(ctx, "Bad role assignment")
    monkeypatch.setattr(assign, "pick_app_role", lambda sp: "11111111-1111-1111-1111-111111111111")
    with pytest.raises(errors.BadRequest):
        steps.assign_principals(ctx, service_principal_id=sp_id, users=[MEMBER_UPN])


def test_a_guest_upn_is_resolved_and_assigned(ctx, core_env):
    created = core_env.admin.seed(users=[{"displayName": "Alex (guest)", "userPrincipalName": GUEST_UPN}])
    assert assign.resolve_user(ctx.graph, GUEST_UPN) == created["users"][0]["id"]
    sp_id = _new_app(ctx, "Guest assigned")
    assert steps.assign_principals(ctx, service_principal_id=sp_id, users=[GUEST_UPN]) == \
        {"assigned": 1, "alreadyAssigned": 0}


@pytest.mark.parametrize("ref", ["../groups/8adf8e6e-67b2-4cf2-a259-e3dc5476c621", "a?b@contoso.com",
                                 "a\\b@contoso.com", "two words@contoso.com", "no-domain"])
def test_user_references_that_are_not_ids_or_upns_are_refused(ref):
    body = {"requestId": "r1", "instances": [{
        "applicationTemplate": {"displayName": "Custom"}, "displayName": "App",
        "credentials": {"BaseAddress": "https://scim.contoso.test/scim/v2",
                        "SecretToken": {"keyVaultSecret": "scim-contoso-token"}},
        "assignments": {"users": [ref], "groups": ["Finance / EMEA"]}}]}
    with pytest.raises(errors.InvalidRequest) as caught:
        model.parse_request(body)
    assert [p.path for p in caught.value.problems] == ["instances[0].assignments.users[0]"]


def _unreachable_credential() -> ClientSecretCredential:
    return ClientSecretCredential(os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"],
                                  os.environ["AZURE_CLIENT_SECRET"], authority="https://127.0.0.1:9",
                                  disable_instance_discovery=True)


@pytest.mark.timeout(60)
def test_an_unreachable_token_endpoint_is_transient_for_graph_and_key_vault(core_env):
    settings = Settings.from_env(os.environ)
    client = GraphClient(settings, _unreachable_credential())
    with pytest.raises(errors.GraphTransient) as caught:
        client.get("/servicePrincipals", {"$top": "1"})
    assert caught.value.code == "TokenUnavailable" and caught.value.kind == "transient"
    # an activity raises it (so the orchestrator's retry policy applies) instead of failing the instance
    ctx = steps.StepContext(graph=client, settings=settings)
    with pytest.raises(errors.TransientError):
        activities.run(names.ENSURE_JOB, {"servicePrincipalId": "00000000-0000-0000-0000-000000000001"},
                       lambda p, c: steps.ensure_job(c, service_principal_id=p["servicePrincipalId"]), ctx)

    from core import clients
    resolver = SecretResolver(clients.make_secret_client(settings, _unreachable_credential()))
    with pytest.raises(errors.SecretUnavailable) as kv:
        resolver.resolve({"SecretToken": model.SecretRef("scim-contoso-token")})
    assert kv.value.kind == "transient" and "scim-contoso-token" in kv.value.message


def test_a_refused_client_secret_stays_permanent(core_env):
    wrong = ClientSecretCredential(os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"], "not-the-secret",
                                   authority=os.environ.get("AZURE_AUTHORITY_HOST"),
                                   disable_instance_discovery=True)
    with pytest.raises(errors.PermissionDenied) as caught:
        GraphClient(Settings.from_env(os.environ), wrong).get("/users")
    assert caught.value.code == "AuthenticationFailed" and "not-the-secret" not in caught.value.message


def test_token_failure_classification_follows_the_cause():
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

    class Answer:  # the token endpoint's answer, as azure-core's exceptions read it
        reason, headers, content_type = "answer", {}, "application/json"

        def __init__(self, status: int) -> None:
            self.status_code = status

        def text(self, encoding: str | None = None) -> str:
            return ""

    network = ClientAuthenticationError("Authentication failed")
    network.inner_exception = ServiceRequestError("Failed to establish a new connection")
    assert token_failure_is_transient(network)
    assert token_failure_is_transient(ClientAuthenticationError("busy", response=Answer(503)))
    assert not token_failure_is_transient(ClientAuthenticationError("AADSTS7000215", response=Answer(401)))
    assert not token_failure_is_transient(RuntimeError("no identity here"))
    # DefaultAzureCredential keeps no chain, only the words of its credentials' failures
    assert token_failure_is_transient(ClientAuthenticationError(
        "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
        "ManagedIdentityCredential: HTTPConnection(host='127.0.0.1', port=9): Failed to establish a new connection"))


def test_408_is_transient():
    answer = requests.Response()
    answer.status_code, answer._content = 408, b'{"error":{"code":"RequestTimeout","message":"slow"}}'
    error = GraphClient._error("GET", "/servicePrincipals", answer, ())
    assert isinstance(error, errors.GraphTransient) and error.status == 408 and error.kind == "transient"
