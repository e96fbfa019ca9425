"""The emulator's Key Vault expiry events (emulator/eventgrid.py), per
https://learn.microsoft.com/azure/event-grid/event-schema-key-vault ("SecretNearExpiry: triggered when the
current version of a secret is about to expire. (The event is triggered 30 days before the expiration
date.)"; "SecretExpired: ... when the current version of a secret is expired") and
https://learn.microsoft.com/azure/key-vault/general/event-grid-overview (events only for versions created
after the subscription): each once per version, on the emulator's clock, to a real local webhook.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from aiohttp import web

from emulator.clock import Clock
from emulator.eventgrid import EXPIRED, NEAR_EXPIRY, EventGrid
from emulator.keyvault import SecretStore

DAY = 86400
VAULT = "https://kv.example.test"


async def _scenario(steps) -> list[tuple[str, str, str]]:
    """Run ``steps(grid, store, clock, subscribe)`` against a webhook; ``(eventType, subject, version)`` received."""
    received: list[tuple[str, str, str]] = []

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        if request.headers.get("aeg-event-type") == "SubscriptionValidation":
            return web.json_response({"validationResponse": body[0]["data"]["validationCode"]})
        for event in body:
            received.append((event["eventType"], event["subject"], event["data"]["Version"]))
            assert event["data"]["EXP"] and event["data"]["ObjectType"] == "Secret"
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    clock = Clock()
    counter = itertools.count(1)
    store = SecretStore(lambda: f"{next(counter):032x}")
    grid = EventGrid(clock)

    async def subscribe(name: str) -> None:
        existing = [(n.lower(), v["version"]) for n, versions in store.secrets.items() for v in versions]
        await grid.subscribe({"endpoint": f"http://127.0.0.1:{port}/hook", "name": name,
                              "includedEventTypes": [NEAR_EXPIRY, EXPIRED]}, existing)

    async def settle() -> None:
        while grid._tasks:
            await asyncio.gather(*list(grid._tasks))

    try:
        await steps(grid, store, clock, subscribe, settle)
        await settle()
    finally:
        await grid.close()
        await runner.cleanup()
    return received


def test_near_expiry_and_expired_fire_once_per_version_at_their_times():
    async def steps(grid, store, clock, subscribe, settle):
        await subscribe("s")
        version = store.set("token", "v1", expires=int(clock.now().timestamp()) + 45 * DAY)["version"]
        assert grid.publish_expiry(store, VAULT) == []  # 45 days left: nothing yet
        clock.advance(14 * DAY)
        assert grid.publish_expiry(store, VAULT) == []  # 31 days left
        clock.advance(2 * DAY)
        assert [e["eventType"] for e in grid.publish_expiry(store, VAULT)] == [NEAR_EXPIRY]
        assert grid.publish_expiry(store, VAULT) == []  # once per version, however often checked
        clock.advance(30 * DAY)
        (expired,) = grid.publish_expiry(store, VAULT)
        assert expired["eventType"] == EXPIRED and expired["data"]["Version"] == version
        clock.advance(90 * DAY)
        assert grid.publish_expiry(store, VAULT) == []

    received = asyncio.run(_scenario(steps))
    assert [(t, s) for t, s, _ in received] == [(NEAR_EXPIRY, "token"), (EXPIRED, "token")]


def test_a_version_set_inside_the_window_is_near_expiry_at_once_and_one_set_expired_only_expires():
    async def steps(grid, store, clock, subscribe, settle):
        await subscribe("s")
        now = int(clock.now().timestamp())
        store.set("soon", "v", expires=now + 10 * DAY)
        store.set("gone", "v", expires=int(time.time()) - 60)  # set already expired: never "about to expire"
        assert sorted((e["eventType"], e["subject"]) for e in grid.publish_expiry(store, VAULT)) == [
            (EXPIRED, "gone"), (NEAR_EXPIRY, "soon")]
        store.set("none", "v")  # no exp: no expiry events ever
        clock.advance(400 * DAY)
        assert [(e["eventType"], e["subject"]) for e in grid.publish_expiry(store, VAULT)] == [(EXPIRED, "soon")]

    received = asyncio.run(_scenario(steps))
    assert sorted((t, s) for t, s, _ in received) == [(EXPIRED, "gone"), (EXPIRED, "soon"), (NEAR_EXPIRY, "soon")]


def test_only_the_current_version_and_only_subscriptions_older_than_it():
    async def steps(grid, store, clock, subscribe, settle):
        now = int(clock.now().timestamp())
        before = store.set("token", "v1", expires=now + 5 * DAY)["version"]  # exists before the subscription
        await subscribe("s")
        grid.publish_expiry(store, VAULT)  # near expiry: published, but not to "s" (a younger subscription)
        await settle()
        replaced = store.set("token", "v2", expires=now + 40 * DAY)["version"]
        store.set("token", "v3", expires=now + 60 * DAY)  # v2 is no longer current: never fires
        clock.advance(35 * DAY)
        assert [e["data"]["Version"] for e in grid.publish_expiry(store, VAULT)] == [store.get("token", None)["version"]]
        assert before != replaced

    received = asyncio.run(_scenario(steps))
    assert received == [(NEAR_EXPIRY, "token", f"{3:032x}")]


def test_a_version_set_expired_on_the_emulators_clock_only_expires_when_that_clock_runs_ahead():
    """``exp`` is on the emulator's clock (the one the checks read), which a test or demo moves ahead of the
    wall clock: a version set already expired there was never "about to expire"."""
    async def steps(grid, store, clock, subscribe, settle):
        await subscribe("s")
        clock.advance(90 * DAY)
        store.set("late", "v", expires=int(clock.now().timestamp()) - 60)
        assert [(e["eventType"], e["subject"]) for e in grid.publish_expiry(store, VAULT)] == [(EXPIRED, "late")]

    received = asyncio.run(_scenario(steps))
    assert [(t, s) for t, s, _ in received] == [(EXPIRED, "late")]
