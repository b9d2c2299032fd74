"""A malformed message on a live channel is logged, counted and skipped.

Anyone who can PUBLISH on the Redis server can put anything on a channel's live
pub/sub name. Such a message must cost neither the pub/sub connection (which would
resync every stream of the process) nor any stream: it is skipped, counted in
``/stats`` and logged, and the events around it arrive as usual.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from contract.wire import Keyspace
from producers.publisher import Publisher
from tests.support.assertions import assert_exactly, messages, numbered, publish_numbered
from tests.support.processes import GatewayProcess
from tests.support.sse import sse_connect

MALFORMED = [
    b"no newlines at all",
    b"not-an-id\n0-0\necho\n{}",
    b"1-0\n0-0",  # too few fields
    b"",
]


def redis_stats(gateway: GatewayProcess) -> dict[str, Any]:
    stats = gateway.stats()["redis"]
    assert isinstance(stats, dict)
    return stats


async def test_malformed_live_messages_are_skipped_and_counted_not_fatal(
    redis_url: str, redis_client: Redis, gateway: GatewayProcess
) -> None:
    live = Keyspace().live_channel("echo")
    async with (
        sse_connect(gateway.base_url, channels=["echo"]) as stream,
        Publisher.from_url(redis_url) as publisher,
    ):
        await publish_numbered(publisher, "echo", range(3))
        for payload in MALFORMED:
            assert await redis_client.publish(live, payload) == 1  # the gateway is listening
        await publish_numbered(publisher, "echo", range(3, 6))
        events = await stream.take(6, timeout=10)
    assert_exactly(messages(events, "echo"), numbered(6))
    deadline = asyncio.get_running_loop().time() + 10
    while (stats := redis_stats(gateway))["malformed_skipped"] != len(MALFORMED):
        assert asyncio.get_running_loop().time() < deadline, stats
        await asyncio.sleep(0.05)
    assert stats["reconnects"] == 0
    assert stats["connected"] is True
    assert gateway.log().count("skipped a malformed live message") == 1  # rate-limited
