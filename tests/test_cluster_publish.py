"""Producers on a real Redis Cluster (3 masters, 3 replicas): every event once, in order,
through a master failover, acknowledged and sent live only once a replica holds it.

Channels are picked so that each master owns some; history is read from the master
that owns the channel's slot, and live notifications are taken with ``SSUBSCRIBE``
on the node a gateway would use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence

import pytest
from redis.asyncio import Redis

from contract.backoff import Backoff
from contract.events import Echo, EchoPayload
from contract.redis_target import RedisConfigError
from contract.wire import NO_ENTRY_ID, Keyspace, LiveMessage, decode_fields
from producers.publisher import Publisher
from tests.support.assertions import assert_exactly, numbered
from tests.support.processes import ProducerProcess, run_cli
from tests.support.redis_cluster import ClusterNode, LocalRedisCluster, channel_slot
from tests.support.redis_server import RedisServer
from tests.support.shard_listener import listening, wait_for_live

KEYS = Keyspace()
FAST_RETRIES = Backoff(0.05, 0.3)


def history(node: ClusterNode, channel: str) -> list[tuple[str, str, str]]:
    """(id, prev, message) of every entry of ``channel`` on ``node``, oldest first."""
    with node.client() as client:
        entries = client.xrange(KEYS.history_key(channel))
    rows = []
    for entry_id, fields in entries:
        _, data, prev = decode_fields(fields)
        rows.append((entry_id.decode(), prev.decode(), json.loads(data)["message"]))
    return rows


def a_shard(cluster: LocalRedisCluster, index: int) -> tuple[str, ClusterNode, ClusterNode]:
    """A channel on the ``index``-th master, that master, and its replica."""
    channel = cluster.channels_on_each_master()[index][0]
    master = cluster.master_of(channel)
    return channel, master, cluster.replicas_of(master)[0]


def assert_linked(rows: Sequence[tuple[str, str, str]]) -> None:
    """Each entry names the one before it: nothing lost or inserted in between."""
    previous = NO_ENTRY_ID.decode()
    for entry_id, prev, _ in rows:
        assert prev == previous, f"entry {entry_id} links to {prev}, not {previous}"
        previous = entry_id


def ids(messages: Sequence[LiveMessage]) -> list[str]:
    return [message.id.decode() for message in messages]


def published_ids(producer: ProducerProcess) -> list[str]:
    """The entry ids a producer process logged as published (at debug, in JSON), in order."""
    lines = [json.loads(line) for line in producer.log().splitlines()]
    return [line["id"] for line in lines if line["event"] == "published"]


async def wait_for_shortfall(caplog: pytest.LogCaptureFixture, publish: asyncio.Task[str]) -> None:
    """Until the publisher logs that WAIT fell short (or, wrongly, the publish completes)."""
    deadline = time.monotonic() + 10
    while "replica(s) confirmed entry" not in caplog.text and not publish.done():
        assert time.monotonic() < deadline, "WAIT never fell short"
        await asyncio.sleep(0.02)


async def wait_exit(process: ProducerProcess, timeout: float = 60) -> int:
    return await asyncio.to_thread(process.wait, timeout)


async def test_producers_publish_to_channels_on_all_three_masters(
    redis_cluster: LocalRedisCluster, cluster_producer_factory: Callable[..., ProducerProcess]
) -> None:
    channels = [names[0] for names in redis_cluster.channels_on_each_master()]
    masters = [redis_cluster.master_of(channel) for channel in channels]
    assert len(set(masters)) == 3
    count = 40
    # REDIS_URL names any node: the third producer is given one replica of another shard.
    stranger = redis_cluster.replicas_of(masters[0])[0]
    urls = [redis_cluster.url, redis_cluster.url, stranger.url]
    async with contextlib.AsyncExitStack() as stack:
        live = [
            await stack.enter_async_context(listening(m, [c]))
            for m, c in zip(masters, channels, strict=True)
        ]
        producers = [
            cluster_producer_factory(
                "echo",
                redis_url=url,
                channel=channel,
                count=count,
                interval=0,
                log_level="debug",
                env={"SSE_LOG_FORMAT": "json"},
            )
            for url, channel in zip(urls, channels, strict=True)
        ]
        assert [await wait_exit(producer) for producer in producers] == [0, 0, 0]
        for received, channel in zip(live, channels, strict=True):
            await wait_for_live(received, channel, count)

    for master, channel, producer, received in zip(masters, channels, producers, live, strict=True):
        rows = history(master, channel)
        acknowledged = published_ids(producer)
        assert len(acknowledged) == count
        assert [entry_id for entry_id, _, _ in rows] == acknowledged
        assert_linked(rows)
        # Sent once each, in order, on the master that owns the channel (sharded pub/sub).
        assert ids(received[channel]) == acknowledged
        assert [m.prev.decode() for m in received[channel]] == [prev for _, prev, _ in rows]


async def test_a_master_killed_mid_run_loses_nothing_acknowledged_and_repeats_nothing(
    redis_cluster: LocalRedisCluster,
) -> None:
    channels = [names[0] for names in redis_cluster.channels_on_each_master()]
    victim = redis_cluster.master_of(channels[0])
    heir = redis_cluster.replicas_of(victim)[0]
    count = 150
    acknowledged: dict[str, list[str]] = {channel: [] for channel in channels}

    async def produce(publisher: Publisher, channel: str) -> None:
        for number in range(count):
            event = Echo(data=EchoPayload(message=f"msg-{number}"))
            acknowledged[channel].append(await publisher.publish(channel, event))
            await asyncio.sleep(0.005)

    async with (
        listening(heir, channels[:1]) as seen_by_heir,
        Publisher.from_url(redis_cluster.url, backoff=FAST_RETRIES) as publisher,
    ):
        tasks = [asyncio.create_task(produce(publisher, channel)) for channel in channels]
        try:
            while len(acknowledged[channels[0]]) < count // 3:
                assert not any(task.done() for task in tasks), "a producer task ended early"
                await asyncio.sleep(0.01)
            promoted = await asyncio.to_thread(redis_cluster.kill_master, victim)
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await wait_for_live(seen_by_heir, channels[0], count)

    assert promoted is heir
    for channel in channels:
        rows = history(redis_cluster.master_of(channel), channel)
        assert_exactly([message for _, _, message in rows], numbered(count))
        assert [entry_id for entry_id, _, _ in rows] == acknowledged[channel]
        assert_linked(rows)
    # Whatever the heir relayed live, before and after it took over, is in the history
    # that survived: no client was shown an event the failover took back.
    survived = {entry_id for entry_id, _, _ in history(heir, channels[0])}
    assert set(ids(seen_by_heir[channels[0]])) <= survived

    # The killed master comes back as the heir's replica, in sync with its history.
    await asyncio.to_thread(redis_cluster.restart, victim)
    assert redis_cluster.replicas_of(heir) == [victim]
    async with Publisher.from_url(victim.url) as publisher:
        last = await publisher.publish(channels[0], Echo(data=EchoPayload(message="after")))
    with victim.client() as client:
        client.execute_command("READONLY")
        copied = client.xrange(KEYS.history_key(channels[0]))
    assert copied[-1][0].decode() == last  # acknowledged once the returning replica held it


async def test_an_event_is_acknowledged_and_sent_live_only_once_a_replica_holds_it(
    redis_cluster: LocalRedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="producers.publisher")
    channel, master, replica = a_shard(redis_cluster, 0)
    async with (
        listening(master, [channel]) as live,
        Publisher.from_url(
            redis_cluster.url, replicas=1, wait_timeout_ms=100, backoff=FAST_RETRIES
        ) as publisher,
    ):
        warm = await publisher.publish(channel, Echo(data=EchoPayload(message="warm")))
        replica.pause()  # it can no longer confirm anything
        try:
            pending = asyncio.create_task(
                publisher.publish(channel, Echo(data=EchoPayload(message="held")))
            )
            await wait_for_shortfall(caplog, pending)
            assert not pending.done(), "acknowledged before a replica held the event"
            assert ids(live[channel]) == [warm], "sent live before a replica held the event"
        finally:
            replica.resume()
        held = await asyncio.wait_for(pending, timeout=20)
        assert ids(await wait_for_live(live, channel, 2)) == [warm, held]

    # Acknowledged, so it survives the loss of the master that acknowledged it.
    promoted = await asyncio.to_thread(redis_cluster.kill_master, master)
    assert promoted is replica
    assert [(entry_id, message) for entry_id, _, message in history(promoted, channel)] == [
        (warm, "warm"),
        (held, "held"),
    ]


async def test_a_publish_in_flight_when_its_master_dies_lands_once_on_the_replica(
    redis_cluster: LocalRedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The entry reached the replica, the acknowledgement did not reach the producer:
    the retry finds the entry by its token on the promoted replica, appends nothing."""
    caplog.set_level(logging.WARNING, logger="producers.publisher")
    channel, master, replica = a_shard(redis_cluster, 1)
    async with (
        listening(replica, [channel]) as live,
        Publisher.from_url(redis_cluster.url, wait_timeout_ms=100, backoff=FAST_RETRIES) as p,
    ):
        warm = await p.publish(channel, Echo(data=EchoPayload(message="warm")))
        await wait_for_live(live, channel, 1)
        replica.pause()  # receives the entry into its socket buffer, confirms nothing
        try:
            pending = asyncio.create_task(p.publish(channel, Echo(data=EchoPayload(message="x"))))
            await wait_for_shortfall(caplog, pending)
            appended = re.findall(r"confirmed entry (\S+)", caplog.text)[0]
            master.kill()
        finally:
            replica.resume()
        promoted = await asyncio.to_thread(redis_cluster.kill_master, master)
        entry_id = await asyncio.wait_for(pending, timeout=30)
        await wait_for_live(live, channel, 2)

    assert promoted is replica
    assert entry_id == appended, "the retry appended again instead of finding its entry"
    assert [(i, m) for i, _, m in history(promoted, channel)] == [(warm, "warm"), (entry_id, "x")]
    assert ids(live[channel]) == [warm, entry_id]


async def test_publishes_follow_a_slot_migrated_under_them(
    redis_cluster: LocalRedisCluster,
) -> None:
    """ASK while the keys are on the new master and the slot is not yet, MOVED after."""
    channel = redis_cluster.channels_on_each_master()[0][0]
    source = redis_cluster.master_of(channel)
    target = next(master for master in redis_cluster.masters() if master is not source)
    async with Publisher.from_url(redis_cluster.url, backoff=FAST_RETRIES) as publisher:

        async def publish(number: int) -> str:
            return await publisher.publish(channel, Echo(data=EchoPayload(message=f"msg-{number}")))

        acknowledged = [await publish(0), await publish(1)]
        migration = redis_cluster.begin_migration(channel_slot(channel), target)
        acknowledged.append(await publish(2))  # keys still on the source: served there
        assert await asyncio.to_thread(migration.move_keys) == 1
        acknowledged.append(await publish(3))  # ASK: ASKING + script + WAIT on the target
        await asyncio.to_thread(migration.finish)
        acknowledged += [await publish(4), await publish(5)]  # MOVED, then the new map

    assert redis_cluster.master_of(channel) is target
    rows = history(target, channel)
    assert [entry_id for entry_id, _, _ in rows] == acknowledged
    assert_exactly([message for _, _, message in rows], numbered(6))
    assert_linked(rows)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    return lines[0]


async def test_a_cluster_node_taken_for_a_single_server_is_refused_in_one_line(
    redis_cluster: LocalRedisCluster,
) -> None:
    node = redis_cluster.masters()[0]
    env = {"REDIS_URL": node.url, "SSE_REDIS_MODE": "standalone"}
    result = await asyncio.to_thread(run_cli, "producers", "echo", env=env)
    assert result.returncode == 2
    assert "is a Redis Cluster node" in one_line(result.stderr)
    # A plain client handed to Publisher: the first redirection says what is wrong.
    channel = redis_cluster.channels_on_each_master()[1][0]
    async with Publisher(Redis.from_url(node.url), backoff=FAST_RETRIES) as publisher:
        with pytest.raises(RedisConfigError, match="it is a Redis Cluster node"):
            await publisher.publish(channel, Echo(data=EchoPayload(message="lost?")))


@pytest.mark.parametrize(
    ("url", "mode", "expected"),
    [
        ("{url},{url}", "auto", "lists 2 seed nodes, as for a Redis Cluster"),
        ("{url}", "cluster", "is a standalone Redis"),
    ],
)
def test_a_standalone_server_given_as_a_cluster_stops_the_producer(
    redis_server: RedisServer, url: str, mode: str, expected: str
) -> None:
    seeds = url.format(url=f"redis://127.0.0.1:{redis_server.port}")
    result = run_cli("producers", "echo", env={"REDIS_URL": seeds, "SSE_REDIS_MODE": mode})
    assert result.returncode == 2
    assert expected in one_line(result.stderr)
