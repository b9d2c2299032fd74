"""Durable publishes on one Redis server with a replica (SSE_PUBLISH_REPLICAS).

A publish is acknowledged, and sent live, only once the required replicas hold it;
until then it is retried with its token, so it is appended once however long it waits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from contract.backoff import Backoff
from contract.events import Echo, EchoPayload
from contract.wire import Keyspace, decode_live
from producers.publisher import Publisher, PublishError
from tests.support.redis_server import LocalRedisServer

KEYS = Keyspace()


@pytest.fixture
def primary() -> Iterator[LocalRedisServer]:
    server = LocalRedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
async def replica(primary: LocalRedisServer) -> AsyncIterator[LocalRedisServer]:
    """A second server replicating ``primary``, in sync when the test starts."""
    server = LocalRedisServer()
    try:
        server.start()
        async with Redis(port=server.port) as client:
            await client.replicaof("127.0.0.1", str(primary.port))
        async with Redis(port=primary.port) as client:
            deadline = time.monotonic() + 10
            while (await client.info("replication")).get("slave0", {}).get("state") != "online":
                assert time.monotonic() < deadline, "the replica never came online"
                await asyncio.sleep(0.02)
        yield server
    finally:
        server.close()


@pytest.fixture
async def live(primary: LocalRedisServer) -> AsyncIterator[PubSub]:
    async with Redis(port=primary.port) as client:
        pubsub = client.pubsub()
        await pubsub.subscribe(KEYS.live_channel("echo"))
        await pubsub.get_message(timeout=1)  # subscribe confirmation
        yield pubsub
        await pubsub.aclose()


async def live_ids(pubsub: PubSub, quiet: float = 0.3) -> list[str]:
    """Every live message id until none arrives for ``quiet`` seconds."""
    found = []
    while (message := await pubsub.get_message(timeout=quiet)) is not None:
        if message["type"] == "message":
            found.append(decode_live(message["data"]).id.decode())
    return found


async def history_ids(port: int) -> list[str]:
    async with Redis(port=port) as client:
        return [entry_id.decode() for entry_id, _ in await client.xrange(KEYS.history_key("echo"))]


def event(message: str) -> Echo:
    return Echo(data=EchoPayload(message=message))


async def test_replicas_that_do_not_exist_hold_the_publish_back_and_append_once(
    primary: LocalRedisServer, live: PubSub
) -> None:
    async with Publisher.from_url(
        primary.url, replicas=1, wait_timeout_ms=20, max_attempts=4, backoff=Backoff(0.01, 0.02)
    ) as publisher:
        with pytest.raises(PublishError, match=r"after 4 attempts.*0 of 1 replica"):
            await publisher.publish("echo", event("unconfirmed"))
    # Four attempts, one entry (each retry found it by its token), nothing sent live.
    assert len(await history_ids(primary.port)) == 1
    assert await live_ids(live) == []


async def test_with_a_replica_a_publish_waits_for_it_by_default(
    primary: LocalRedisServer,
    replica: LocalRedisServer,
    live: PubSub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="producers.publisher")
    assert replica.process is not None
    async with Publisher.from_url(
        primary.url, wait_timeout_ms=50, backoff=Backoff(0.01, 0.05)
    ) as publisher:
        first = await publisher.publish("echo", event("first"))
        replica.process.send_signal(signal.SIGSTOP)  # it can confirm nothing now
        try:
            pending = asyncio.create_task(publisher.publish("echo", event("held")))
            deadline = time.monotonic() + 10
            while "replica(s) confirmed entry" not in caplog.text and not pending.done():
                assert time.monotonic() < deadline, "WAIT never fell short"
                await asyncio.sleep(0.02)
            assert not pending.done(), "acknowledged before the replica held it"
            assert await live_ids(live) == [first], "sent live before the replica held it"
        finally:
            replica.process.send_signal(signal.SIGCONT)
        held = await asyncio.wait_for(pending, timeout=10)
    assert await live_ids(live) == [held]
    assert await history_ids(replica.port) == [first, held]
