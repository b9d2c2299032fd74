"""Keep-alive: an idle stream gets a ping comment every interval; a busy one needs none.

Pings come from one task per process (``gateway.sse.open_streams.OpenStreams``) rather than a
task per stream, in sse-starlette's format (``: ping - <UTC time>``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from producers.publisher import Publisher
from tests.support.assertions import publish_numbered
from tests.support.processes import GatewayProcess
from tests.support.sse import sse_connect

PING_INTERVAL = 0.3


async def test_idle_streams_are_pinged_and_busy_ones_are_not(
    redis_url: str, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(env={"SSE_PING_INTERVAL": str(PING_INTERVAL)})
    async with (
        sse_connect(gateway.base_url, channels=["quiet"]) as idle,
        sse_connect(gateway.base_url, channels=["busy"]) as busy,
        Publisher.from_url(redis_url) as publisher,
    ):
        await idle.wait_for_opening(timeout=10)
        await busy.wait_for_opening(timeout=10)
        # Busy: an event every third of an interval for six intervals.
        for n in range(18):
            await publish_numbered(publisher, "busy", [n])
            await asyncio.sleep(PING_INTERVAL / 3)
        events = await busy.take(18, timeout=10)
        assert len(events) == 18

    pings = [c for c in idle.comments if c.startswith("ping - ")]
    assert len(pings) >= 3, idle.comments
    assert busy.comments == [], "a stream that was written to within the interval got a ping"
