"""A lean SSE client on a plain socket: cheap enough for dozens of streams in one test,
and able to stop reading on purpose (a slow consumer) with a small receive buffer.

``SSEParser`` is sans-IO: feed it the raw bytes of the HTTP response (head, chunked
body) and it hands back events, tracking ``last_id`` the way EventSource does (every
``id:`` field counts, also on frames without data).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tests.support.sse import sse_url


@dataclass(frozen=True, slots=True)
class Event:
    id: str | None
    event: str
    data: str


class ProtocolError(ValueError):
    """The server's bytes are not a well-formed SSE response."""


class SSEParser:
    """HTTP response bytes in, SSE events out (frames with data only)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.last_id: str | None = None
        self.opening_id: str | None = None  # the cursor the stream started from
        self.retry: int | None = None
        self.finished = False  # the terminating zero-size chunk arrived
        self._head = b""
        self._raw = b""  # undecoded chunked framing
        self._chunk_left = 0
        self._crlf_left = 0
        self._body = b""  # decoded body not yet split into frames

    def feed(self, data: bytes) -> list[Event]:
        if self.status is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return []
            status_line = self._head[: self._head.find(b"\r\n")].split(b" ")
            if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
                raise ProtocolError(f"not an HTTP response: {self._head[:80]!r}")
            self.status = int(status_line[1])
            if b"transfer-encoding: chunked" not in self._head[:end].lower():
                raise ProtocolError("expected a chunked body")
            data, self._head = self._head[end + 4 :], b""
        self._dechunk(data)
        return self._frames()

    def _dechunk(self, data: bytes) -> None:
        raw = self._raw + data if self._raw else data
        pos, end, pieces = 0, len(raw), [self._body]
        while pos < end and not self.finished:
            if self._chunk_left:
                take = min(self._chunk_left, end - pos)
                pieces.append(raw[pos : pos + take])
                self._chunk_left -= take
                pos += take
                self._crlf_left = 0 if self._chunk_left else 2
            elif self._crlf_left:
                skip = min(self._crlf_left, end - pos)
                self._crlf_left -= skip
                pos += skip
            else:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(raw[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                self.finished = size == 0
                self._chunk_left = size
        self._raw = raw[pos:]
        self._body = b"".join(pieces)

    def _frames(self) -> list[Event]:
        body = self._body
        held = b""
        if body.endswith(b"\r"):  # maybe half of a CRLF: decide when the rest arrives
            body, held = body[:-1], b"\r"
        body = body.replace(b"\r\n", b"\n")
        end = body.rfind(b"\n\n")
        if end < 0:
            self._body = body + held
            return []
        self._body = body[end + 2 :] + held
        events = []
        for block in body[:end].split(b"\n\n"):
            event = self._frame(block)
            if event is not None:
                events.append(event)
        return events

    def _frame(self, block: bytes) -> Event | None:
        frame_id: str | None = None
        name = "message"
        data: list[str] = []
        for raw_line in block.split(b"\n"):
            line = raw_line.decode()
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                frame_id = self.last_id = value
                if self.opening_id is None:
                    self.opening_id = value
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "retry" and value.isdigit():
                self.retry = int(value)
        if not data:
            return None  # comment, ping, retry- or id-only frame
        return Event(frame_id, name, "\n".join(data))


def request_bytes(port: int, channels: Sequence[str], last_event_id: str | None) -> bytes:
    path = sse_url("", channels)
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Accept: text/event-stream",
    ]
    if last_event_id is not None:
        lines.append(f"Last-Event-ID: {last_event_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawStream:
    """One SSE connection on an asyncio stream; ``read`` returns what one read parsed."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.parser = SSEParser()

    @classmethod
    async def open(
        cls,
        port: int,
        channels: Sequence[str],
        *,
        last_event_id: str | None = None,
        timeout: float = 10,
    ) -> RawStream:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(request_bytes(port, channels, last_event_id))
        return cls(reader, writer)

    @property
    def last_id(self) -> str | None:
        return self.parser.last_id

    @property
    def local_port(self) -> int:
        """The client's port: which server process holds the other end is found by it."""
        port: int = self._writer.get_extra_info("sockname")[1]
        return port

    async def read(self) -> list[Event] | None:
        """Events completed by the next read; None once the server ended the stream."""
        if self.parser.finished:
            return None  # the body is complete; the connection itself may be kept alive
        data = await self._reader.read(256 * 1024)
        if not data:
            return None
        return self.parser.feed(data)

    def write(self, data: bytes) -> None:
        """Send more bytes on the connection (a pipelined request, say)."""
        self._writer.write(data)

    def abort(self) -> None:
        """Drop the connection at once, the way a browser tab closes."""
        self._writer.transport.abort()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def stalled_socket(
    port: int, channels: Sequence[str], *, last_event_id: str | None = None, rcvbuf: int = 4096
) -> socket.socket:
    """A connected socket that has sent its request and reads nothing until told to.

    The receive buffer is set before connecting so the advertised window stays small.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request_bytes(port, channels, last_event_id))
    sock.setblocking(False)  # read later with loop.sock_recv
    return sock


async def recv_events(
    sock: socket.socket, parser: SSEParser, *, until: Callable[[], bool], timeout: float
) -> list[Event]:
    """Read ``sock`` until ``until()`` holds or the server closes it; the events parsed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    events: list[Event] = []
    while not until() and not parser.finished:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"socket read timed out after {timeout}s ({len(events)} events)")
        data = await asyncio.wait_for(loop.sock_recv(sock, 256 * 1024), remaining)
        if not data:
            break
        events += parser.feed(data)
    return events
