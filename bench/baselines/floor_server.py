"""The floor: what opening a stream costs a Python server that does nothing else.

A uvloop ``asyncio.Protocol`` answers every request head, in one write, with bytes the
size and shape of what our gateway sends for ``GET /sse?channel=storm`` (the 200 head and
the opening chunk: retry hint and cursor), then holds the connection and ignores whatever
else arrives. No HTTP parser, no routing, no Redis: a reconnect storm against it measures
the event loop, the socket calls and the kernel alone, a reference line for the others.
``--burn-us N`` spins N µs before each answer: the Python work a real server does per
new stream, without the allocations that come with it.

    python -m bench.baselines.floor_server --host 127.0.0.1 --port 8000 [--burn-us 200]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Sequence
from email.utils import formatdate
from typing import cast

import uvloop

from bench.procs import raise_fd_limit

HEAD_MAX = 8192
"""A request head longer than this is not a client of the storm: close it."""


def opening(date: str) -> bytes:
    """The answer to a new stream: our gateway's response head (headers in its order, same
    lengths) and its first chunk, 299 bytes in all as measured against ``python -m gateway``."""
    body = b"retry: 2000\nid: storm=0-0\n\n"
    head = (
        "HTTP/1.1 200 OK\r\n"
        f"date: {date}\r\n"
        "server: uvicorn\r\n"
        "access-control-expose-headers: Content-Type\r\n"
        "cache-control: no-store\r\n"
        "connection: keep-alive\r\n"
        "x-accel-buffering: no\r\n"
        "content-type: text/event-stream; charset=utf-8\r\n"
        "transfer-encoding: chunked\r\n"
        "\r\n"
    ).encode()
    return head + f"{len(body):x}\r\n".encode() + body + b"\r\n"


class Stream(asyncio.Protocol):
    """One connection: answered once its request head is complete, then only held."""

    __slots__ = ("answer", "burn_s", "head", "transport")

    def __init__(self, answer: bytes, burn_s: float) -> None:
        self.answer = answer
        self.burn_s = burn_s
        self.head: bytes | None = b""
        """What arrived of the request head; None once answered."""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport has the methods of asyncio.Transport, not the class.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.head is None or self.transport is None:
            return
        self.head += data
        if b"\r\n\r\n" not in self.head:
            if len(self.head) > HEAD_MAX:
                self.transport.close()
            return
        self.head = None
        if self.burn_s:
            end = time.perf_counter() + self.burn_s
            while time.perf_counter() < end:
                pass
        self.transport.write(self.answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int, burn_us: float) -> None:
    """Listen until SIGTERM or SIGINT; the open streams close with the process."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    answer = opening(formatdate(usegmt=True))
    server = await loop.create_server(
        lambda: Stream(answer, burn_us / 1e6),
        host,
        port,
        backlog=2048,  # uvicorn's
    )
    await stop.wait()
    # Not wait_closed(): it would wait for every held stream to end.
    server.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.baselines.floor_server", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--burn-us", type=float, default=0.0, help="µs spun before each answer (default 0)"
    )
    args = parser.parse_args(argv)
    raise_fd_limit()
    uvloop.run(serve(args.host, args.port, args.burn_us))


if __name__ == "__main__":
    main()
