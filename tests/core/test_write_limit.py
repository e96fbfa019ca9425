"""Graph's write limit held app-wide (core/graph/write_limit.py): real OS processes, real Azurite, real emulator.

Why: Azure runs several Python worker processes per instance and scales out to many instances;
a pacer held in one process lets them together send a multiple of Graph's write limit per app
and tenant. These tests run separate worker processes (benchmarks/_write_limit_worker.py, the
production Graph client) against the emulator's write throttling and count its accepted writes
and 429s; the schedule lives in Azurite through the real storage SDK.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import pytest

from core_support import CUSTOM_TEMPLATE_ID, graph_requests, leaks, secret_texts
from core import clients
from core.graph import applications as apps, write_limit
from core.graph.write_limit import AppWriteLimiter, BlobSlotStore, blob_store_from_connection

from benchmarks._write_limit_worker import run_workers, start_azurite, worker_env

RATE = 10  # the emulator's write limit in these tests: 10 per second, burst 10


@pytest.fixture(scope="module")
def azurite():
    process, connection = start_azurite(tempfile.mkdtemp(prefix="write-limit-azurite-"))
    yield connection
    process.stop()


def _container(connection: str):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(connection).get_container_client(write_limit.CONTAINER)


def _writes(core_env, storage: str, processes: int = 3, writes: int = 45, threads: int = 3) -> tuple[list[int], dict]:
    sp_id = apps.instantiate(clients.get_graph(), CUSTOM_TEMPLATE_ID, "Shared limit")["servicePrincipal"]["id"]
    core_env.admin.set_faults(throttling={"enabled": True, "writes": {"limit": RATE, "windowSeconds": 1}})
    core_env.admin.clear_requests()
    run = run_workers(sp_id, processes, writes, threads, worker_env(core_env.env, storage, RATE), timeout=180)
    return [e["status"] for e in graph_requests(core_env, method="PATCH")], run


@pytest.mark.timeout(240)
def test_processes_sharing_the_schedule_stay_within_the_limit(core_env, azurite):
    """3 processes x 3 threads, 45 writes at the emulator's 10/s: every write accepted at the first try."""
    statuses, run = _writes(core_env, azurite)
    assert len(statuses) == 45 and all(status < 300 for status in statuses), sorted(statuses)  # no 429, no retry
    for worker in run["workers"]:
        assert worker["ok"] == 15 and worker["shared"] and worker["localReservations"] == 0, worker
    # blocks, not a reservation per write: fewer successful reservations (conditional blob writes) than
    # writes, all processes together (lost ETag races, which depend on how the OS schedules the
    # processes, are retries and are not counted here)
    assert sum(w["sharedReservations"] for w in run["workers"]) < 45

    # the store holds one blob per app and tenant, named by their ids, holding only the next slot's time
    container = _container(azurite)
    names = [blob.name for blob in container.list_blobs()]
    state = core_env.admin.state()
    assert names == [f"{state['tenantId']}/{os.environ['AZURE_CLIENT_ID']}"], names
    body = container.download_blob(names[0]).readall().decode()
    assert set(json.loads(body)) == {"next"}
    assert not leaks(body, secret_texts(dict(os.environ)))


@pytest.mark.timeout(240)
def test_without_the_shared_schedule_the_same_processes_draw_429s(core_env):
    """The control: each process pacing alone at the full rate sends 3x the limit (what the app measured before the shared schedule)."""
    statuses, run = _writes(core_env, "none")
    assert statuses.count(429) > 0, "unshared pacing must exceed the limit, or the test above proves nothing"
    assert not any(worker["shared"] for worker in run["workers"])


def test_reservations_of_two_processes_never_overlap_and_a_lost_race_is_retried(azurite):
    """Two stores (as two processes) on one blob: the stale one gets 412, reads again, and books after the other."""
    first = blob_store_from_connection("S", {"S": azurite})
    second = blob_store_from_connection("S", {"S": azurite})
    assert isinstance(first, BlobSlotStore) and isinstance(second, BlobSlotStore)
    key = "tenant-a/app-race"
    interval = 0.5
    a1 = first.reserve(key, 4, interval, 0.0)
    b1 = second.reserve(key, 4, interval, 0.0)  # second reads first's booking
    assert b1 >= a1 + 4 * interval
    conflicts = first.conflicts
    a2 = first.reserve(key, 2, interval, 0.0)  # first's cached ETag is stale now: 412, read, retry
    assert first.conflicts == conflicts + 1
    assert a2 >= b1 + 4 * interval
    # a 429 hold given as not_before moves the shared schedule past it
    b2 = second.reserve(key, 1, interval, a2 + 100)
    assert b2 >= a2 + 100


def test_an_unreachable_store_falls_back_to_local_pacing_and_comes_back(caplog: pytest.LogCaptureFixture):
    """Storage down: writes still get slots (paced locally) with one warning; storage back: shared again."""
    state = tempfile.mkdtemp(prefix="write-limit-down-")
    process, connection = start_azurite(state)
    store = blob_store_from_connection("S", {"S": connection})
    assert store is not None
    limiter = AppWriteLimiter(1000, store, "tenant-b/app-down", retry_store_after=0.0)
    caplog.set_level(logging.INFO, logger="core.graph.write_limit")
    limiter.acquire()
    assert limiter.shared and limiter.shared_reservations == 1
    process.stop()
    for _ in range(3):
        limiter.acquire()  # never raises
    assert not limiter.shared and limiter.local_reservations >= 1  # (a block may serve several)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unreachable" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]  # once per outage, not per write
    assert "AccountKey" not in warnings[0].getMessage() and connection not in warnings[0].getMessage()

    from devhost.azurite import AzuriteProcess, resolve_connection

    again = AzuriteProcess.start(resolve_connection("S", {"S": connection}), state,
                                 [str(Path(__file__).resolve().parents[2])])
    try:
        limiter.acquire()
        assert limiter.shared and limiter.shared_reservations == 2
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        again.stop()


def test_the_graph_client_falls_back_when_the_storage_account_is_down(core_env, monkeypatch, caplog):
    """The production client with AzureWebJobsStorage pointing at a dead port: every write still succeeds."""
    from devhost.azurite import dev_connection_string

    monkeypatch.setenv("AzureWebJobsStorage", dev_connection_string(9, 9, 9))  # port 9: nothing listens
    clients.reset()
    caplog.set_level(logging.WARNING, logger="core.graph.write_limit")
    graph = clients.get_graph()
    sp_id = apps.instantiate(graph, CUSTOM_TEMPLATE_ID, "Storage down")["servicePrincipal"]["id"]
    for i in range(3):
        graph.patch(f"/servicePrincipals/{sp_id}", {"notes": f"write {i}"})
    limiter = next(iter(write_limit._limiters.values()))
    assert not limiter.shared and limiter.local_reservations >= 1
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_429_holds_the_later_writes_until_retry_after():
    clock = _Clock()
    limiter = AppWriteLimiter(10, None, "k", clock=clock.time, sleep=clock.sleep)
    assert round(limiter.acquire(), 6) == 0.0
    assert round(limiter.acquire(), 6) == 0.1
    limiter.backoff(2.0)
    assert round(limiter.acquire(), 6) == 2.0  # no write before Retry-After has passed
    assert round(limiter.acquire(), 6) == 0.1  # then evenly spaced again


def test_the_key_is_the_tokens_tenant_and_app():
    import base64

    def token(claims: dict) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return f"e30.{payload}.sig"

    assert write_limit.limit_key(token({"tid": "t-1", "appid": "a-2"})) == "t-1/a-2"
    assert write_limit.limit_key(token({"tid": "t-1", "azp": "a-3"})) == "t-1/a-3"
    assert write_limit.limit_key(token({"tid": "../x", "appid": "a"})) == "default"  # never a path from a claim
    assert write_limit.limit_key("not a jwt") == "default"


def test_a_schedule_booked_far_ahead_does_not_stall_the_app(azurite):
    """A host whose clock ran an hour ahead wrote 'next' an hour away: the others start from now, not then."""
    import time

    store = blob_store_from_connection("S", {"S": azurite})
    assert isinstance(store, BlobSlotStore)
    container = _container(azurite)
    key = "tenant-c/app-skew"
    store.reserve(key, 1, 0.05, 0.0)  # creates the blob
    container.upload_blob(key, json.dumps({"next": time.time() + 3600}), overwrite=True)
    start = store.reserve(key, 1, 0.05, 0.0)  # the cached ETag is stale: reads the skewed value, then books
    assert start < time.time() + 60
