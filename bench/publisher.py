"""Events at a fixed rate, each with a sequence number and its creation time.

Every event is ``Echo(data=EchoPayload(message="<tag>-<seq>-xxx...", created_at=now))``,
padded so that its JSON is about ``EVENT_BYTES`` long. The load generator reads
the tag and sequence back for its loss and duplicate checks, and ``created_at``
for publish-to-delivery latency. Three ways to publish it:

- ``GatewaySink``: our ``producers.publisher.Publisher`` (the Lua script).
- ``RedisPublishSink``: plain ``PUBLISH`` of the JSON, for the seed baseline.
- ``NchanSink``: ``POST`` to nchan's publisher location over keep-alive connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis

from contract.events import Echo, EchoPayload
from producers.publisher import Publisher

EVENT_BYTES = 100
_EMPTY_JSON = len(Echo(data=EchoPayload(message="")).encode_data())


def message_for(tag: str, seq: int, size: int = EVENT_BYTES) -> str:
    """``echo-00000042-xxxx``: padded so the event's JSON is about ``size`` bytes."""
    head = f"{tag}-{seq:08d}-"
    return head + "x" * max(0, size - _EMPTY_JSON - len(head))


def make_event(tag: str, seq: int) -> Echo:
    return Echo(data=EchoPayload(message=message_for(tag, seq)))


class Sink(Protocol):
    async def publish(self, channel: str, event: Echo) -> str:
        """Publish one event; returns its id where the system assigns one."""
        ...

    async def aclose(self) -> None: ...


class GatewaySink:
    """Our publisher: history append and live publish in one Lua script."""

    def __init__(self, redis_url: str) -> None:
        self._publisher = Publisher.from_url(redis_url, max_attempts=3)

    async def publish(self, channel: str, event: Echo) -> str:
        return await self._publisher.publish(channel, event)

    async def aclose(self) -> None:
        await self._publisher.aclose()


class RedisPublishSink:
    """Plain ``PUBLISH channel <json>``: what a seed-style app listens to."""

    def __init__(self, redis_url: str) -> None:
        self._redis = Redis.from_url(redis_url)

    async def publish(self, channel: str, event: Echo) -> str:
        await self._redis.publish(channel, event.encode_data())
        return ""

    async def aclose(self) -> None:
        await self._redis.aclose()


class NchanError(RuntimeError):
    """nchan refused a publish."""


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class NchanSink:
    """HTTP ``POST /pub?channel=...`` over a small pool of keep-alive connections.

    nginx closes a keep-alive connection after ``keepalive_requests`` or when idle; a
    connection it closed (``Connection: close``, EOF, reset) is dropped and replaced on
    next use, so the pool never runs dry. A publish that fails is an error, not retried:
    nchan may have taken it, and a retry would duplicate the event."""

    def __init__(
        self, port: int, *, path: str = "/pub", connections: int = 8, timeout: float = 30.0
    ) -> None:
        self._port = port
        self._path = path
        self._timeout = timeout
        # None: a slot whose connection is opened on first use.
        self._idle: asyncio.Queue[Connection | None] = asyncio.Queue()
        for _ in range(connections):
            self._idle.put_nowait(None)
        self._open: set[asyncio.StreamWriter] = set()

    async def publish(self, channel: str, event: Echo) -> str:
        body = event.encode_data()
        conn = await self._idle.get()
        try:
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", self._port)
                self._open.add(conn[1])
            status, reply, keep = await asyncio.wait_for(
                self._exchange(conn, channel, body), self._timeout
            )
        except BaseException:
            self._drop(conn)
            raise
        if keep:
            self._idle.put_nowait(conn)
        else:
            self._drop(conn)
        if status not in (200, 201, 202):
            raise NchanError(f"nchan answered {status}: {reply[:200]!r}")
        with contextlib.suppress(ValueError, KeyError):
            return str(json.loads(reply)["last_message_id"])
        return ""

    async def _exchange(
        self, conn: Connection, channel: str, body: bytes
    ) -> tuple[int, bytes, bool]:
        """One request and its response: (status, body, whether the connection stays open)."""
        reader, writer = conn
        writer.write(
            f"POST {self._path}?channel={channel} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nAccept: text/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length, keep = 0, True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and b"close" in value.lower():
                keep = False
        return status, await reader.readexactly(length), keep

    def _drop(self, conn: Connection | None) -> None:
        """Close a connection and give its slot back, to be reopened on next use."""
        if conn is not None:
            conn[1].close()
            self._open.discard(conn[1])
        self._idle.put_nowait(None)

    async def aclose(self) -> None:
        for writer in list(self._open):
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._open.clear()


@dataclass
class Published:
    """What one ``publish_at_rate`` call sent."""

    count: int
    seconds: float
    seqs: dict[str, tuple[int, int]]
    """Per tag (channel), the half-open range of sequence numbers sent."""
    ids: list[str] = field(default_factory=list)
    max_lag_ms: float = 0.0
    """How far the publisher fell behind its schedule at worst."""

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


async def publish_at_rate(
    sink: Sink,
    channels: Sequence[str],
    *,
    rate: float,
    count: int,
    start_seq: int = 0,
    in_flight: int = 64,
    keep_ids: bool = False,
) -> Published:
    """Publish ``count`` events at ``rate`` per second, round-robin over ``channels``.

    Sequence numbers run per channel from ``start_seq``. Publishes overlap (up to
    ``in_flight``) so a slow acknowledgement does not slow the schedule.
    """
    limit = asyncio.Semaphore(in_flight)
    ids: list[str] = [""] * count if keep_ids else []
    next_seq = dict.fromkeys(channels, start_seq)
    lag = 0.0
    failures: list[BaseException] = []

    async def one(index: int, channel: str, event: Echo) -> None:
        try:
            entry_id = await sink.publish(channel, event)
            if keep_ids:
                ids[index] = entry_id
        except Exception as exc:  # reported after the run; the loss check will show it too
            failures.append(exc)
        finally:
            limit.release()

    tasks = []
    started = time.monotonic()
    for i in range(count):
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await limit.acquire()
        lag = max(lag, time.monotonic() - due)
        channel = channels[i % len(channels)]
        event = make_event(channel, next_seq[channel])
        next_seq[channel] += 1
        tasks.append(asyncio.create_task(one(i, channel, event)))
    await asyncio.gather(*tasks)
    seconds = time.monotonic() - started
    if failures:
        raise RuntimeError(f"{len(failures)} of {count} publishes failed: {failures[0]!r}")
    return Published(
        count=count,
        seconds=seconds,
        seqs={ch: (start_seq, next_seq[ch]) for ch in channels},
        ids=ids,
        max_lag_ms=lag * 1000,
    )


async def _main(args: argparse.Namespace) -> None:
    sink: Sink
    if args.target == "ours":
        sink = GatewaySink(args.redis_url)
    elif args.target == "seed":
        sink = RedisPublishSink(args.redis_url)
    else:
        sink = NchanSink(args.nchan_port)
    try:
        result = await publish_at_rate(sink, args.channel, rate=args.rate, count=args.count)
    finally:
        await sink.aclose()
    print(
        json.dumps(
            {"count": result.count, "seconds": result.seconds, "max_lag_ms": result.max_lag_ms}
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.publisher", description=__doc__.split("\n")[0]
    )
    parser.add_argument("target", choices=["ours", "seed", "nchan"])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--nchan-port", type=int, default=8080)
    parser.add_argument("--channel", action="append", default=[], help="repeat for several")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args(argv)
    args.channel = args.channel or ["echo"]
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
