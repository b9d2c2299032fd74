"""Logs: one line per thing that matters, as text or as one JSON object per line.

``SSE_LOG_FORMAT=json`` makes every line of a gateway's and a producer's output a
JSON object (uvicorn's lines and the access log included); a stream's opening and
end, a resume's gap, a drain and each Redis outage are one line each.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from typing import Any

import httpx
from redis.asyncio import Redis

from producers.publisher import Publisher, Retention
from tests.support.assertions import publish_numbered
from tests.support.metrics import wait_for_metrics
from tests.support.processes import GatewayProcess, ProducerProcess, run_cli
from tests.support.sse import sse_connect
from tests.test_slow_consumers import open_stalled, publish_padded

GatewayFactory = Callable[..., GatewayProcess]
JSON_LOGS = {"SSE_LOG_FORMAT": "json"}


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line parsed as a JSON object with the fields every line carries."""
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert isinstance(line, dict), line
        assert {"event", "level", "logger", "timestamp", "pid"} <= line.keys(), line
    return lines


def named(lines: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["event"] == event]


async def test_a_gateways_json_log_is_one_object_per_line(
    redis_url: str, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(workers=2, env=JSON_LOGS, args=["--access-log"])
    async with Publisher.from_url(redis_url, retention=Retention(maxlen=3, exact_trim=True)) as p:
        ids = await publish_numbered(p, "echo", range(8))
    async with sse_connect(
        gateway.base_url,
        ["echo"],
        last_event_id=f"echo={ids[0]}",
    ) as stream:
        await stream.take(4, timeout=10)  # the gap notice and the 3 retained events
    async with httpx.AsyncClient(timeout=10) as client:
        secret = "eyJhbGciOiJIUzI1NiJ9.secret.part"
        assert (await client.get(f"{gateway.base_url}/sse?token={secret}")).status_code == 400
    await wait_for_metrics(gateway, lambda m: m.value("sse_gateway_streams_open") == 0)
    gateway.signal(signal.SIGTERM)
    assert await asyncio.to_thread(gateway.wait, 20) == 0
    log = gateway.log()
    lines = json_lines(log)

    (opened,) = named(lines, "stream opened")
    assert (opened["channels"], opened["start"], opened["level"]) == ("echo", "cursor", "info")
    assert opened["open_ms"] > 0
    (closed,) = named(lines, "stream closed")
    assert (closed["reason"], closed["level"], closed["client"]) == (
        "disconnect",
        "info",
        opened["client"],
    )
    assert closed["duration_s"] >= 0
    (gap,) = named(lines, "history gap")
    assert (gap["channel"], gap["reason"], gap["requested"]) == ("echo", "trimmed", ids[0])
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    streams = [line for line in access if line["path"].startswith("/sse?channel=echo")]
    assert [(line["method"], line["status"]) for line in streams] == [("GET", 200)]
    assert secret not in log
    refused = [line for line in access if line["path"].startswith("/sse?token=")]
    assert [(line["path"], line["status"]) for line in refused] == [("/sse?token=***", 400)]
    assert len(named(lines, "draining")) == 2  # one per worker
    assert {line["pid"] for line in named(lines, "Application startup complete.")} == {
        line["pid"] for line in named(lines, "draining")
    }


async def test_a_redis_outage_is_one_line_lost_and_one_line_back(
    redis_url: str, redis_client: Redis, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(env=JSON_LOGS)
    async with sse_connect(gateway.base_url, ["echo"]) as stream:
        assert await redis_client.client_kill_filter(_type="pubsub") == 1
        async with Publisher.from_url(redis_url) as publisher:
            # The stream resyncs from history: this event arrives whether it was published
            # before or after the connection came back.
            await publish_numbered(publisher, "echo", [1])
        await stream.take(1, timeout=15)
    exposition = await wait_for_metrics(
        gateway, lambda m: m.value("sse_gateway_redis_reconnects_total") == 1
    )
    assert exposition.value("sse_gateway_redis_connected") == 1
    lines = json_lines(gateway.log())
    (lost,) = named(lines, "redis pub/sub connection lost")
    (back,) = named(lines, "redis pub/sub reconnected")
    assert lost["level"] == "warning"
    assert lost["node"] == back["node"] == redis_url.split("//")[1].split("/")[0]
    assert (back["level"], back["channels"]) == ("info", 1)


def test_producers_log_a_summary_instead_of_a_line_per_event(
    redis_url: str, producer_factory: Callable[..., ProducerProcess]
) -> None:
    producer = producer_factory(
        "echo", interval=0.01, count=60, env={**JSON_LOGS, "PYTHONUNBUFFERED": "1"}
    )
    assert producer.wait(timeout=30) == 0
    lines = json_lines(producer.log())
    assert not named(lines, "published"), "no line per event at INFO"
    (stopped,) = named(lines, "producer stopped")
    assert (stopped["total"], stopped["channel"]) == (60, "echo")
    assert named(lines, "producer started")


def test_producers_log_each_event_at_debug(redis_url: str) -> None:
    result = run_cli(
        "producers",
        "echo",
        "--count",
        "5",
        "--interval",
        "0",
        "--log-level",
        "debug",
        "--log-every",
        "0.000001",
        env={"REDIS_URL": redis_url, **JSON_LOGS},
    )
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stderr)
    published = named(lines, "published")
    assert [line["level"] for line in published] == ["debug"] * 5
    summaries = named(lines, "published events")
    assert sum(line["events"] for line in summaries) == 5
    assert summaries[-1]["total"] == 5


def test_a_bad_log_format_is_one_line(redis_url: str) -> None:
    for module in ("gateway", "producers"):
        args = ["echo"] if module == "producers" else []
        result = run_cli(module, *args, env={"REDIS_URL": redis_url, "SSE_LOG_FORMAT": "xml"})
        assert result.returncode == 2
        (line,) = result.stderr.strip().splitlines()
        assert "SSE_LOG_FORMAT" in line, line


async def test_a_stream_left_after_the_grace_period_is_one_warning_line(
    redis_url: str, gateway_factory: GatewayFactory
) -> None:
    # A client that stopped reading cannot take its shutdown hint: its stream is ended when
    # the grace period is over, as one line, and the process still exits 0.
    gateway = gateway_factory(
        env={
            **JSON_LOGS,
            "SSE_SHUTDOWN_GRACE_PERIOD": "1",
            "SSE_SEND_TIMEOUT": "600",
            "SSE_CLIENT_BUFFER_BYTES": str(64 * 2**20),
        }
    )
    sock, _ = await open_stalled(gateway)
    try:
        async with Publisher.from_url(redis_url) as publisher:
            await publish_padded(publisher, range(150))  # ~5 MB: the socket is full
        gateway.signal(signal.SIGTERM)
        assert await asyncio.to_thread(gateway.wait, 20) == 0
    finally:
        sock.close()
    lines = json_lines(gateway.log())
    (closed,) = named(lines, "stream closed")
    assert (closed["reason"], closed["level"]) == ("shutdown_forced", "warning")
    (ending,) = named(lines, "ending streams still open after the grace period")
    assert ending["streams"] == 1
    assert not [line for line in lines if line["level"] == "error"], lines
