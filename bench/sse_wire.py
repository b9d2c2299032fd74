"""The client side of one SSE response, cheap enough for thousands of streams.

- ``ResponseHead``: status and framing of the HTTP response head.
- ``Dechunker``: strips ``Transfer-Encoding: chunked`` framing (uvicorn sends
  it, nginx may), passing body slices on without copying whole buffers.
- ``MarkerCounter``: counts events by a marker that begins each payload event
  (``data: {"message":``): comments, pings, retry- and id-only frames carry no
  such line, and a marker split across reads is still counted once.
- ``EventParser``: full parsing for the sampled streams (latency, sequence).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

EVENT_MARKER = b'data: {"message":'
"""Begins the ``data:`` line of every benchmark event in all three systems."""


class ProtocolError(ValueError):
    """The server's bytes are not a well-formed HTTP response."""


@dataclass(frozen=True)
class ResponseHead:
    status: int
    chunked: bool
    headers: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes) -> ResponseHead:
        """Parse a response head (without its final blank line)."""
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        return cls(int(parts[1]), chunked, headers)


class Dechunker:
    """Feeds the body bytes inside chunked framing to ``on_body``."""

    __slots__ = ("_crlf", "_finished", "_on_body", "_pending", "_remaining")

    def __init__(self, on_body: Callable[[bytes], None]) -> None:
        self._on_body = on_body
        self._remaining = 0  # body bytes left in the current chunk
        self._crlf = 0  # bytes of the CRLF after a chunk body still to skip
        self._pending = b""  # an incomplete chunk-size line
        self._finished = False

    @property
    def finished(self) -> bool:
        """The terminating zero-size chunk arrived."""
        return self._finished

    def feed(self, data: bytes) -> None:
        if self._pending:
            data = self._pending + data
            self._pending = b""
        pos, end = 0, len(data)
        while pos < end and not self._finished:
            if self._remaining:
                take = min(self._remaining, end - pos)
                self._on_body(data if take == end else data[pos : pos + take])
                self._remaining -= take
                pos += take
                if not self._remaining:
                    self._crlf = 2
            elif self._crlf:
                skip = min(self._crlf, end - pos)
                self._crlf -= skip
                pos += skip
            else:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    self._pending = data[pos:]
                    return
                size_field = data[pos:eol].split(b";", 1)[0]
                try:
                    size = int(size_field, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size_field!r}") from None
                pos = eol + 2
                if size == 0:
                    self._finished = True
                self._remaining = size


class MarkerCounter:
    """Counts occurrences of ``marker`` in a byte stream fed in arbitrary pieces."""

    __slots__ = ("_keep", "_marker", "_tail", "count")

    def __init__(self, marker: bytes = EVENT_MARKER) -> None:
        self._marker = marker
        self._keep = len(marker) - 1
        self._tail = b""
        self.count = 0

    def feed(self, piece: bytes) -> int:
        """Count markers completed by ``piece``; returns how many."""
        found = piece.count(self._marker)
        if self._tail:
            # Only markers that start in the tail: the tail and this prefix are too short
            # to hold one on their own.
            found += (self._tail + piece[: self._keep]).count(self._marker)
        if len(piece) >= self._keep:
            self._tail = piece[-self._keep :]
        else:
            self._tail = (self._tail + piece)[-self._keep :]
        self.count += found
        return found


@dataclass
class ParsedEvents:
    """What a fully parsed stream received: latencies and how often each sequence came."""

    latencies: list[float] = field(default_factory=list)
    seen: dict[tuple[str, int], int] = field(default_factory=dict)
    other_events: list[str] = field(default_factory=list)


def message_key(message: str) -> tuple[str, int]:
    """``"echo-00000042-xxxx"`` -> ``("echo", 42)``: the tag and sequence of a message.

    Split from the right: a tag (the channel) may hold dashes, the padding does not."""
    tag, seq, _ = message.rsplit("-", 2)
    return tag, int(seq)


class EventParser:
    """Splits an SSE body into events and records latency and sequence of each."""

    __slots__ = ("_buffer", "result")

    def __init__(self) -> None:
        self._buffer = b""
        self.result = ParsedEvents()

    def feed(self, piece: bytes, received_at: float | None = None) -> None:
        received = time.time() if received_at is None else received_at
        buffer = self._buffer + piece
        held = b""
        if buffer.endswith(b"\r"):  # maybe half of a CRLF: decide when the rest arrives
            buffer, held = buffer[:-1], b"\r"
        buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._buffer = buffer + held
            return
        self._buffer = buffer[end + 2 :] + held
        for block in buffer[:end].split(b"\n\n"):
            self._event(block, received)

    def _event(self, block: bytes, received: float) -> None:
        name = "message"
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif line.startswith(b"event:"):
                name = line[6:].strip().decode()
        if not data:
            return  # comment, ping, retry or id-only frame
        text = b"\n".join(data)
        if not text.startswith(b'{"message":'):
            self.result.other_events.append(f"{name}: {text[:200].decode(errors='replace')}")
            return
        payload = json.loads(text)
        created = datetime.fromisoformat(payload["created_at"]).timestamp()
        self.result.latencies.append(received - created)
        key = message_key(payload["message"])
        self.result.seen[key] = self.result.seen.get(key, 0) + 1
