"""uvicorn's httptools protocol with lighter per-connection objects.

An idle SSE stream keeps its connection's protocol, request cycle and flow
control alive for as long as it is open. uvicorn gives each of them an
``asyncio.Event`` or a ``deque`` (the cycle's ``message_event``, the flow's
writable event, the pipeline of queued requests), and every ``deque`` costs
760 bytes before it holds anything: about 2.5 KB per stream, for a pipeline
that stays empty and events that have at most one waiter. ``LeanHttpProtocol``
swaps them for ``LightEvent`` and ``_Pipeline``, which behave the same for
everything uvicorn does with them.

A stream's response never ends while the client listens, so no further request
on its connection can be answered: ``stop_reading_requests`` lets it drop the
request parser (about 0.9 KB) and close the connection when the stream ends.

It also bounds request heads, which httptools does not: their size, the time from
a connection's start to a complete head, and how many connections wait for one
(``heads.HeadLimits``, set for the process by ``FastPath``). It tells when its
connection is closed (``when_lost``), so an ended stream can hold its admission
slot until its socket is released.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway._fastpath.heads import HeadLimits


class LightEvent:
    """``asyncio.Event``'s interface, holding its waiters in a list made on first wait.

    ``call_when_set`` lets a watcher be called back (from the loop, once) instead of
    awaiting it: the disconnect watch of an idle stream then needs no coroutine."""

    __slots__ = ("_callback", "_loop", "_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[bool]] | None = None
        self._callback: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            if self._waiters:
                for waiter in self._waiters:
                    if not waiter.done():
                        waiter.set_result(True)
            callback, loop = self._callback, self._loop
            if callback is not None and loop is not None:
                self._callback = self._loop = None
                loop.call_soon(callback)  # when a waiter would resume: on the next turn

    def clear(self) -> None:
        self._value = False

    def call_when_set(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` soon after the event is next set (once); None: no more."""
        self._callback = callback
        self._loop = None if callback is None else asyncio.get_running_loop()

    async def wait(self) -> Literal[True]:
        if self._value:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            waiters.remove(waiter)
            if not waiters and self._waiters is waiters:
                self._waiters = None  # idle again: hold no list


class _Pipeline(list[Any]):
    """The ``deque`` operations uvicorn uses on its request pipeline, on a (small) list."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class _NoMoreRequests:
    """Stands in for the parser of a connection that reads no further request."""

    __slots__ = ()

    def feed_data(self, data: bytes) -> None:
        """Drop what the client sends: its connection closes when the stream ends."""


_NO_MORE_REQUESTS = _NoMoreRequests()


class HeadWait:
    """Bounds on a connection's wait for its request head (``heads.HeadLimits``), and the
    news of its end (``when_lost``), for the protocols that read a head:
    ``LeanHttpProtocol`` and ``OpeningProtocol``."""

    __slots__ = ("_head_bytes", "_head_timer", "_on_lost", "lost")

    head_limits: ClassVar[HeadLimits | None] = None
    """The process's limits on request heads (``FastPath`` sets them); None: none."""
    transport: asyncio.Transport

    def _init_head_wait(self) -> None:
        self.lost = False
        """Whether the connection is closed (its socket released)."""
        self._on_lost: asyncio.Future[None] | None = None
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        """Set while the connection waits for a complete request head."""

    def when_lost(self) -> asyncio.Future[None]:
        """A future set once the connection is closed."""
        waiter = self._on_lost
        if waiter is None:
            waiter = self._on_lost = asyncio.get_running_loop().create_future()
            if self.lost:
                waiter.set_result(None)
        return waiter

    def _tell_lost(self) -> None:
        waiter = self._on_lost
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wait_for_head(self, deadline: float | None = None) -> None:
        """Start waiting; ``deadline`` (loop time): a wait another protocol began."""
        limits = self.head_limits
        if limits is None or self.lost:
            return
        self._head_bytes = 0
        loop = asyncio.get_running_loop()
        self._head_timer = (
            loop.call_later(limits.timeout, self._head_too_slow)
            if deadline is None
            else loop.call_at(deadline, self._head_too_slow)
        )
        limits.waiting.add(self)

    def _head_done(self) -> None:
        timer = self._head_timer
        if timer is not None:
            timer.cancel()
            self._head_timer = None
            if self.head_limits is not None:
                self.head_limits.waiting.discard(self)

    def _head_too_large(self, data: bytes) -> bool:
        """Count ``data`` against the head's bound; True once over it (then refused)."""
        if self._head_timer is not None:
            limits = self.head_limits
            self._head_bytes += len(data)
            if limits is not None and self._head_bytes > limits.max_bytes:
                self._refuse_head(limits.too_large)  # before the parser holds any of it
                return True
        return False

    def _stop_reading(self) -> None:
        """Read no further request on this connection."""
        raise NotImplementedError

    def _refuse_head(self, response: bytes) -> None:
        self._head_done()
        self._stop_reading()
        transport = self.transport
        if not transport.is_closing():
            transport.write(response)
            transport.close()

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.head_limits is not None:
            self.head_limits.waiting.discard(self)
            self._refuse_head(self.head_limits.too_slow)

    def drop_waiting(self) -> None:
        """Close now: newer connections need this one's place (``heads.WaitingConnections``)."""
        timer, self._head_timer = self._head_timer, None
        if timer is not None:
            timer.cancel()
        self.transport.abort()


class LeanHttpProtocol(HeadWait, HttpToolsProtocol):
    """``HttpToolsProtocol`` with ``LightEvent``s and a list for the pipeline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_head_wait()
        self.pipeline = _Pipeline()  # type: ignore[assignment]

    def _stop_reading(self) -> None:
        self.parser = _NO_MORE_REQUESTS  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._head_too_large(data):
            return
        super().data_received(data)

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # then the next head has already been read
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._wait_for_head()

    # -- the connection's end --------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._head_done()
        super().connection_lost(exc)
        self._tell_lost()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._made(transport)
        self._wait_for_head()

    def _made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        flow: Any = self.flow
        writable = getattr(flow, "_is_writable_event", None)
        if isinstance(writable, asyncio.Event):  # another uvicorn version: leave it be
            flow._is_writable_event = LightEvent(writable.is_set())

    def adopt(
        self,
        transport: asyncio.Transport,
        data: bytes,
        head_deadline: float | None,
        *,
        after_response: bool = False,
        paused: bool = False,
    ) -> None:
        """Serve a connection ``OpeningProtocol`` began, as if it had been this one's.

        ``data``: what was read of it and not answered; ``head_deadline``: when the wait
        for the head it is part of ends (None: none in force); ``after_response``: a
        response on the connection has just ended; ``paused``: reading is paused."""
        self._made(transport)
        transport.set_protocol(self)
        if paused:
            transport.resume_reading()
        if after_response:
            self.on_response_complete()  # counts it, arms keep-alive and the head wait
        elif head_deadline is not None:
            self._wait_for_head(head_deadline)
        if data:
            self.data_received(data)

    def on_headers_complete(self) -> None:
        self._head_done()
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not before and isinstance(getattr(cycle, "message_event", None), asyncio.Event):
            # A new cycle: its task has not run yet and the parser has not reached the
            # body, so nothing waits on or has set its event.
            assert not cycle.message_event.is_set()
            cycle.message_event = LightEvent()  # type: ignore[assignment]

    def stop_reading_requests(self, cycle: Any) -> None:
        """``cycle``'s response is endless (an SSE stream): read no request after it.

        Frees the request parser; bytes the client sends from now on are dropped, and
        the connection closes when the response ends, as for ``Connection: close``.
        Requests already pipelined behind it are dropped too: none could be answered
        before that close."""
        if self.parser is None:  # the connection is already lost
            return
        cycle.keep_alive = False
        self.pipeline.clear()
        # A pipelined request became the protocol's current cycle: connection_lost tells
        # only that one, so the stream would never hear of the client leaving.
        self.cycle = cycle
        self.parser = _NO_MORE_REQUESTS  # type: ignore[assignment]
