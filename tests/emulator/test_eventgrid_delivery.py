"""The emulator's Event Grid delivery against a real local webhook (found in review): which answers are
retried and how long an event lives, per https://learn.microsoft.com/azure/event-grid/delivery-and-retry
(webhook: 400, 401, 403 and 413 are not retried; an event not delivered within its time to live,
24 hours by default, is dropped - whichever of that and ``maxDeliveryAttempts`` comes first).

The emulator's clock runs a million times faster than real time here, so Event Grid's retry schedule
(10 s ... 12 h) takes well under a second of wall time.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from emulator.clock import Clock
from emulator.eventgrid import EventGrid


async def _deliveries(answer: int, **subscription) -> list[dict]:
    received: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        if request.headers.get("aeg-event-type") == "SubscriptionValidation":
            body = await request.json()
            return web.json_response({"validationResponse": body[0]["data"]["validationCode"]})
        received.append(request.headers["aeg-delivery-count"])
        return web.Response(status=answer)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    grid = EventGrid(Clock(scale=1_000_000))
    try:
        await grid.subscribe({"endpoint": f"http://127.0.0.1:{port}/hook", "name": "s", **subscription})
        event = grid.key_vault_event("Microsoft.KeyVault.SecretNewVersionCreated", "https://v.vault.azure.net",
                                     "token", {"version": "0" * 32})
        grid.publish(event)
        await asyncio.wait_for(asyncio.gather(*grid._tasks), timeout=60)
    finally:
        await grid.close()
        await runner.cleanup()
    assert len(received) == len(grid.deliveries)
    return grid.deliveries


def test_a_403_is_not_retried():
    deliveries = asyncio.run(_deliveries(403))
    assert [(d["attempt"], d["status"]) for d in deliveries] == [(1, 403)]


def test_a_failing_endpoint_is_retried_within_the_events_time_to_live():
    # 0, 10 s, 40 s, 100 s, 400 s, 1,000 s, 2,800 s, 6,400 s, 17,200 s, 38,800 s, 82,000 s: the next (12 h
    # later) would be past 24 h, so 11 attempts, not maxDeliveryAttempts' 30
    deliveries = asyncio.run(_deliveries(503))
    assert [d["attempt"] for d in deliveries] == list(range(1, 12))
    # a shorter time to live (eventTimeToLiveInMinutes): 0, 10 s, 40 s, 100 s
    short = asyncio.run(_deliveries(503, eventTimeToLiveInMinutes=5))
    assert [d["attempt"] for d in short] == [1, 2, 3, 4]
    # and fewer attempts than the time to live allows: maxDeliveryAttempts wins
    assert len(asyncio.run(_deliveries(503, maxDeliveryAttempts=3))) == 3


def test_a_retried_delivery_that_succeeds_stops():
    assert [d["status"] for d in asyncio.run(_deliveries(202))] == [202]
