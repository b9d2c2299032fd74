"""Body chunks written straight to uvicorn's transport, framed once for every client.

Under uvicorn's httptools protocol, ASGI ``send`` of a body chunk only frames it
(``Transfer-Encoding: chunked``) and calls ``transport.write``; the coroutine
around that costs about as much as the rest of a delivery. ``ChunkedTransport``
does the same write without it, for a response that uvicorn already started
with chunked framing, and declines whenever ``send`` would do more: the client
is gone (nothing is written, as uvicorn does) or the transport's buffer is over
its high-water mark (``send`` then waits for it to drain, under the send
timeout). Any other server, or another uvicorn version whose cycle lacks these
attributes, gets no ``ChunkedTransport`` and every chunk goes through ``send``.

A group writes the same chunk to many streams: it is framed once
(``frame_chunk``) and written with ``write_framed``.

The response head is held (``HeldHead``) and leaves in one write with the stream's
first chunk when that comes within the same turn of the loop (the opening frame
usually does), on the next turn otherwise: one syscall and one segment per new
stream instead of two.

When the response has ended, ``released`` lets go of the connection: asyncio's
``close()`` keeps a socket open until its unsent bytes are sent, which for a client
that stopped reading is until that client leaves. The bytes get a short while
(the linger), then the connection is aborted; a stream cut because its client
stopped reading is aborted at once (``abort``).
"""

from __future__ import annotations

import asyncio
import socket
from asyncio import Transport
from typing import Any

from starlette.types import Send
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway._fastpath.chunked import frame_chunk
from gateway._fastpath.opening import OpeningProtocol
from gateway._fastpath.protocol import LeanHttpProtocol
from gateway._fastpath.socket_options import set_int_option


class _HeadBuffer:
    """Stands in for a cycle's transport while uvicorn writes the response head."""

    __slots__ = ("data", "transport")

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)  # anything but a write goes through


class HeldHead:
    """The head of a response being started, kept from the socket until ``take``."""

    __slots__ = ("_buffer", "_cycle")

    def __init__(self, cycle: Any, buffer: _HeadBuffer) -> None:
        self._cycle = cycle
        self._buffer = buffer

    @classmethod
    def of(cls, send: Send) -> HeldHead | None:
        """Hold what ``send``'s uvicorn cycle writes until ``take`` (None: not a cycle
        of uvicorn's httptools protocol, or one already started)."""
        cycle = getattr(send, "__self__", None)
        if not isinstance(cycle, RequestResponseCycle):
            return None
        transport = getattr(cycle, "transport", None)
        if getattr(cycle, "response_started", True) is not False or transport is None:
            return None
        buffer = _HeadBuffer(transport)
        cycle.transport = buffer  # type: ignore[assignment]
        return cls(cycle, buffer)

    def take(self) -> bytes:
        """The cycle's own transport back; returns what was written meanwhile."""
        buffer = self._buffer
        if self._cycle.transport is buffer:
            self._cycle.transport = buffer.transport
        return b"".join(buffer.data)

    def write_now(self) -> None:
        """The cycle's own transport back, with what was held written to it."""
        self.write_held(self.take())

    def write_held(self, head: bytes) -> None:
        """Write ``head`` (what ``take`` returned) to the cycle's own transport."""
        if head and not self._cycle.disconnected:
            self._buffer.transport.write(head)


class ChunkedTransport:
    """Writes framed body chunks of one started uvicorn response."""

    __slots__ = ("_cycle", "_flow", "_head", "_head_flush", "_protocol", "_transport")

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._flow = cycle.flow
        self._transport: Transport = cycle.transport
        protocol = getattr(getattr(cycle, "on_response", None), "__self__", None)
        self._protocol = (
            protocol if isinstance(protocol, LeanHttpProtocol | OpeningProtocol) else None
        )
        self._head: bytes | None = None
        self._head_flush: asyncio.Handle | None = None

    def hold_head(self, head: bytes) -> None:
        """Write ``head`` (the response head) with the first chunk if that comes in this
        turn of the loop, on the next turn otherwise."""
        if head:
            self._head = head
            self._head_flush = asyncio.get_running_loop().call_soon(self.flush_head)

    def flush_head(self) -> None:
        """Write the held head now (before anything that writes through ``send``)."""
        head, flush = self._head, self._head_flush
        if head is None:
            return
        self._head = self._head_flush = None
        if flush is not None:
            flush.cancel()
        if not self._cycle.disconnected and not self._transport.is_closing():
            self._transport.write(head)

    def _with_head(self, framed: bytes) -> bytes:
        head, flush = self._head, self._head_flush
        self._head = self._head_flush = None
        if flush is not None:
            flush.cancel()
        return framed if head is None else head + framed

    @classmethod
    def of(cls, send: Send) -> ChunkedTransport | None:
        """The transport behind ``send`` if it is uvicorn's httptools cycle with a started,
        chunked response; None otherwise (then ``send`` is the way to write)."""
        cycle = getattr(send, "__self__", None)
        if not isinstance(cycle, RequestResponseCycle):
            return None
        try:
            usable = (
                cycle.response_started
                and cycle.chunked_encoding is True
                and not cycle.response_complete
                and isinstance(cycle.flow.write_paused, bool)
                and isinstance(cycle.disconnected, bool)
                and callable(cycle.transport.write)
            )
        except AttributeError:
            return None
        return cls(cycle) if usable else None

    def last_on_connection(self) -> None:
        """This response is endless: its connection reads no further request.

        Under ``LeanHttpProtocol`` that frees the request parser of an idle stream."""
        if self._protocol is not None:
            self._protocol.stop_reading_requests(self._cycle)

    def abort(self) -> None:
        """Drop the connection now, with whatever it has not sent (its client stopped reading)."""
        self._transport.abort()

    async def released(self, linger: float) -> None:
        """Return once the connection is closed: its last bytes sent within ``linger``
        seconds, or dropped then. Without ``LeanHttpProtocol`` nothing tells when, so it
        is aborted at once if bytes are left."""
        transport, protocol = self._transport, self._protocol
        if protocol is None:
            if transport.get_write_buffer_size():
                transport.abort()
            return
        if protocol.lost:
            return
        lost = protocol.when_lost()
        if not transport.is_closing():
            transport.close()
        dropping = asyncio.get_running_loop().call_later(linger, transport.abort)
        try:
            await lost
        except asyncio.CancelledError:
            transport.abort()
            raise
        finally:
            dropping.cancel()

    def coalesce_writes(self) -> None:
        """Turn Nagle's algorithm back on for this connection (uvloop turns it off).

        A write made while the client has not acknowledged the previous segment then
        waits for that ACK and leaves with whatever else was written meanwhile: what
        nginx does for streamed responses. Under load it turns many small writes into
        few segments, which is most of what a delivery costs; a client that keeps up
        sees its ACKs answered within a round trip."""
        set_int_option(self._transport, socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)

    def bound_send_buffer(self, size: int) -> None:
        """Fix the kernel's send buffer of this connection at ``size`` bytes.

        Linux grows a socket's send buffer to megabytes (``net.ipv4.tcp_wmem``) for a
        client that reads nothing: a stalled stream would have the gateway render and
        copy that much into the kernel before its writes wait, which is memory of the
        host and CPU a burst of stalled clients takes from everyone else."""
        set_int_option(self._transport, socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    @property
    def writable(self) -> bool:
        """Whether a write goes out now: the client is there and the buffer has room."""
        return not self._cycle.disconnected and not self._flow.write_paused

    def write_framed(self, framed: bytes) -> bool:
        """Write an already framed chunk (True), or nothing (False) unless ``writable``."""
        if self._cycle.disconnected or self._flow.write_paused:
            return False
        self._transport.write(framed if self._head is None else self._with_head(framed))
        return True

    def try_write(self, chunk: bytes) -> bool:
        """Write ``chunk`` (True), or leave it to ``send`` (False): the buffer is full."""
        if self._cycle.disconnected:
            return True  # what send does: the client is gone, the stream is ending
        if self._flow.write_paused:
            return False
        framed = frame_chunk(chunk)
        self._transport.write(framed if self._head is None else self._with_head(framed))
        return True
