"""The publish script against a real Redis: atomic append + live publish, retention, links."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from contract.backoff import Backoff
from contract.events import Echo, EchoPayload
from contract.wire import Keyspace, decode_fields, decode_live
from producers.publisher import Publisher, Retention
from tests.support.redis_server import RedisServer
from tests.support.reply_cutter import ReplyCutter


async def test_publish_appends_links_and_publishes_live(
    redis_url: str, redis_client: Redis
) -> None:
    keys = Keyspace("sse")
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.live_channel("echo"))
    await pubsub.get_message(timeout=1)  # subscribe confirmation
    async with Publisher.from_url(redis_url) as publisher:
        first = await publisher.publish("echo", Echo(data=EchoPayload(message="a")))
        second = await publisher.publish("echo", Echo(data=EchoPayload(message="b")))
    history = await redis_client.xrange(keys.history_key("echo"))
    assert [entry_id.decode() for entry_id, _ in history] == [first, second]
    event, data, prev = decode_fields(history[1][1])
    assert (event, prev.decode()) == (b"echo", first)
    assert b'"message":"b"' in data
    lives = []
    while len(lives) < 2:
        message = await pubsub.get_message(timeout=2)
        assert message is not None, "live message missing"
        if message["type"] == "message":
            lives.append(decode_live(message["data"]))
    assert [(m.id.decode(), m.prev.decode()) for m in lives] == [(first, "0-0"), (second, first)]
    await pubsub.aclose()


async def test_retention_trims_history_but_keeps_links(redis_url: str, redis_client: Redis) -> None:
    retention = Retention(maxlen=3, exact_trim=True)
    async with Publisher.from_url(redis_url, retention=retention) as publisher:
        ids = [
            await publisher.publish("echo", Echo(data=EchoPayload(message=str(i))))
            for i in range(6)
        ]
    history = await redis_client.xrange(Keyspace().history_key("echo"))
    assert [entry_id.decode() for entry_id, _ in history] == ids[3:]
    assert decode_fields(history[0][1])[2].decode() == ids[2]


async def test_publisher_retries_until_redis_answers(redis_server: RedisServer) -> None:
    redis_server.stop()
    async with Publisher.from_url(redis_server.url) as publisher:
        pending = asyncio.ensure_future(
            publisher.publish("echo", Echo(data=EchoPayload(message="late")))
        )
        await asyncio.sleep(0.5)
        assert not pending.done(), "publish must wait for Redis, not give up"
        redis_server.start()
        entry_id = await asyncio.wait_for(pending, timeout=15)
    async with Redis.from_url(redis_server.url) as check:
        history = await check.xrange(Keyspace().history_key("echo"))
    assert [i.decode() for i, _ in history] == [entry_id]


async def test_a_retry_after_a_lost_reply_does_not_publish_twice(
    redis_server: RedisServer, redis_client: Redis
) -> None:
    keys = Keyspace()
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.live_channel("echo"))
    await pubsub.get_message(timeout=1)  # subscribe confirmation
    # Load the script first so that the cut EVALSHA is the one that runs it.
    async with Publisher.from_url(redis_server.url) as warm:
        before = await warm.publish("echo", Echo(data=EchoPayload(message="before")))
    async with (
        ReplyCutter(redis_server.port, trigger=b"EVALSHA") as cutter,
        Publisher.from_url(cutter.url, backoff=Backoff(0.01, 0.05)) as publisher,
    ):
        entry_id = await asyncio.wait_for(
            publisher.publish("echo", Echo(data=EchoPayload(message="once"))), timeout=15
        )
        assert cutter.cuts_left == 0, "the proxy never cut a reply: the test proved nothing"
        after = await publisher.publish("echo", Echo(data=EchoPayload(message="after")))
    history = await redis_client.xrange(keys.history_key("echo"))
    assert [i.decode() for i, _ in history] == [before, entry_id, after]
    lives = []
    while len(lives) < 3:
        message = await pubsub.get_message(timeout=2)
        assert message is not None, "live message missing"
        if message["type"] == "message":
            lives.append(decode_live(message["data"]).id.decode())
    assert lives == [before, entry_id, after]
    assert await pubsub.get_message(timeout=0.3) is None, "a live message was sent twice"
    await pubsub.aclose()
