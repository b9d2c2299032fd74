"""Many SSE streams for the price of a socket each: raw asyncio connections, no HTTP library.

For tests that hold a thousand streams or more in one process: an httpx client per
stream would cost more memory and CPU than the gateway under test. A ``RawStream``
sends one HTTP/1.1 GET, checks the status, waits for the opening frame and later reads
the rest of the response to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from tests.support.sse import Frame


class IncompleteResponse(AssertionError):
    """The connection ended before the terminating chunk: the response was cut, not closed."""


@dataclass
class RawStream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: bytearray
    """The response body bytes so far, still in chunked transfer coding."""

    @classmethod
    async def open(cls, port: int, channels: Sequence[str], timeout: float) -> RawStream:
        """GET /sse on 127.0.0.1:``port`` and wait for the opening frame."""
        path = "/sse?" + urlencode([("channel", channel) for channel in channels])
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status_line = head.split(b"\r\n", 1)[0]
            assert status_line.startswith(b"HTTP/1.1 200 "), status_line
            assert b"transfer-encoding: chunked" in head.lower(), head
            received = bytearray()
            # The opening frame (retry and starting cursor) ends with the first blank line.
            while b"\n\n" not in received:
                data = await asyncio.wait_for(reader.read(4096), timeout)
                assert data, "the stream ended before its opening frame"
                received += data
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, received)

    async def read_to_end(self) -> list[Frame]:
        """Every frame of the response, once the server has ended it cleanly."""
        try:
            while data := await self.reader.read(65536):
                self.received += data
        finally:
            self.close()
        return parse_frames(dechunk(bytes(self.received)))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.writer.close()


def dechunk(raw: bytes) -> bytes:
    """The body inside ``Transfer-Encoding: chunked``; raises if the final chunk is missing."""
    body = bytearray()
    pos = 0
    while True:
        line_end = raw.find(b"\r\n", pos)
        if line_end < 0:
            raise IncompleteResponse(f"cut after {len(body)} body bytes: {bytes(body[-200:])!r}")
        size = int(raw[pos:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(body)
        start = line_end + 2
        if len(raw) < start + size + 2:
            raise IncompleteResponse(f"cut inside a chunk after {len(body)} body bytes")
        body += raw[start : start + size]
        pos = start + size + 2


def parse_frames(body: bytes) -> list[Frame]:
    """SSE frames (with id, retry or data) in ``body``; comments are dropped."""
    frames = []
    for block in body.decode().split("\n\n"):
        frame = Frame()
        data: list[str] = []
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                frame.id = value
            elif name == "event":
                frame.event = value
            elif name == "data":
                data.append(value)
            elif name == "retry" and value.isdigit():
                frame.retry = int(value)
        if data:
            frame.data, frame.has_data = "\n".join(data), True
        if frame.has_data or frame.id is not None or frame.retry is not None:
            frames.append(frame)
    return frames


async def open_many(
    port: int, channel_sets: Sequence[Sequence[str]], *, concurrency: int, timeout: float
) -> list[RawStream]:
    """One stream per channel set, at most ``concurrency`` handshakes in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one(channels: Sequence[str]) -> RawStream:
        async with gate:
            return await RawStream.open(port, channels, timeout)

    results = await asyncio.gather(*(one(c) for c in channel_sets), return_exceptions=True)
    streams = [r for r in results if isinstance(r, RawStream)]
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for stream in streams:
            stream.close()
        raise errors[0]
    return streams


def ensure_open_files(needed: int) -> None:
    """Raise this process's descriptor limit (children inherit it) to at least ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
