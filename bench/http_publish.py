"""``python -m bench.http_publish``: publishes/s over HTTP (``POST /channels/{c}/events``).

Starts a redis-server and a gateway with ``SSE_HTTP_PUBLISH=true`` (pinned as the main
bench pins them: the gateway on core 0, Redis and the load on core 1) and one SSE
stream on every channel, then measures, one scenario after the other:

- ``http``: worker processes post ``Echo`` events (~100 bytes, as the main bench) over
  keep-alive HTTP/1.1 connections, several requests in flight each. The client is a few
  lines of asyncio, so the load generator costs little beside the gateway;
- ``http + Idempotency-Key``: the same with a fresh key per event. A keyed publish looks
  back over ``SSE_PUBLISH_IDEMPOTENCY_SECONDS`` of its channel for the key: its cost
  grows with the entries in that window (at most the channel's retained history);
- ``Publisher``: the same events through ``producers.Publisher`` straight to Redis, for
  what HTTP adds.

Reported per scenario: publishes/s, p50/p99 latency, the gateway's and Redis's CPU per
publish. The streams must receive every event that was acknowledged, once, or the run
fails. Every process shares this machine's cores: compare scenarios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.procs import CLIENT_CORE, PYTHON, ROOT, pinned
from bench.systems import Server, started
from contract.events import Echo, EchoPayload
from producers.publisher import Publisher

T = TypeVar("T")
MESSAGE = "x" * 60
BODY = json.dumps({"event": "echo", "data": {"message": MESSAGE}}, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Figures:
    name: str
    published: int
    seconds: float
    p50_ms: float
    p99_ms: float
    gateway_cpu_us: float
    redis_cpu_us: float
    errors: int

    @property
    def per_second(self) -> float:
        return self.published / self.seconds


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


# -- a worker process: post for a while, print what happened as JSON ----------------------


async def post_for(
    port: int, channels: Sequence[str], concurrency: int, seconds: float, keyed: bool
) -> dict[str, Any]:
    """``concurrency`` keep-alive connections, each posting one event after the other."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    run = uuid.uuid4().hex[:12]

    async def connection(number: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = number
        try:
            while (started_at := time.perf_counter()) < deadline:
                channel = channels[sent % len(channels)]
                key = f"Idempotency-Key: {run}-{sent}\r\n" if keyed else ""
                writer.write(
                    f"POST /channels/{channel}/events HTTP/1.1\r\nHost: bench\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
                    f"{key}\r\n".encode()
                    + BODY
                )
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started_at)
                statuses[status] = statuses.get(status, 0) + 1
                sent += concurrency
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(connection(number) for number in range(concurrency)))
    return {"statuses": statuses, "latencies": latencies}


# -- the run ----------------------------------------------------------------------------


class Deliveries:
    """One SSE stream per channel, counting the ids it receives (a task each, owned here)."""

    def __init__(self, port: int, channels: Sequence[str]) -> None:
        self.ids: set[str] = set()
        self.duplicates = 0
        self._opened = 0
        self._tasks = [asyncio.create_task(self._read(port, channel)) for channel in channels]
        self._channels = channels

    async def _read(self, port: int, channel: str) -> None:
        url = f"http://127.0.0.1:{port}/sse?channel={channel}"
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
            client.stream("GET", url) as response,
        ):
            self._opened += 1
            cursor = ""
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    cursor = line[4:]
                elif line == "event: echo":  # an event's frame (the opening one has no event)
                    if cursor in self.ids:
                        self.duplicates += 1
                    self.ids.add(cursor)

    async def wait_open(self) -> None:
        await until(lambda: self._opened == len(self._channels), 10, "the streams to open")

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def measured(
    name: str,
    server: Server,
    redis_cpu: Callable[[], Awaitable[float]],
    load: Awaitable[dict[str, Any]],
    seconds: float,
) -> Figures:
    gateway_before, redis_before = server.usage().cpu_seconds, await redis_cpu()
    result = await load
    gateway_spent = server.usage().cpu_seconds - gateway_before
    redis_spent = await redis_cpu() - redis_before
    published = result["statuses"].get(201, 0)
    latencies = result["latencies"]
    return Figures(
        name=name,
        published=published,
        seconds=seconds,
        p50_ms=statistics.median(latencies) * 1000 if latencies else 0.0,
        p99_ms=percentile(latencies, 0.99) * 1000,
        gateway_cpu_us=gateway_spent * 1e6 / max(published, 1),
        redis_cpu_us=redis_spent * 1e6 / max(published, 1),
        errors=sum(count for status, count in result["statuses"].items() if status != 201),
    )


async def http_workers(
    port: int, channels: Sequence[str], args: argparse.Namespace, keyed: bool
) -> dict[str, Any]:
    command = [
        PYTHON, "-m", "bench.http_publish", "--worker", "--port", str(port),
        "--channels", str(len(channels)), "--concurrency", str(args.concurrency),
        "--duration", str(args.duration),
    ] + (["--keyed"] if keyed else [])  # fmt: skip
    processes = [
        await asyncio.create_subprocess_exec(
            *pinned(CLIENT_CORE, command),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(args.workers)
    ]
    outputs = [await process.communicate() for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"a load process failed:\n{stderr.decode()[-2000:]}")
    merged: dict[str, Any] = {"statuses": {}, "latencies": []}
    for stdout, _ in outputs:
        result = json.loads(stdout)
        for status, count in result["statuses"].items():
            merged["statuses"][int(status)] = merged["statuses"].get(int(status), 0) + count
        merged["latencies"] += result["latencies"]
    return merged


async def warm(port: int, channels: Sequence[str]) -> int:
    """One publish per channel before measuring: the gateway's Redis client connects, finds
    the server's mode and loads the script. Returns how many were published."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for channel in channels:
            response = await client.post(
                f"/channels/{channel}/events",
                content=BODY,
                headers={"Content-Type": "application/json"},
            )
            response.raise_for_status()
    return len(channels)


async def library(
    redis_url: str, channels: Sequence[str], args: argparse.Namespace
) -> dict[str, Any]:
    """The same events through Publisher, ``workers * concurrency`` publishes in flight."""
    latencies: list[float] = []
    deadline = time.perf_counter() + args.duration
    event = Echo(data=EchoPayload(message=MESSAGE))
    async with Publisher.from_url(redis_url, max_attempts=3) as publisher:

        async def loop(number: int) -> None:
            while (started_at := time.perf_counter()) < deadline:
                await publisher.publish(channels[number % len(channels)], event)
                latencies.append(time.perf_counter() - started_at)
                number += 1

        await asyncio.gather(*(loop(n) for n in range(args.workers * args.concurrency)))
    return {"statuses": {201: len(latencies)}, "latencies": latencies}


async def bench(args: argparse.Namespace) -> tuple[list[Figures], dict[str, Any]]:
    channels = channel_names(args.channels)
    env = {
        "SSE_HTTP_PUBLISH": "true",
        "SSE_PUBLISH_IDEMPOTENCY_SECONDS": str(args.idempotency_seconds),
        "SSE_HISTORY_MAXLEN": str(args.maxlen),
    }
    with tempfile.TemporaryDirectory(prefix="bench-http-publish-") as run_dir:
        async with started("ours", Path(run_dir), env=env) as server:
            redis_url = server.redis_url
            assert redis_url is not None

            async def redis_cpu() -> float:
                usage = server.redis_usage()
                return usage.cpu_seconds if usage is not None else 0.0

            deliveries = Deliveries(server.port, channels)
            try:
                await deliveries.wait_open()
                warm_up = await warm(server.port, channels)
                scenarios: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
                    ("http", lambda: http_workers(server.port, channels, args, keyed=False)),
                    (
                        "http + Idempotency-Key",
                        lambda: http_workers(server.port, channels, args, keyed=True),
                    ),
                    ("Publisher (no HTTP)", lambda: library(redis_url, channels, args)),
                ]
                rows = [
                    await measured(name, server, redis_cpu, load(), args.duration)
                    for name, load in scenarios
                ]
                published = warm_up + sum(row.published for row in rows)
                with contextlib.suppress(RuntimeError):
                    await until(lambda: len(deliveries.ids) >= published, 20, "deliveries")
                check = {
                    "acknowledged": published,
                    "delivered": len(deliveries.ids),
                    "duplicates": deliveries.duplicates,
                }
            finally:
                await deliveries.aclose()
    return rows, check


def channel_names(count: int) -> list[str]:
    return [f"bench-{number}" for number in range(count)]


def table(rows: Sequence[Figures], check: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"{args.workers} load processes x {args.concurrency} requests in flight, {args.channels}"
        f" channels, {args.duration:g} s per scenario; SSE_HISTORY_MAXLEN={args.maxlen},"
        f" SSE_PUBLISH_IDEMPOTENCY_SECONDS={args.idempotency_seconds:g}",
        "",
        "| scenario | publishes/s | p50 / p99 ms | gateway CPU per publish | Redis CPU per publish"
        " | refused |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.per_second:,.0f} | {row.p50_ms:.2f} / {row.p99_ms:.2f}"
            f" | {row.gateway_cpu_us:.0f} µs | {row.redis_cpu_us:.0f} µs | {row.errors} |"
        )
    lines += [
        "",
        f"Streams: {check['delivered']:,} of {check['acknowledged']:,} acknowledged events"
        f" delivered, {check['duplicates']} twice.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_publish",
        description="Publishes/s over HTTP (POST /channels/{channel}/events), with and"
        " without an Idempotency-Key, beside the Python Publisher.",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--workers", type=int, default=2, help="load processes")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight each")
    parser.add_argument("--channels", type=int, default=4, help="channels published to")
    parser.add_argument("--maxlen", type=int, default=10_000, help="SSE_HISTORY_MAXLEN")
    parser.add_argument(
        "--idempotency-seconds", type=float, default=60, help="SSE_PUBLISH_IDEMPOTENCY_SECONDS"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1 s per scenario, 1 load process"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    # A load process (started by the run itself): post, print JSON, exit.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keyed", action="store_true", help=argparse.SUPPRESS)
    return parser


def _run(work: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    return uvloop.run(work)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        work = post_for(
            args.port, channel_names(args.channels), args.concurrency, args.duration, args.keyed
        )
        print(json.dumps(_run(work)))
        return 0
    if args.quick:
        args.duration, args.workers = 1.0, 1
    rows, check = _run(bench(args))
    print(table(rows, check, args))
    if args.json is not None:
        figures = [{**row.__dict__, "per_second": row.per_second} for row in rows]
        args.json.write_text(json.dumps({"scenarios": figures, "check": check}, indent=2))
    lost = check["delivered"] < check["acknowledged"] or check["duplicates"]
    if lost:
        print(
            "FAILED: the streams did not get every acknowledged event exactly once", file=sys.stderr
        )
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
