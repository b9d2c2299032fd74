"""``GET /metrics``: the numbers move as they should, across workers, in Prometheus's format.

Every scrape is parsed with prometheus-client's own parser. Under ``--workers 2``
any worker may answer a scrape, and every answer covers both (counters add up,
gauges carry one series per worker).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from producers.publisher import Publisher, Retention
from tests.support.assertions import messages, numbered, publish_numbered
from tests.support.metrics import Exposition, scrape, wait_for_metrics
from tests.support.processes import GatewayProcess, run_cli
from tests.support.raw_sse import RawStream, recv_events
from tests.test_slow_consumers import (
    BUFFER_ENV,
    assert_cut_with_a_retry_hint,
    open_stalled,
    publish_padded,
)
from tests.test_workers import owners, worker_pids

GatewayFactory = Callable[..., GatewayProcess]

STREAMS = 4
EVENTS = 10


async def open_on_both_workers(
    gateway: GatewayProcess, workers: list[int], count: int
) -> list[RawStream]:
    """``count`` open streams on ``echo``, at least one held by each worker.

    The kernel hands each connection to whichever worker accepts first; streams are
    opened until both hold one, and the surplus on the busier worker is closed."""
    streams: list[tuple[RawStream, int]] = []
    for _ in range(60):
        stream = await RawStream.open(gateway.port, ["echo"])
        while stream.last_id is None:
            assert await stream.read() is not None, "stream closed before it opened"
        streams.append((stream, owners(workers, gateway.port)[stream.local_port]))
        holders = {pid for _, pid in streams}
        if len(streams) >= count and holders == set(workers):
            break
    assert {pid for _, pid in streams} == set(workers), "both workers hold a stream"
    while len(streams) > count:
        busiest = max(workers, key=lambda pid: sum(owner == pid for _, owner in streams))
        index = next(i for i, (_, owner) in enumerate(streams) if owner == busiest)
        await streams.pop(index)[0].aclose()
    return [stream for stream, _ in streams]


async def read_events(stream: RawStream, count: int) -> list[str]:
    events: list[str] = []
    while len(events) < count:
        batch = await asyncio.wait_for(stream.read(), 10)
        assert batch is not None, "stream ended"
        events += [json.loads(e.data)["message"] for e in batch if e.event == "echo"]
    return events


async def streams_on_two_workers(
    gateway_factory: GatewayFactory,
) -> tuple[GatewayProcess, list[int], list[RawStream], Exposition]:
    """A gateway with two workers, ``STREAMS`` streams over both, and the scrape that saw
    them all open (another worker's figures arrive within a second)."""
    gateway = gateway_factory(workers=2)
    workers = worker_pids(gateway)
    streams = await open_on_both_workers(gateway, workers, STREAMS)
    try:
        opened = await wait_for_metrics(
            gateway, lambda m: m.value("sse_gateway_streams_open") == STREAMS
        )
    except BaseException:
        for stream in streams:
            await stream.aclose()
        raise
    return gateway, workers, streams, opened


async def test_two_workers_report_the_same_numbers_whichever_answers(
    gateway_factory: GatewayFactory, redis_url: str
) -> None:
    gateway, workers, streams, opened = await streams_on_two_workers(gateway_factory)
    try:
        # Every scrape, on a new connection each (either worker may answer), reads 4: both
        # workers' series are there, one per worker.
        for _ in range(6):
            exposition = await asyncio.to_thread(scrape, gateway)
            assert exposition.value("sse_gateway_streams_open") == STREAMS
            assert exposition.label_values("sse_gateway_streams_open", "pid") == {
                str(pid) for pid in workers
            }
            assert exposition.value("sse_gateway_redis_connected") == 2  # one per worker
        surplus_closed = opened.value("sse_gateway_streams_closed_total", reason="disconnect")
        opened_before = opened.value("sse_gateway_streams_opened_total")
        assert opened_before == STREAMS + surplus_closed

        async with Publisher.from_url(redis_url) as publisher:
            await publish_numbered(publisher, "echo", range(EVENTS))
        for stream in streams:
            assert await read_events(stream, EVENTS) == numbered(EVENTS)
        delivered = await wait_for_metrics(
            gateway, lambda m: m.value("sse_gateway_deliveries_total") == STREAMS * EVENTS
        )
        # Each worker received each event once and flushed it once.
        assert delivered.value("sse_gateway_redis_messages_total") == 2 * EVENTS
        assert delivered.value("sse_gateway_publish_latency_seconds_count") == 2 * EVENTS
        assert delivered.value("sse_gateway_stream_open_seconds_count") == opened_before
        assert delivered.value("sse_gateway_sent_bytes_total") > 0
    finally:
        for stream in streams:
            await stream.aclose()
    closed = await wait_for_metrics(gateway, lambda m: m.value("sse_gateway_streams_open") == 0)
    assert closed.value("sse_gateway_streams_closed_total", reason="disconnect") == opened_before
    assert closed.value("sse_gateway_streams_closed_total") == opened_before


async def test_a_killed_worker_leaves_the_gauges_and_its_counts_stay(
    gateway_factory: GatewayFactory,
) -> None:
    gateway, workers, streams, before = await streams_on_two_workers(gateway_factory)
    try:
        victim = workers[0]
        on_victim = sum(1 for port, pid in owners(workers, gateway.port).items() if pid == victim)
        os.kill(victim, signal.SIGKILL)
        after = await wait_for_metrics(
            gateway,
            lambda m: str(victim) not in m.label_values("sse_gateway_streams_open", "pid"),
        )
        assert after.value("sse_gateway_streams_open") == STREAMS - on_victim
        # Counters keep what the dead worker counted.
        assert after.value("sse_gateway_streams_opened_total") >= before.value(
            "sse_gateway_streams_opened_total"
        )
    finally:
        for stream in streams:
            stream.abort()


async def test_a_slow_consumer_cut_counts_its_reason_and_is_one_warning_line(
    redis_url: str, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(env={**BUFFER_ENV, "SSE_LOG_FORMAT": "json"})
    sock, parser = await open_stalled(gateway)
    total = 400
    try:
        async with Publisher.from_url(redis_url) as publisher:
            await publish_padded(publisher, range(total))
        events = await recv_events(sock, parser, until=lambda: False, timeout=30)
        assert_cut_with_a_retry_hint(events, parser, total)
    finally:
        sock.close()
    exposition = await wait_for_metrics(
        gateway, lambda m: m.value("sse_gateway_streams_closed_total", reason="slow_consumer") == 1
    )
    assert exposition.value("sse_gateway_streams_closed_total") == 1
    cuts = [
        line
        for line in map(json.loads, gateway.log().splitlines())
        if line["event"] == "stream closed"
    ]
    assert len(cuts) == 1, cuts
    assert (cuts[0]["level"], cuts[0]["reason"], cuts[0]["channels"]) == (
        "warning",
        "slow_consumer",
        "bulk",
    )


async def test_a_client_cut_by_the_send_timeout_is_one_warning_line_not_a_traceback(
    redis_url: str, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(env={**BUFFER_ENV, "SSE_SEND_TIMEOUT": "1"})
    sock, _ = await open_stalled(gateway)
    try:
        async with Publisher.from_url(redis_url) as publisher:
            await publish_padded(publisher, range(300))  # more than the socket buffers hold
        await wait_for_metrics(
            gateway,
            lambda m: m.value("sse_gateway_streams_closed_total", reason="send_timeout") == 1,
            timeout=30,
        )
    finally:
        sock.close()
    log = gateway.log()
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log
    cut = [line for line in log.splitlines() if "stream closed" in line]
    assert len(cut) == 1, cut
    assert "[warning" in cut[0], cut[0]
    assert "reason=send_timeout" in cut[0], cut[0]


async def test_a_history_gap_and_a_resume_are_counted(
    redis_url: str, gateway: GatewayProcess
) -> None:
    retention = Retention(maxlen=5, exact_trim=True)
    async with Publisher.from_url(redis_url, retention=retention) as publisher:
        ids = await publish_numbered(publisher, "echo", range(12))  # msg-0..6 trimmed
    stream = await RawStream.open(gateway.port, ["echo"], last_event_id=f"echo={ids[1]}")
    try:
        events = []
        while len(events) < 6:
            batch = await asyncio.wait_for(stream.read(), 10)
            assert batch is not None
            events += batch
    finally:
        await stream.aclose()
    assert events[0].event == "history_gap"
    assert messages(events[1:], "echo") == numbered(5, start=7)
    exposition = await wait_for_metrics(
        gateway, lambda m: m.value("sse_gateway_history_gaps_total", reason="trimmed") == 1
    )
    assert exposition.value("sse_gateway_history_gaps_total", reason="lost") == 0
    assert exposition.value("sse_gateway_resumes_total", start="cursor") == 1
    assert exposition.value("sse_gateway_history_pages_total", source="redis") >= 1
    assert exposition.value("sse_gateway_deliveries_total") == 6  # the gap notice and 5 events


async def test_refused_streams_are_counted_by_error_code(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(env={"SSE_MAX_STREAMS": "1"})
    base = gateway.base_url
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"{base}/sse?channel=bad%20name")).status_code == 400
        assert (await client.get(f"{base}/sse")).status_code == 400
        async with client.stream("GET", f"{base}/sse?channel=echo") as held:
            assert held.status_code == 200
            refused = await client.get(f"{base}/sse?channel=echo")
            assert refused.status_code == 503
    exposition = await asyncio.to_thread(scrape, gateway)
    refusals = {
        sample.labels["code"]: sample.value
        for sample in exposition.samples
        if sample.name == "sse_gateway_streams_refused_total"
    }
    assert {code: count for code, count in refusals.items() if count} == {
        "invalid_channel": 1,
        "no_channels": 1,
        "too_many_streams": 1,
    }
    assert {"token_invalid", "token_expired", "channel_forbidden"} <= refusals.keys()
    assert exposition.value("sse_gateway_streams_opened_total") == 1


async def test_channel_labels_are_capped(redis_url: str, gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(env={"SSE_METRICS_CHANNEL_LABELS": "2"})
    channels = ["alpha", "beta", "gamma"]
    streams = [await RawStream.open(gateway.port, [channel]) for channel in channels]
    try:
        for stream in streams:
            while stream.last_id is None:
                assert await stream.read() is not None
        async with Publisher.from_url(redis_url) as publisher:
            for channel in channels:
                await publish_numbered(publisher, channel, range(3))
        for stream in streams:
            assert await read_events(stream, 3) == numbered(3)
        exposition = await wait_for_metrics(
            gateway, lambda m: m.value("sse_gateway_deliveries_total") == 9
        )
    finally:
        for stream in streams:
            await stream.aclose()
    labels = exposition.label_values("sse_gateway_channel_deliveries_total", "channel")
    assert labels == {"alpha", "beta", "_other"}
    assert exposition.value("sse_gateway_channel_deliveries_total") == 9
    assert exposition.value("sse_gateway_channel_events_total") == 9


def test_metrics_can_be_turned_off(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(env={"SSE_METRICS": "false"})
    response = httpx.get(f"{gateway.base_url}/metrics", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "metrics_off"
    assert "SSE_METRICS=true" in response.json()["error"]["hint"]
    assert httpx.get(f"{gateway.base_url}/stats", timeout=10).json()["streams"]["open"] == 0


def test_a_given_metrics_directory_is_emptied_at_start(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    stale = tmp_path / "counter_999999.db"
    stale.write_bytes(b"\0" * 16)  # an earlier run's counters must not add to this one's
    gateway = gateway_factory(workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    worker_pids(gateway)
    assert not stale.exists()
    deadline = time.monotonic() + 10
    while not list(tmp_path.glob("gauge_liveall_*.db")):
        assert time.monotonic() < deadline, "the workers keep their gauges in the given directory"
        time.sleep(0.05)
    assert scrape(gateway).value("sse_gateway_streams_open") == 0


def test_an_unusable_metrics_directory_is_one_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = run_cli("gateway", "--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(not_a_dir)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PROMETHEUS_MULTIPROC_DIR" in lines[0]
