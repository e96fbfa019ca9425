"""The process-wide Graph write pacer (GRAPH_WRITES_PER_SECOND): spacing, sharing, and no 429s.

Why: one worker runs many activities at once; unpaced, their writes arrive in bursts above Graph's
identity write limit and collect 429s (then sleep and burst again). The pacer spaces the writes of
the whole process ``1 / rate`` seconds apart.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from core_support import CUSTOM_TEMPLATE_ID, graph_requests
from core import clients, errors, settings as core_settings
from core.graph import applications as apps
from core.graph.transport import GraphClient, WritePacer, shared_write_pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_writes_are_spaced_one_interval_apart_without_burst():
    clock = FakeClock()
    pacer = WritePacer(20, clock.monotonic, clock.sleep)
    assert [round(pacer.acquire(), 6) for _ in range(4)] == [0.0, 0.05, 0.05, 0.05]
    clock.now += 1.0  # idle time is not saved up as a burst
    assert [round(pacer.acquire(), 6) for _ in range(2)] == [0.0, 0.05]


def test_waiting_callers_reserve_consecutive_slots():
    clock = FakeClock()
    pacer = WritePacer(10, clock.monotonic, lambda s: None)  # callers that have not slept yet
    assert [round(pacer.acquire(), 6) for _ in range(3)] == [0.0, 0.1, 0.2]


def test_the_setting_defaults_to_graphs_limit_and_zero_turns_pacing_off():
    base = {"KEY_VAULT_URL": "https://vault.example.net/"}
    assert core_settings.Settings.from_env(base).graph_writes_per_second == 20
    assert core_settings.Settings.from_env({**base, "GRAPH_WRITES_PER_SECOND": "0"}).graph_writes_per_second == 0
    with pytest.raises(Exception) as caught:
        core_settings.Settings.from_env({**base, "GRAPH_WRITES_PER_SECOND": "-1"})
    assert "GRAPH_WRITES_PER_SECOND" in str(caught.value)
    assert shared_write_pacer(0) is None
    assert shared_write_pacer(20) is shared_write_pacer(20)  # one per process, shared by every client


def _patch_concurrently(client: GraphClient, sp_id: str, count: int) -> int:
    """``count`` PATCHes from 12 threads; returns how many still failed (throttled) after their retries."""
    def write(i: int) -> int:
        try:
            client.patch(f"/servicePrincipals/{sp_id}", {"notes": f"write {i}"})
            return 0
        except errors.GraphThrottled:
            return 1

    with ThreadPoolExecutor(max_workers=12) as pool:
        return sum(pool.map(write, range(count)))


@pytest.mark.timeout(60)
def test_paced_concurrent_writes_stay_under_the_limit(core_env):
    """Concurrent writes at the emulator's limit (10 per 1-s window, no burst): paced, no 429 at all."""
    sp_id = apps.instantiate(clients.get_graph(), CUSTOM_TEMPLATE_ID, "Paced app")["servicePrincipal"]["id"]
    core_env.admin.set_faults(throttling={"enabled": True, "writes": {"limit": 10, "windowSeconds": 1}})
    settings = core_settings.Settings.from_env(os.environ)

    unpaced = GraphClient(settings, clients.get_credential(), write_pacer=None)
    core_env.admin.clear_requests()
    _patch_concurrently(unpaced, sp_id, 40)
    statuses = [e["status"] for e in graph_requests(core_env, method="PATCH")]
    assert statuses.count(429) > 0, "unpaced bursts must hit the limit, or this test proves nothing"

    paced = GraphClient(settings, clients.get_credential(), write_pacer=WritePacer(10))
    core_env.admin.advance(5)  # let the emulator's bucket refill
    core_env.admin.clear_requests()
    assert _patch_concurrently(paced, sp_id, 40) == 0
    statuses = [e["status"] for e in graph_requests(core_env, method="PATCH")]
    assert len(statuses) == 40 and all(status < 300 for status in statuses), statuses  # no 429, no retry
