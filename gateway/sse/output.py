"""A stream's byte output: written at once while the client keeps up, by a task when it lags.

Live fan-out writes from the hub's flush, outside of any task: waking one task
per client per event would cost more than the write itself. ``write_now``
therefore starts the ASGI ``send`` coroutine by hand. Under uvicorn (and any
server whose ``send`` only waits when the socket is full) it finishes in that
one step; when the client's socket is full it suspends instead, and the rest
of that write is handed to a task bounded by the send timeout. Until it is
done the output is busy: ``write_now`` refuses, so callers buffer (and the
sink's bounds then cut a client that does not catch up).

The stream's own task writes the opening, history and queued live frames
with ``write``, which waits for a write in flight first, so bytes always leave
in the order they were rendered. Under uvicorn's httptools protocol both write
to the transport directly while its buffer has room (``ChunkedTransport``).

The middleware between the response and the server must be pure ASGI (a
``BaseHTTPMiddleware`` would need a task for every send).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any

from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Send

from gateway._fastpath.transport import ChunkedTransport

SendCoroutine = Coroutine[Any, Any, None]


class Continuation:
    """Awaits the rest of a coroutine that was started outside any task and suspended."""

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self._coro, self._pending
        while True:
            try:
                value = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation (the send timeout) goes into it
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(value)
                except StopIteration as stop:
                    return stop.value


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
        "disconnected",
        "error",
        "held",
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
        self.disconnected = False
        self.error: BaseException | None = None
        """Why writing failed (a ``SendTimeoutError``, or what ``send`` raised)."""
        self.on_failure: Callable[[], None] | None = None
        """Called once when a write fails outside the stream's task, to end the stream."""
        self.held: list[bytes] | None = None
        """Chunks ``HeldWrites`` keeps for this output until the end of the hub's flush."""
        self.wrote = True
        """Set by every write; the keep-alive pinger clears it and pings streams left idle
        (a new stream counts as active: its opening frame comes before any ping)."""

    @property
    def direct(self) -> ChunkedTransport | None:
        return self._direct

    @property
    def ready(self) -> bool:
        """Whether ``write_now`` would write at once (nothing in flight, nothing failed)."""
        return self._flight is None and not self._busy and self.error is None

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
        if direct is not None and direct.try_write(chunk):
            return
        started = self._start(chunk)
        if started is None:
            if self.error is not None:
                raise self.error
            return
        self._busy = True
        try:
            await self._bounded(*started)
        finally:
            self._busy = False
        if self.error is not None:
            raise self.error

    def _start(self, chunk: bytes) -> tuple[SendCoroutine, Any] | None:
        """Run ``send`` up to its first suspension; None if it finished (or failed)."""
        message: Message = {"type": "http.response.body", "body": chunk, "more_body": True}
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

    def _failed(self) -> None:
        """A write outside the stream's task failed: have the stream end."""
        if self.on_failure is not None:
            self.on_failure()


class HeldWrites:
    """Live chunks rendered during one hub flush, joined into one write per output at its end.

    A client on several channels gets one batch per channel from a flush; holding the
    chunks until the flush is over sends them in one write (the write, not the rendering,
    is what a delivery costs). Nothing else writes to an output while a flush runs: it is
    one synchronous call, so the held chunks keep their order."""

    __slots__ = ("_outputs",)

    def __init__(self) -> None:
        self._outputs: list[StreamOutput] = []

    def hold(self, output: StreamOutput, chunk: bytes) -> None:
        held = output.held
        if held is None:
            output.held = [chunk]
            self._outputs.append(output)
        else:
            held.append(chunk)

    def release(self) -> None:
        """Write what every output holds (called when the flush is done)."""
        outputs, self._outputs = self._outputs, []
        for output in outputs:
            held, output.held = output.held, None
            if held:
                output.write_now(held[0] if len(held) == 1 else b"".join(held))
