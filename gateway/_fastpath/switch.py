"""``FastPath``: the one switch between the fast path and the stock path.

On the fast path a plain ``GET /sse`` opens its stream in the connection's
protocol without uvicorn's request path (``opening.OpeningProtocol``), a
stream's bytes go straight to uvicorn's transport, its client's departure is
noticed from uvicorn's request cycle, its connection drops the request parser
once the stream runs, request heads are bounded in size, time and number
(``heads.HeadLimits``), trusted proxies' headers are applied without a
middleware frame, and sse-starlette's response attributes are built once per
process. On the stock path the same streams use only ASGI ``send``/``receive``,
uvicorn's own protocol and proxy-headers middleware, and sse-starlette's
constructor: slower and heavier per stream, the same bytes.

The fast path is on when the settings ask for it (``SSE_FAST_PATH``, default
on) and the installed versions pass ``compat``'s check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.types import Receive, Send

from gateway._fastpath.compat import UNUSABLE_REASON
from gateway._fastpath.heads import HeadLimits

if TYPE_CHECKING:
    from sse_starlette import EventSourceResponse

    from gateway._fastpath.disconnect import CycleWatch
    from gateway._fastpath.forwarded import ForwardedHeaders
    from gateway._fastpath.response_template import ResponseTemplate
    from gateway._fastpath.stream_cycle import StreamCycle
    from gateway._fastpath.transport import ChunkedTransport, HeldHead

OFF_BY_SETTING = "turned off by SSE_FAST_PATH=false"


class FastPath:
    """What this process may use of uvicorn's and sse-starlette's insides."""

    def __init__(
        self,
        enabled: bool,
        *,
        trusted_proxies: str | list[str],
        head_limits: HeadLimits | None = None,
    ) -> None:
        self.reason: str | None = UNUSABLE_REASON if enabled else OFF_BY_SETTING
        """Why the fast path is off; None when it is on."""
        self.forwarded: ForwardedHeaders | None = None
        """Applies trusted proxies' headers in the app (uvicorn's own middleware is off)."""
        self._http_protocol: type[asyncio.Protocol] | None = None
        self._chunked: type[ChunkedTransport] | None = None
        self._held_head: type[HeldHead] | None = None
        self._cycle_watch: type[CycleWatch] | None = None
        self._stream_cycle: type[StreamCycle] | None = None
        if self.reason is None:
            # Imported only when usable: they subclass and import uvicorn's httptools classes.
            from gateway._fastpath.disconnect import CycleWatch
            from gateway._fastpath.forwarded import ForwardedHeaders
            from gateway._fastpath.opening import OpeningProtocol
            from gateway._fastpath.protocol import HeadWait
            from gateway._fastpath.stream_cycle import StreamCycle
            from gateway._fastpath.transport import ChunkedTransport, HeldHead

            self.forwarded = ForwardedHeaders(trusted_proxies)
            # Streams open in it; every other request goes on to LeanHttpProtocol.
            self._http_protocol = OpeningProtocol
            if head_limits is not None:
                # For every connection of the process: uvicorn makes the protocols.
                HeadWait.head_limits = head_limits
            self._chunked = ChunkedTransport
            self._held_head = HeldHead
            self._cycle_watch = CycleWatch
            self._stream_cycle = StreamCycle

    @property
    def active(self) -> bool:
        return self.reason is None

    @property
    def http_protocol(self) -> type[asyncio.Protocol] | None:
        """The uvicorn ``http`` protocol class to run (None: uvicorn's own choice)."""
        return self._http_protocol

    def hold_head(self, send: Send) -> HeldHead | None:
        """Keep the head of the response about to start through ``send`` from the socket,
        for ``direct_writes`` to send with the first chunk (None: it is written as usual)."""
        held = self._held_head
        return None if held is None else held.of(send)

    def direct_writes(
        self,
        send: Send,
        *,
        coalesce: bool,
        send_buffer: int | None = None,
        head: HeldHead | None = None,
    ) -> ChunkedTransport | None:
        """Direct writes to the transport behind a started stream's ``send``, if possible.

        The connection stops reading requests (the response is endless), with
        ``coalesce`` leaves Nagle's algorithm on for its socket, and with ``send_buffer``
        has its kernel send buffer fixed at that many bytes. A ``head`` held by
        ``hold_head`` goes out with the first chunk (or at once without direct writes)."""
        held = None if head is None else head.take()  # the cycle's own transport back first
        chunked = self._chunked
        direct = None if chunked is None else chunked.of(send)
        if direct is None:
            if held and head is not None:
                head.write_held(held)
            return None
        direct.last_on_connection()
        if coalesce:
            direct.coalesce_writes()
        if send_buffer is not None:
            direct.bound_send_buffer(send_buffer)
        if held:
            direct.hold_head(held)
        return direct

    def may_park(self, send: Send) -> bool:
        """Whether the stream started through ``send`` may outlive its response's task
        (``park``): a stream ``OpeningProtocol`` opened, whose task's end finishes nothing."""
        cycle_class = self._stream_cycle
        return cycle_class is not None and type(getattr(send, "__self__", None)) is cycle_class

    @staticmethod
    def park(send: Send) -> None:
        """The response's task is about to end with its stream open (``may_park``): a task
        of the gateway's own writes and ends the response later."""
        cycle: StreamCycle = send.__self__  # type: ignore[attr-defined]
        cycle.parked = True

    def watch_disconnect(
        self, receive: Receive, on_disconnect: Callable[[], None]
    ) -> CycleWatch | None:
        """A started ``CycleWatch`` on ``receive``'s request cycle, or None (watch ``receive``)."""
        watch_class = self._cycle_watch
        if watch_class is None:
            return None
        watch = watch_class.of(receive, on_disconnect)
        if watch is not None:
            watch.start()
        return watch

    def response_template(self, prototype: EventSourceResponse) -> ResponseTemplate | None:
        """What sse-starlette's constructor gave ``prototype``, to copy into every response
        built with the same arguments; None on the stock path (construct each one)."""
        if self.reason is not None:
            return None
        from gateway._fastpath.response_template import ResponseTemplate

        return ResponseTemplate(prototype)
