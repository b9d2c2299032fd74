"""A stream's byte output: written at once while the client keeps up, by a task when it lags.

Two writers share one output, never at the same time. The stream's own task
writes the opening, history and buffered live frames with ``write``, which
waits for a write in flight first, so bytes leave in the order they were
rendered. While the stream's task is idle, a fan-out group writes its live
chunks from the hub's flush, outside any task (``write_shared``): waking one
task per stream per flush would cost more than the write itself.

A write from outside a task starts the ASGI ``send`` coroutine by hand. Under
uvicorn (and any server whose ``send`` only waits when the socket is full) it
finishes in that one step; when the client's socket is full it suspends
instead, and the rest of that write is handed to a task bounded by the send
timeout. Until it is done the output is busy and refuses further writes from
outside (the group then hands the stream back to its task, whose sinks bound
what it may fall behind). On the fast path both writers write framed chunks
to uvicorn's transport directly while its buffer has room.

The middleware between the response and the server must be pure ASGI (a
``BaseHTTPMiddleware`` would need a task for every send).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Send

from gateway._fastpath import frame_chunk
from gateway.sse._continuation import Continuation

if TYPE_CHECKING:
    from gateway._fastpath.transport import ChunkedTransport

SendCoroutine = Coroutine[Any, Any, None]

YIELD_BYTES = 64 * 1024
"""Bytes a stream's task writes without waiting before it lets other tasks run."""


class SharedChunk:
    """Body bytes written to many streams (a group's flush), framed once for direct writes."""

    __slots__ = ("data", "framed")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.framed = frame_chunk(data)


async def _awaiting(awaitable: Awaitable[None]) -> None:
    await awaitable


class StreamOutput:
    """The body writes of one SSE response, in order, bounded by the send timeout."""

    __slots__ = (
        "_busy",
        "_direct",
        "_flight",
        "_send",
        "_send_timeout",
        "_unyielded",
        "disconnected",
        "error",
        "on_failure",
        "wrote",
    )

    def __init__(
        self, send: Send, send_timeout: float | None, direct: ChunkedTransport | None = None
    ) -> None:
        self._send = send
        self._send_timeout = send_timeout
        self._direct = direct
        """Writes to uvicorn's transport without a ``send`` coroutine, while it can."""
        self._flight: asyncio.Future[None] | None = None
        self._busy = False
        self._unyielded = 0
        """Bytes the task wrote since it last let the event loop run."""
        self.disconnected = False
        self.error: BaseException | None = None
        """Why writing failed (a ``SendTimeoutError``, or what ``send`` raised)."""
        self.on_failure: Callable[[], None] | None = None
        """Called once when a write fails outside the stream's task, to end the stream."""
        self.wrote = True
        """Set by every write; the keep-alive pinger clears it and pings streams left idle
        (a new stream counts as active: its opening frame comes before any ping)."""

    @property
    def ready(self) -> bool:
        """Whether a write from outside the task could go now (nothing in flight or failed)."""
        if self._flight is not None or self._busy or self.error is not None:
            return False
        direct = self._direct
        return direct is None or direct.writable

    def write_shared(self, chunk: SharedChunk) -> bool:
        """A group's write from the flush; False (nothing written) if it cannot go now."""
        direct = self._direct
        if direct is not None:
            if self._flight is not None or self._busy or not direct.write_framed(chunk.framed):
                return False
            self.wrote = True
            return True
        return self.write_now(chunk.data)

    def write_now(self, chunk: bytes) -> bool:
        """Write from a callback; False (nothing written) while an earlier write is unfinished."""
        if self._flight is not None or self._busy or self.error is not None:
            return False
        self.wrote = True
        if self.disconnected:
            return True  # nobody reads any more: the stream is ending
        direct = self._direct
        if direct is not None and direct.try_write(chunk):
            return True
        started = self._start(chunk)
        if started is not None:
            self._flight = asyncio.ensure_future(self._finish(*started))
        elif self.error is not None:
            self._failed()
        return True

    async def write(self, chunk: bytes) -> None:
        """Write from the stream's task, after any write in flight; raises if writing failed."""
        while self._flight is not None:
            await self._flight
        if self.error is not None:
            raise self.error
        self.wrote = True
        if self.disconnected:
            return
        direct = self._direct
        if (direct is not None and direct.try_write(chunk)) or (
            started := self._start(chunk)
        ) is None:
            if self.error is not None:
                raise self.error
            # Written without waiting: a replay into a socket that takes megabytes (the
            # kernel's send buffer) would otherwise hold the loop for all of them.
            self._unyielded += len(chunk)
            if self._unyielded >= YIELD_BYTES:
                self._unyielded = 0
                await asyncio.sleep(0)
            return
        self._busy = True
        try:
            await self._bounded(*started)
        finally:
            self._busy = False
            self._unyielded = 0
        if self.error is not None:
            raise self.error

    def _start(self, chunk: bytes) -> tuple[SendCoroutine, Any] | None:
        """Run ``send`` up to its first suspension; None if it finished (or failed)."""
        message: Message = {"type": "http.response.body", "body": chunk, "more_body": True}
        if self._direct is not None:
            self._direct.flush_head()  # the head before any body bytes
        sent = self._send(message)
        # type() is, unlike isinstance() on an ABC, cheap enough for the per-delivery path.
        coro = sent if type(sent) is CoroutineType else _awaiting(sent)
        try:
            pending = coro.send(None)
        except StopIteration:
            return None
        except Exception as exc:
            self.error = exc
            return None
        return coro, pending

    async def _bounded(self, coro: SendCoroutine, pending: Any) -> None:
        try:
            async with asyncio.timeout(self._send_timeout):
                await Continuation(coro, pending)
        except TimeoutError:
            self.error = SendTimeoutError()
        except Exception as exc:
            self.error = exc

    async def _finish(self, coro: SendCoroutine, pending: Any) -> None:
        try:
            await self._bounded(coro, pending)
        finally:
            self._flight = None
        if self.error is not None:
            self._failed()

    def drop(self) -> bool:
        """Drop the connection with its unsent bytes (its client stopped reading); False
        where that cannot be done: through ASGI alone the server closes it, once the client
        has read those bytes or left."""
        if self._direct is None:
            return False
        self._direct.abort()
        return True

    async def released(self, linger: float) -> None:
        """Return once the connection is closed, its last bytes sent or, after ``linger``
        seconds, dropped (fast path; through ASGI, at once: the server closes it)."""
        if self._direct is not None:
            await self._direct.released(linger)

    async def aclose(self) -> None:
        """Cancel and await a write still in flight (the stream has ended)."""
        flight = self._flight
        if flight is not None:
            flight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flight

    def _failed(self) -> None:
        """A write outside the stream's task failed: have the stream end."""
        if self.on_failure is not None:
            self.on_failure()
