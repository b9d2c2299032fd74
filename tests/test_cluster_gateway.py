"""Gateways on a real Redis Cluster (3 masters, 3 replicas, AOF on): one sharded pub/sub
link per master, and every delivery guarantee through a master failover, a slot
migration and a shard that does not come back.

Each event's message names its channel and number (``ch-3/17``), so a client's merged
stream can be checked channel by channel: every event exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
from redis.asyncio import Redis

from contract.backoff import Backoff
from contract.events import Echo, EchoPayload
from contract.wire import (
    NOTIFY_LATER,
    Keyspace,
    decode_fields,
    decode_publish_reply,
    encode_live,
    publish_args,
    script_source,
)
from producers.publisher import Publisher
from tests.support.assertions import assert_cursors_never_move_backwards, assert_exactly
from tests.support.metrics import scrape
from tests.support.processes import GatewayProcess, run_cli
from tests.support.redis_cluster import ClusterNode, LocalRedisCluster, channel_slot, wait_until
from tests.support.redis_server import RedisServer
from tests.support.sse import Frame, sse_connect

KEYS = Keyspace()
FAST_RETRIES = Backoff(0.05, 0.3)
GATEWAY_ENV = {"SSE_REDIS_BACKOFF_MAX": "0.3", "SSE_RETRY_MS": "200"}


def message(channel: str, number: int) -> str:
    return f"{channel}/{number}"


def expected(channel: str, count: int, start: int = 0) -> list[str]:
    return [message(channel, number) for number in range(start, start + count)]


def by_channel(frames: Sequence[Frame], channels: Sequence[str]) -> dict[str, list[str]]:
    """The messages of ``frames`` per channel; no control event may be among them."""
    control = [(frame.event, frame.data) for frame in frames if frame.event != "echo"]
    assert not control, f"control events where nothing was lost: {control}"
    texts = [json.loads(frame.data)["message"] for frame in frames]
    return {channel: [t for t in texts if t.startswith(channel + "/")] for channel in channels}


def history_messages(node: ClusterNode, channel: str) -> list[str]:
    with node.client() as client:
        entries = client.xrange(KEYS.history_key(channel))
    return [json.loads(decode_fields(fields)[1])["message"] for _, fields in entries]


async def publish(publisher: Publisher, channel: str, numbers: range) -> None:
    for number in numbers:
        await publisher.publish(channel, Echo(data=EchoPayload(message=message(channel, number))))


@contextlib.asynccontextmanager
async def publishing(
    url: str, channels: Sequence[str], count: int, interval: float = 0.005
) -> AsyncIterator[dict[str, int]]:
    """Publish ``count`` numbered events on every channel, a round every ``interval``, in a
    task this block owns; yields how many each channel has had acknowledged so far."""
    done = dict.fromkeys(channels, 0)

    async def run() -> None:
        async with Publisher.from_url(url, backoff=FAST_RETRIES) as publisher:
            for number in range(count):
                for channel in channels:
                    await publish(publisher, channel, range(number, number + 1))
                    done[channel] += 1
                await asyncio.sleep(interval)

    task = asyncio.create_task(run())
    try:
        yield done
        await asyncio.wait_for(asyncio.shield(task), timeout=60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"{what} not reached within {timeout}s"
        await asyncio.sleep(0.02)


async def stats(gateway: GatewayProcess) -> dict[str, object]:
    return await asyncio.to_thread(gateway.stats)


def redis_nodes(data: dict[str, object]) -> dict[str, bool]:
    redis = data["redis"]
    assert isinstance(redis, dict)
    return {node["node"]: node["connected"] for node in redis["nodes"]}


async def test_one_stream_on_three_masters_resumes_exactly_once_on_another_gateway(
    redis_cluster: LocalRedisCluster, cluster_gateway_factory: Callable[..., GatewayProcess]
) -> None:
    channels = [names[0] for names in redis_cluster.channels_on_each_master()]
    masters = redis_cluster.masters()
    assert {redis_cluster.master_of(channel).port for channel in channels} == {
        master.port for master in masters
    }
    first, second = (
        cluster_gateway_factory(env=GATEWAY_ENV),
        cluster_gateway_factory(
            # Any one node is enough: the rest of the cluster is discovered from it.
            env=GATEWAY_ENV,
            redis_url=redis_cluster.replicas_of(masters[1])[0].url,
        ),
    )
    async with Publisher.from_url(redis_cluster.url, backoff=FAST_RETRIES) as publisher:
        async with sse_connect(first.base_url, channels) as stream:
            for channel in channels:
                await publish(publisher, channel, range(10))
            frames = await stream.take(30, timeout=15)
            resume_at = stream.last_id
            # One link per master, not per channel or client, in /stats and /metrics.
            nodes = redis_nodes(await stats(first))
            assert nodes == {master.address: True for master in masters}
            exposition = await asyncio.to_thread(scrape, first)
            for master in masters:
                assert exposition.value("sse_gateway_redis_connected", node=master.address) == 1
        for channel in channels:
            await publish(publisher, channel, range(10, 25))

    async with sse_connect(second.base_url, channels, last_event_id=resume_at) as resumed:
        frames += await resumed.take(45, timeout=15)
    received = by_channel(frames, channels)
    for channel in channels:
        assert_exactly(received[channel], expected(channel, 25))
    assert_cursors_never_move_backwards(frames)
    data = await stats(second)
    assert data["redis"]["mode"] == "cluster"  # type: ignore[index]
    # The history API reads each channel on the master of its slot.
    async with httpx.AsyncClient(base_url=second.base_url, timeout=10) as client:
        for channel in channels:
            page = (await client.get(f"/channels/{channel}/history?limit=3")).json()
            assert [e["data"]["message"] for e in page["entries"]] == expected(channel, 3, 22)

    # A cluster node given as one server is refused before anything starts, in one line.
    env = {"REDIS_URL": masters[0].url, "SSE_REDIS_MODE": "standalone"}
    result = await asyncio.to_thread(run_cli, "gateway", env=env)
    assert result.returncode == 2
    assert "is a Redis Cluster node" in one_line(result.stderr)


async def test_a_master_killed_mid_run_every_client_gets_every_event_once(
    redis_cluster: LocalRedisCluster, cluster_gateway_factory: Callable[..., GatewayProcess]
) -> None:
    channels = [names[0] for names in redis_cluster.channels_on_each_master()]
    victim = redis_cluster.master_of(channels[0])
    gateways = [cluster_gateway_factory(env=GATEWAY_ENV) for _ in range(2)]
    count = 120
    total = count * len(channels)
    async with contextlib.AsyncExitStack() as stack:
        staying = [
            await stack.enter_async_context(sse_connect(gateway.base_url, channels))
            for gateway in gateways
        ]
        leaving = await stack.enter_async_context(sse_connect(gateways[1].base_url, channels))
        collectors = [asyncio.create_task(stream.take(total, timeout=60)) for stream in staying]
        async with publishing(redis_cluster.url, channels, count) as done:
            await until(lambda: done[channels[0]] >= count // 4, 30, "a quarter published")
            before = await leaving.take(len(channels) * (count // 4) - 2, timeout=15)
            resume_at = leaving.last_id
            await leaving.aclose()
            promoted = await asyncio.to_thread(redis_cluster.kill_master, victim)
            await until(lambda: done[channels[0]] >= count // 2, 30, "half published")
            async with sse_connect(
                gateways[0].base_url, channels, last_event_id=resume_at
            ) as resumed:
                after = await resumed.take(total - len(before), timeout=60)
        staying_frames = [await collector for collector in collectors]

    for frames in [*staying_frames, before + after]:
        received = by_channel(frames, channels)
        for channel in channels:
            assert_exactly(received[channel], expected(channel, count))
        assert_cursors_never_move_backwards(frames)
    for channel in channels:
        assert_exactly(
            history_messages(redis_cluster.master_of(channel), channel), expected(channel, count)
        )
    assert promoted is not victim
    for gateway in gateways:
        assert "channel's slot has a new master" in gateway.log()
    # The killed master's link ended; the promoted replica serves the channel now.
    nodes = redis_nodes(await stats(gateways[0]))
    assert nodes.get(promoted.address) is True
    assert victim.address not in nodes


async def test_a_slot_migrated_under_live_streams_loses_and_repeats_nothing(
    redis_cluster: LocalRedisCluster, cluster_gateway_factory: Callable[..., GatewayProcess]
) -> None:
    channels = [names[0] for names in redis_cluster.channels_on_each_master()[:2]]
    moving = channels[0]
    source = redis_cluster.master_of(moving)
    target = next(master for master in redis_cluster.masters() if master is not source)
    gateway = cluster_gateway_factory(env=GATEWAY_ENV)
    count = 120
    total = count * len(channels)
    async with contextlib.AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(sse_connect(gateway.base_url, names))
            for names in (channels, [moving], [moving])
        ]
        wanted = [total, count, count]
        collectors = [
            asyncio.create_task(stream.take(want, timeout=60))
            for stream, want in zip(streams, wanted, strict=True)
        ]
        async with publishing(redis_cluster.url, channels, count) as done:
            await until(lambda: done[moving] >= count // 3, 30, "a third published")
            await asyncio.to_thread(redis_cluster.migrate_slot, channel_slot(moving), target)
        results = [await collector for collector in collectors]

    assert redis_cluster.master_of(moving) is target
    for frames, names in zip(results, (channels, [moving], [moving]), strict=True):
        received = by_channel(frames, names)
        for channel in names:
            assert_exactly(received[channel], expected(channel, count))
        assert_cursors_never_move_backwards(frames)
    assert_exactly(history_messages(target, moving), expected(moving, count))
    # The channel's live flow now comes from the master that owns its slot.
    assert redis_nodes(await stats(gateway)).get(target.address) is True
    # The old master dropped the channel (sunsubscribe), or the link met MOVED.
    assert "channel's slot" in gateway.log()

    # A slot moved while the gateway followed no channel of it: its map is stale, so the
    # first SSUBSCRIBE goes to the old master, which answers MOVED; the link reads the map
    # again and the channel follows its slot.
    cold = next(
        names[0]
        for names in redis_cluster.channels_on_each_master(stem="cold")
        if redis_cluster.master_of(names[0]) is not target
    )
    await asyncio.to_thread(redis_cluster.migrate_slot, channel_slot(cold), target)
    async with (
        sse_connect(gateway.base_url, [cold], timeout=30) as stream,
        Publisher.from_url(redis_cluster.url, backoff=FAST_RETRIES) as publisher,
    ):
        await publish(publisher, cold, range(3))
        assert by_channel(await stream.take(3, timeout=20), [cold])[cold] == expected(cold, 3)
    assert "MovedError" in gateway.log()


async def test_a_shard_that_never_comes_back_leaves_its_streams_open_and_others_alone(
    redis_cluster: LocalRedisCluster, cluster_gateway_factory: Callable[..., GatewayProcess]
) -> None:
    lost, kept = (names[0] for names in redis_cluster.channels_on_each_master()[:2])
    master = redis_cluster.master_of(lost)
    (replica,) = redis_cluster.replicas_of(master)
    gateway = cluster_gateway_factory(env=GATEWAY_ENV)
    async with (
        sse_connect(gateway.base_url, [lost]) as on_lost,
        sse_connect(gateway.base_url, [kept]) as on_kept,
        Publisher.from_url(redis_cluster.url, backoff=FAST_RETRIES) as publisher,
    ):
        await publish(publisher, lost, range(2))
        await on_lost.take(2, timeout=10)
        replica.kill()  # no heir: the shard is gone for good
        master.kill()
        await until_not_ready(gateway)
        assert redis_nodes(await stats(gateway))[master.address] is False

        await publish(publisher, kept, range(5))
        assert by_channel(await on_kept.take(5, timeout=15), [kept])[kept] == expected(kept, 5)
        assert not on_lost.closed
        assert on_lost.frames.empty(), "events on a channel whose shard is gone"

        # It returns (with its AOF): the stream resumes exactly where it was.
        await asyncio.to_thread(master.start)
        await asyncio.to_thread(replica.start)
        await asyncio.to_thread(redis_cluster.wait_healthy)
        await publish(publisher, lost, range(2, 4))
        frames = await on_lost.take(2, timeout=20)
        assert by_channel(frames, [lost])[lost] == expected(lost, 2, start=2)
        await until_ready(gateway)


async def test_a_master_paused_with_its_connections_open_is_left_for_its_promoted_replica(
    redis_cluster: LocalRedisCluster, cluster_gateway_factory: Callable[..., GatewayProcess]
) -> None:
    """SIGSTOP: the master keeps its sockets (nothing says they are closed), its replica
    takes its slots over. The gateway notices the map moved (or the silence) and follows."""
    channel = redis_cluster.channels_on_each_master()[2][0]
    master = redis_cluster.master_of(channel)
    (replica,) = redis_cluster.replicas_of(master)
    gateway = cluster_gateway_factory(env=GATEWAY_ENV)
    async with sse_connect(gateway.base_url, [channel]) as stream:
        async with Publisher.from_url(redis_cluster.url, backoff=FAST_RETRIES) as publisher:
            await publish(publisher, channel, range(3))
        frames = await stream.take(3, timeout=10)
        master.pause()
        try:
            slot = channel_slot(channel)
            await asyncio.to_thread(
                wait_until,
                lambda: redis_cluster.master_for_slot(slot, seen_by=replica) is replica,
                30,
                "the replica promoted",
            )
            # Seeded with the new master only: the paused one would hold a publish up.
            async with Publisher.from_url(replica.url, backoff=FAST_RETRIES) as publisher:
                await publish(publisher, channel, range(3, 6))
            frames += await stream.take(3, timeout=30)
        finally:
            master.resume()
    assert by_channel(frames, [channel])[channel] == expected(channel, 6)
    assert_cursors_never_move_backwards(frames)


async def until_not_ready(gateway: GatewayProcess, timeout: float = 15) -> None:
    await _readiness(gateway, 503, timeout)


async def until_ready(gateway: GatewayProcess, timeout: float = 15) -> None:
    await _readiness(gateway, 200, timeout)


async def _readiness(gateway: GatewayProcess, status: int, timeout: float) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (await client.get(f"{gateway.base_url}/readyz")).status_code != status:
            assert loop.time() < deadline, f"/readyz never answered {status}"
            await asyncio.sleep(0.05)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    return lines[0]


def test_a_standalone_server_given_as_a_cluster_stops_the_gateway_in_one_line(
    redis_server: RedisServer,
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}"
    for env, says in (
        ({"REDIS_URL": f"{url},{url}"}, "lists 2 seed nodes, as for a Redis Cluster"),
        ({"REDIS_URL": url, "SSE_REDIS_MODE": "cluster"}, "is a standalone Redis"),
    ):
        result = run_cli("gateway", env=env)
        assert result.returncode == 2
        assert says in one_line(result.stderr)


async def test_a_group_checks_the_link_of_every_entry_of_a_batch(
    redis_url: str, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    """Notifications sent after WAIT can arrive out of order, several in one batch: the
    group must see that the third names an entry it has not been given yet."""
    gateway = gateway_factory()
    redis = Redis.from_url(redis_url)
    script = redis.register_script(script_source("publish"))

    async def append(number: int) -> bytes:
        """Append without notifying (as publish.lua does when WAIT follows); return the
        live message to send later."""
        data = json.dumps({"message": f"echo/{number}", "created_at": "2026-01-01T00:00:00"})
        args = publish_args(
            live_channel=KEYS.live_channel("echo"),
            event="echo",
            data=data.encode(),
            maxlen=1000,
            exact_trim=False,
            max_age_ms=0,
            token=f"t{number}",
            notify=NOTIFY_LATER,
        )
        entry_id, prev = decode_publish_reply(
            await script(keys=[KEYS.history_key("echo")], args=args)
        )
        return encode_live(entry_id, prev, b"echo", data.encode())

    try:
        async with sse_connect(gateway.base_url, ["echo"]) as stream:
            await redis.publish(KEYS.live_channel("echo"), await append(0))
            await stream.take(1, timeout=10)
            await until_grouped(gateway)
            notes = [await append(number) for number in (1, 2, 3, 4)]
            # One round trip, so that they reach the gateway in one read, one batch.
            pipe = redis.pipeline(transaction=False)
            for note in (notes[0], notes[1], notes[3], notes[2]):
                pipe.publish(KEYS.live_channel("echo"), note)
            await pipe.execute()
            frames = await stream.take(4, timeout=10)
    finally:
        await redis.aclose()
    assert by_channel(frames, ["echo"])["echo"] == expected("echo", 4, start=1)
    assert_cursors_never_move_backwards(frames)


async def until_grouped(gateway: GatewayProcess) -> None:
    async def grouped() -> int:
        data = await stats(gateway)
        return int(data["hub"]["grouped"])  # type: ignore[index]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await grouped() < 1:
        assert loop.time() < deadline, "the stream never joined a group"
        await asyncio.sleep(0.02)
