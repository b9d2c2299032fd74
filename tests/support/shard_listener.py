"""Live notifications as a cluster gateway gets them: ``SSUBSCRIBE`` on one node."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from redis.asyncio import Redis

from contract.wire import Keyspace, LiveMessage, decode_live
from tests.support.redis_cluster import ClusterNode


@contextlib.asynccontextmanager
async def listening(
    node: ClusterNode, channels: Sequence[str], keyspace: Keyspace | None = None
) -> AsyncIterator[dict[str, list[LiveMessage]]]:
    """Subscribe to the live channels of ``channels`` on ``node``; yields the messages
    received per channel so far (filled in by a task this block owns).

    Returns once the node confirmed every subscription, so nothing published after is
    missed. A replica delivers its master's shard messages too, and keeps its
    subscriptions when it is promoted.
    """
    keys = keyspace or Keyspace()
    client = Redis(host="127.0.0.1", port=node.port)
    pubsub = client.pubsub()
    received: dict[str, list[LiveMessage]] = {channel: [] for channel in channels}
    try:
        await pubsub.ssubscribe(*(keys.live_channel(channel) for channel in channels))
        confirmed = 0
        while confirmed < len(channels):
            message = await pubsub.get_message(timeout=5)
            assert message is not None, f"{node} did not confirm SSUBSCRIBE"
            confirmed += message["type"] == "ssubscribe"

        async def pump() -> None:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None and message["type"] == "smessage":
                    channel = keys.channel_of_live(message["channel"])
                    received[channel].append(decode_live(message["data"]))

        task = asyncio.create_task(pump())
        try:
            yield received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await pubsub.aclose()
        await client.aclose()


async def wait_for_live(
    received: dict[str, list[LiveMessage]], channel: str, count: int, timeout: float = 10
) -> list[LiveMessage]:
    """The messages of ``channel`` once at least ``count`` have arrived."""
    deadline = time.monotonic() + timeout
    while len(received[channel]) < count:
        assert time.monotonic() < deadline, (
            f"{len(received[channel])} of {count} live messages on {channel!r}"
        )
        await asyncio.sleep(0.02)
    return received[channel]
