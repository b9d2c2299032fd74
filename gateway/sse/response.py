"""The SSE response: sse-starlette's ``EventSourceResponse`` with one task per stream.

sse-starlette runs four tasks per stream in an anyio task group (the body, a
ping loop, a disconnect listener and a shutdown listener) beside the server's
own task: about 50 KB and a cancel scope per send for every stream. This
subclass keeps what they do and runs the body in the server's task:

- pings: ``OpenStreams`` pings every idle stream from one task;
- disconnect detection: ``receive()`` is driven from future callbacks, not a task;
- send timeout: ``StreamOutput`` bounds every write that has to wait;
- shutdown: the hub closes every stream with a retry hint (``Runtime.drain``), and
  ``OpenStreams.cancel_all`` ends what is left when the grace period is over.

HEAD and websocket scopes go to sse-starlette unchanged; headers, media type and
``SendTimeoutError`` are its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import anyio
from sse_starlette import EventSourceResponse
from starlette.types import Message, Receive, Scope, Send

from gateway._fastpath.protocol import LightEvent
from gateway._fastpath.transport import ChunkedTransport
from gateway.sse.open_streams import OpenStreams
from gateway.sse.output import Continuation, StreamOutput

SERVER_SEND = "gateway.server_send"
"""Scope key of the ASGI server's own ``send``, noted at the app's entry (``GatewayApp``).

Every middleware between the app and the route wraps ``send`` to watch
``http.response.start``; body chunks of a started stream need none of them, and
each layer costs a coroutine per delivery. Without the key, ``send`` is used."""


class FrameSource(Protocol):
    """What a stream sends: its frames, and a way to end it early."""

    def frames(self, output: StreamOutput) -> AsyncGenerator[bytes, None]:
        """The bytes the stream's task writes; live frames may go through ``output`` directly."""
        ...

    def end(self, reason: str) -> None:
        """Stop the stream soon (the client left, or a write failed)."""
        ...


class _NoBody:
    """Stands in for sse-starlette's body iterator: the frames need the output first."""

    def __aiter__(self) -> AsyncIterator[Any]:
        raise RuntimeError("StreamResponse makes its body per call")


_NO_BODY = _NoBody()
_UNUSED_LOCK = anyio.Lock()
_TEMPLATES: dict[tuple[Any, ...], dict[str, Any]] = {}
"""The attributes sse-starlette's ``__init__`` sets, per status, headers and settings."""
_END_OF_BODY: Message = {"type": "http.response.body", "body": b"", "more_body": False}


class DisconnectWatch:
    """Calls ``on_disconnect`` when ``receive()`` says the client left; needs no task.

    A task per stream only to await ``receive()`` costs about a kilobyte per idle
    stream; driving the coroutine from the callbacks of the futures it waits on does
    the same job. Under ``LeanHttpProtocol`` even the coroutine is left out: the
    watch does what uvicorn's ``receive()`` does from its event's callback.
    """

    __slots__ = ("_coro", "_cycle", "_on_disconnect", "_pending", "_receive", "_task")

    def __init__(self, receive: Receive, on_disconnect: Callable[[], None]) -> None:
        self._receive = receive
        self._on_disconnect = on_disconnect
        self._coro: Any = None
        self._pending: asyncio.Future[Any] | None = None
        self._task: asyncio.Future[None] | None = None
        self._cycle: Any = None

    def start(self) -> None:
        cycle = getattr(self._receive, "__self__", None)
        if (
            type(getattr(cycle, "message_event", None)) is LightEvent
            and getattr(cycle, "waiting_for_100_continue", True) is False
        ):
            self._cycle = cycle
            self._watch_cycle()
        else:
            self._step(None)

    def _watch_cycle(self) -> None:
        """uvicorn's ``receive()`` in a loop, until it would say ``http.disconnect``."""
        cycle = self._cycle
        if cycle is None:
            return  # stopped
        try:
            while not (cycle.disconnected or cycle.response_complete):
                cycle.flow.resume_reading()
                event: LightEvent = cycle.message_event
                if not event.is_set():
                    event.call_when_set(self._watch_cycle)
                    return
                event.clear()
                if cycle.disconnected or cycle.response_complete:
                    break
                cycle.body = bytearray()  # the request body receive() would hand over
        except Exception:
            pass  # as when receive() raises: take it as a disconnect
        self._cycle = None
        self._on_disconnect()

    def _step(self, _: object) -> None:
        self._pending = None
        while True:
            if self._coro is None:
                self._coro = self._receive()
            try:
                pending = self._coro.send(None)
            except StopIteration as stop:
                self._coro = None
                message: Message = stop.value
                if message["type"] == "http.disconnect":
                    self._on_disconnect()
                    return
                continue  # the (empty) request body: wait on
            except Exception:
                self._coro = None
                self._on_disconnect()
                return
            if not isinstance(pending, asyncio.Future):
                # Not an asyncio future (another server's receive): let a task drive it.
                self._task = asyncio.ensure_future(self._in_task(pending))
                return
            self._pending = pending
            pending.add_done_callback(self._step)
            return

    async def _in_task(self, pending: Any) -> None:
        # Finish the receive() already started, then keep watching from this task.
        coro, self._coro = self._coro, None
        message: Message = await Continuation(coro, pending)
        while message["type"] != "http.disconnect":
            message = await self._receive()
        self._on_disconnect()

    def stop(self) -> None:
        if self._cycle is not None:
            self._cycle.message_event.call_when_set(None)
            self._cycle = None
        if self._task is not None:
            self._task.cancel()
        if self._pending is not None:
            self._pending.remove_done_callback(self._step)
            self._pending = None
        if self._coro is not None:
            self._coro.close()
            self._coro = None


class _StreamEnds:
    """What ends a stream early, as callbacks: one small object, not two closures."""

    __slots__ = ("_output", "_source")

    def __init__(self, output: StreamOutput, source: FrameSource) -> None:
        self._output = output
        self._source = source

    def client_left(self) -> None:
        self._output.disconnected = True
        self._source.end("disconnect")

    def write_failed(self) -> None:
        self._source.end("write_failed")


class StreamResponse(EventSourceResponse):
    """An endless SSE response over a ``FrameSource``, in the server's task alone."""

    def __init__(
        self,
        source: FrameSource,
        *,
        streams: OpenStreams,
        send_timeout: float | None,
        headers: Mapping[str, str] | None = None,
        status_code: int = 200,  # FastAPI's OpenAPI reads the default from this signature
    ) -> None:
        # sse-starlette builds and checks the same headers for every response, a large share
        # of the CPU it takes to open a stream: build them once per setting, copy after.
        key = (status_code, tuple((headers or {}).items()), streams.ping_interval, send_timeout)
        template = _TEMPLATES.get(key)
        if template is None:
            super().__init__(
                _NO_BODY,
                status_code=status_code,
                headers=headers,
                ping=streams.ping_interval,
                send_timeout=send_timeout,
            )
            # sse-starlette's lock orders its ping task's writes with the body task's; with
            # one task there is nothing to order, and an anyio.Lock is 760 bytes per stream.
            self._send_lock = _UNUSED_LOCK
            template = _TEMPLATES[key] = dict(vars(self))
        vars(self).update(template)
        self.raw_headers = list(template["raw_headers"])  # middleware may edit its own copy
        self._source = source
        self._streams = streams
        self.on_end: Callable[[], None] | None = None
        """Called once when the response ends, however it ends (admission's release)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        on_end = self.on_end
        try:
            if scope["type"] != "http" or scope["method"].upper() == "HEAD":
                await super().__call__(scope, receive, send)
                return
            task = asyncio.current_task()
            assert task is not None
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            server_send = scope.get(SERVER_SEND, send)
            direct = ChunkedTransport.of(server_send)
            if direct is not None:
                direct.last_on_connection()
                if not self._streams.tcp_nodelay:
                    direct.coalesce_writes()
            # The request's headers have been read (auth, cursor, CORS, access log): a
            # browser's dozen headers and cookies need not live as long as the stream.
            request_headers = scope.get("headers")
            if isinstance(request_headers, list):
                request_headers.clear()  # in place: uvicorn's protocol holds the same list
            output = StreamOutput(server_send, self.send_timeout, direct)
            source, streams, background = self._source, self._streams, self.background
            ends = _StreamEnds(output, source)
            output.on_failure = ends.write_failed
            watch = DisconnectWatch(receive, ends.client_left)
            # This frame stays alive as long as the stream; the response object (its
            # headers and settings, several hundred bytes) is not needed any more.
            del self
            streams.add(output, task)
            try:
                watch.start()
                frames = source.frames(output)
                try:  # contextlib.aclosing, without an object kept for the stream's lifetime
                    async for chunk in frames:
                        await output.write(chunk)
                        if output.disconnected:
                            break
                finally:
                    await frames.aclose()
                if output.error is not None:
                    raise output.error  # a stalled client: no end-of-body write could reach it
                if not output.disconnected:
                    await send(_END_OF_BODY)
            except asyncio.CancelledError:
                if not streams.was_forced(output):
                    raise
                task.uncancel()  # ended by the shutdown, as sse-starlette's task group does
            finally:
                watch.stop()
                streams.discard(output)
            if background is not None:
                await background()
        finally:
            # The stream's own frame is the one that lives as long as it (no wrapper
            # coroutine does), so it gives the admission slot back.
            if on_end is not None:
                on_end()
