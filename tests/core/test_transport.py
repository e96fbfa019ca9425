"""Graph transport against the emulator over HTTPS: retries, Retry-After, budgets, paging, errors, tokens."""

from __future__ import annotations

import os
import random
import time

import pytest
from azure.identity import DefaultAzureCredential

from core_support import graph_requests
from core import errors
from core.graph.transport import GraphClient
from core.settings import Settings


class Recorder:
    """A sleep that really sleeps and remembers how long."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


def make_client(**overrides) -> tuple[GraphClient, Recorder]:
    settings = Settings.from_env(os.environ, **overrides)
    credential = DefaultAzureCredential(exclude_interactive_browser_credential=True,
                                        disable_instance_discovery=settings.azure_disable_instance_discovery)
    recorder = Recorder()
    return GraphClient(settings, credential, sleep=recorder, rng=random.Random(3)), recorder


def _first_sp(client: GraphClient) -> str:
    """A new service principal (the workflow client's Application.ReadWrite.All may PATCH it, owner or not)."""
    pair = client.post("/applicationTemplates/8adf8e6e-67b2-4cf2-a259-e3dc5476c621/instantiate",
                       {"displayName": "transport test"}, idempotent=False)
    return pair["servicePrincipal"]["id"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["decimal", "integer"])
def test_429_with_retry_after_is_honoured(core_env, mode):
    client, slept = make_client()
    sp_id = _first_sp(client)
    core_env.admin.set_faults(throttling={"enabled": True, "retryAfter": mode,
                                          "writes": {"limit": 1, "windowSeconds": 1}})
    core_env.admin.clear_requests()
    for _ in range(2):
        client.patch(f"/servicePrincipals/{sp_id}", {"notes": "x"})
    log = graph_requests(core_env, method="PATCH")
    assert [e["status"] for e in log] == [204, 429, 204]
    assert len(slept.waits) == 1 and 0 < slept.waits[0] <= 1.0
    if mode == "integer":
        assert slept.waits[0] == 1.0
    # the retry went out no earlier than Retry-After after the 429 (from the emulator's own clock)
    assert log[2]["realTime"] - log[1]["realTime"] >= slept.waits[0] - 0.01


@pytest.mark.timeout(60)
def test_429_without_retry_after_uses_jittered_backoff(core_env):
    client, slept = make_client()
    sp_id = _first_sp(client)
    core_env.admin.set_faults(throttling={"enabled": True, "retryAfter": "absent",
                                          "writes": {"limit": 1, "windowSeconds": 1}})
    core_env.admin.clear_requests()
    client.patch(f"/servicePrincipals/{sp_id}", {"notes": "a"})
    client.patch(f"/servicePrincipals/{sp_id}", {"notes": "b"})
    log = graph_requests(core_env, method="PATCH")
    assert [e["status"] for e in log] == [204, 429, 204]
    assert 1.0 <= slept.waits[0] <= 2.0  # 1 s * 2**0 + up to 1 s jitter
    assert log[2]["realTime"] - log[1]["realTime"] >= slept.waits[0] - 0.01


@pytest.mark.timeout(30)
def test_throttle_beyond_budget_is_handed_back_with_the_wait(core_env):
    client, slept = make_client()
    sp_id = _first_sp(client)
    core_env.admin.set_faults(throttling={"enabled": True, "retryAfter": "decimal",
                                          "writes": {"limit": 1, "windowSeconds": 100}})
    client.patch(f"/servicePrincipals/{sp_id}", {"notes": "a"})
    core_env.admin.clear_requests()
    with pytest.raises(errors.GraphThrottled) as caught:
        client.patch(f"/servicePrincipals/{sp_id}", {"notes": "b"})
    assert slept.waits == []  # no sleep: the wait (~100 s) exceeds the 6 s budget
    assert 90 < caught.value.retry_after <= 100
    assert caught.value.kind == "throttled" and caught.value.code == "TooManyRequests" and caught.value.status == 429
    assert caught.value.to_dict("x")["retryAfterSeconds"] == pytest.approx(caught.value.retry_after, abs=0.001)
    assert len(graph_requests(core_env, method="PATCH")) == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("status", [503, 504])
def test_5xx_on_reads_is_retried(core_env, status):
    client, slept = make_client()
    core_env.admin.set_faults(errors={"next": 2, "statuses": [status]})
    core_env.admin.clear_requests()
    assert client.get("/servicePrincipals", {"$top": "1"})["value"]
    assert [e["status"] for e in graph_requests(core_env)] == [status, status, 200]
    assert len(slept.waits) == 2


@pytest.mark.timeout(30)
def test_5xx_with_retry_after_beyond_budget_is_throttled(core_env):
    client, _ = make_client(graph_max_attempts=2)
    core_env.admin.set_faults(errors={"next": 5, "statuses": [503], "retryAfterSeconds": 60})
    with pytest.raises(errors.GraphThrottled) as caught:
        client.get("/servicePrincipals")
    assert caught.value.retry_after == 60 and caught.value.status == 503


@pytest.mark.timeout(30)
def test_5xx_exhausting_attempts_is_transient(core_env):
    client, slept = make_client(graph_max_attempts=2)
    core_env.admin.set_faults(errors={"next": 5, "statuses": [503]})
    with pytest.raises(errors.GraphTransient) as caught:
        client.get("/servicePrincipals")
    assert caught.value.status == 503 and caught.value.kind == "transient" and len(slept.waits) == 1


@pytest.mark.timeout(30)
def test_504_on_a_non_idempotent_post_is_not_resent(core_env):
    client, slept = make_client()
    core_env.admin.set_faults(errors={"next": 1, "statuses": [504]})
    core_env.admin.clear_requests()
    with pytest.raises(errors.GraphTransient) as caught:
        client.post("/applicationTemplates/8adf8e6e-67b2-4cf2-a259-e3dc5476c621/instantiate",
                    {"displayName": "never twice"}, idempotent=False)
    assert caught.value.status == 504 and slept.waits == []
    assert len(graph_requests(core_env, method="POST")) == 1


def test_paging_follows_next_links(core_env):
    client, _ = make_client()
    core_env.admin.clear_requests()
    users = client.get_all("/users", {"$top": "5", "$select": "id,displayName"})
    pages = graph_requests(core_env, pathContains="/users")
    assert len(users) > 10 and len(pages) == -(-len(users) // 5)
    assert len({u["id"] for u in users}) == len(users)
    assert len(client.get_all("/users", {"$top": "5"}, limit=7)) == 7


def test_error_envelope_becomes_typed_errors(core_env):
    client, _ = make_client()
    with pytest.raises(errors.NotFound) as caught:
        client.get("/servicePrincipals/00000000-1111-2222-3333-444444444444")
    exc = caught.value
    assert exc.code == "Request_ResourceNotFound" and exc.status == 404 and exc.request_id
    assert "/servicePrincipals/{id}" in exc.message and exc.kind == "permanent"
    assert "HTTP 404" in str(exc)
    with pytest.raises(errors.BadRequest):
        client.get("/servicePrincipals", {"$filter": "displayName eq"})
    with pytest.raises(errors.GraphPermanent) as off_origin:
        client.get("https://example.com/v1.0/users")
    assert off_origin.value.code == "UnexpectedLink"


class FlakyCredential:
    """First token is garbage (like an expired or revoked token); later tokens are real."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0

    def get_token(self, *scopes, **kwargs):
        self.calls += 1
        token = self.inner.get_token(*scopes, **kwargs)
        if self.calls == 1:
            return type(token)("not-a-valid-token", token.expires_on)
        return token


def test_a_rejected_token_is_refreshed_once(core_env):
    settings = Settings.from_env(os.environ)
    credential = FlakyCredential(DefaultAzureCredential(exclude_interactive_browser_credential=True,
                                                        disable_instance_discovery=True))
    client = GraphClient(settings, credential)
    core_env.admin.clear_requests()
    assert client.get("/servicePrincipals", {"$top": "1"})["value"]
    assert [e["status"] for e in graph_requests(core_env)] == [401, 200]
    assert credential.calls == 2


def test_credential_failure_is_a_permission_error(core_env):
    class Broken:
        def get_token(self, *scopes, **kwargs):
            raise RuntimeError("no identity here")

    client = GraphClient(Settings.from_env(os.environ), Broken())
    with pytest.raises(errors.PermissionDenied) as caught:
        client.get("/users")
    assert caught.value.code == "AuthenticationFailed" and "no identity here" in caught.value.message


@pytest.mark.timeout(30)
def test_unreachable_graph_is_transient(core_env):
    client, slept = make_client(graph_base_url="https://127.0.0.1:9", graph_max_attempts=2)
    client._rng = random.Random(1)
    with pytest.raises(errors.GraphTransient) as caught:
        client.get("/users")
    assert caught.value.code == "ConnectionError" and len(slept.waits) == 1
    with pytest.raises(errors.GraphTransient) as post:
        client.post("/users", {"displayName": "x"})
    assert post.value.code == "OutcomeUnknown"
