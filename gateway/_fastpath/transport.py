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

When the response has ended, ``released`` lets go of the connection: asyncio's
``close()`` keeps a socket open until its unsent bytes are sent, which for a client
that stopped reading is until that client leaves. The bytes get a short while
(the linger), then the connection is aborted; a stream cut because its client
stopped reading is aborted at once (``abort``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from asyncio import Transport
from typing import Any

from starlette.types import Send

from gateway._fastpath.chunked import frame_chunk
from gateway._fastpath.protocol import LeanHttpProtocol

_CYCLE_MODULE = "uvicorn.protocols.http.httptools_impl"


class ChunkedTransport:
    """Writes framed body chunks of one started uvicorn response."""

    __slots__ = ("_cycle", "_flow", "_protocol", "_transport")

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._flow = cycle.flow
        self._transport: Transport = cycle.transport
        protocol = getattr(getattr(cycle, "on_response", None), "__self__", None)
        self._protocol = protocol if isinstance(protocol, LeanHttpProtocol) else None

    @classmethod
    def of(cls, send: Send) -> ChunkedTransport | None:
        """The transport behind ``send`` if it is uvicorn's httptools cycle with a started,
        chunked response; None otherwise (then ``send`` is the way to write)."""
        cycle = getattr(send, "__self__", None)
        if cycle is None or type(cycle).__module__ != _CYCLE_MODULE:
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
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)

    def bound_send_buffer(self, size: int) -> None:
        """Fix the kernel's send buffer of this connection at ``size`` bytes.

        Linux grows a socket's send buffer to megabytes (``net.ipv4.tcp_wmem``) for a
        client that reads nothing: a stalled stream would have the gateway render and
        copy that much into the kernel before its writes wait, which is memory of the
        host and CPU a burst of stalled clients takes from everyone else."""
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    @property
    def writable(self) -> bool:
        """Whether a write goes out now: the client is there and the buffer has room."""
        return not self._cycle.disconnected and not self._flow.write_paused

    def write_framed(self, framed: bytes) -> bool:
        """Write an already framed chunk (True), or nothing (False) unless ``writable``."""
        if self._cycle.disconnected or self._flow.write_paused:
            return False
        self._transport.write(framed)
        return True

    def try_write(self, chunk: bytes) -> bool:
        """Write ``chunk`` (True), or leave it to ``send`` (False): the buffer is full."""
        if self._cycle.disconnected:
            return True  # what send does: the client is gone, the stream is ending
        if self._flow.write_paused:
            return False
        self._transport.write(frame_chunk(chunk))
        return True
