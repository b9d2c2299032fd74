"""The SSE response: sse-starlette's ``EventSourceResponse`` with at most one task per stream.

sse-starlette runs four tasks per stream in an anyio task group (the body, a
ping loop, a disconnect listener and a shutdown listener) beside the server's
own task: about 50 KB and a cancel scope per send for every stream. A
``StreamResponse`` keeps what they do and runs the body in the server's task, and
on the fast path in no task at all while a fan-out group writes the stream
(``OpenStream``: the stream is parked, and resumed in a task when it must act):

- pings: ``OpenStreams`` pings every idle stream from one task;
- disconnect detection: ``DisconnectWatch`` drives ``receive()`` from future
  callbacks, not a task (on the fast path, the request cycle calls back);
- send timeout: ``StreamOutput`` bounds every write that has to wait;
- shutdown: the hub closes every stream with a retry hint (``Runtime.drain``), and
  ``OpenStreams.cancel_all`` ends what is left when the grace period is over.

Each stream's opening and end are logged and counted once (``StreamLifecycle``). A
stream the gateway cuts because its client does not read (the send timeout) or
that outlives the shutdown grace period raises ``StreamCut``, for the server to
close the connection, instead of the write's own exception and its traceback.

HEAD and websocket scopes go to sse-starlette unchanged; headers, media type and
``SendTimeoutError`` are its own. ``StreamResponses`` builds the responses of
one app, with the fast path's pieces when it is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from sse_starlette import EventSourceResponse
from starlette.types import Message, Receive, Scope, Send

from gateway._fastpath import FastPath
from gateway.metrics import Metrics
from gateway.sse.disconnect import DisconnectWatch, Watch
from gateway.sse.lifecycle import StreamCut, StreamLifecycle, write_failure
from gateway.sse.open_streams import OpenStreams
from gateway.sse.output import StreamOutput

if TYPE_CHECKING:
    from gateway._fastpath.transport import ChunkedTransport

log = logging.getLogger(__name__)

SERVER_SEND = "gateway.server_send"
"""Scope key of the ASGI server's own ``send``, noted at the app's entry (``GatewayApp``).

Every middleware between the app and the route wraps ``send`` to watch
``http.response.start``; body chunks of a started stream need none of them, and
each layer costs a coroutine per delivery. Without the key, ``send`` is used."""


class Resumer(Protocol):
    """Gives a parked stream a task again."""

    def resume(self) -> None:
        """Start a task that calls ``FrameSource.go_on`` (soon, not in this call)."""
        ...


class FrameSource(Protocol):
    """What a stream sends: its frames, and a way to end it early."""

    async def run(
        self, output: StreamOutput, opened: Callable[[], None], resumer: Resumer | None = None
    ) -> bool:
        """Write the stream's frames to ``output`` from the stream's task (live frames may
        also reach it from outside) until the stream ends; ``output.write``'s exception
        is let through. ``opened``: call once when the first bytes are written. With a
        ``resumer``, True means the stream parked: the task may end, and the stream calls
        ``resumer.resume()`` when it needs one again, to ``go_on``."""
        ...

    async def go_on(self, output: StreamOutput) -> bool:
        """Continue a parked stream in a new task; the same result as ``run``."""
        ...

    def end(self, reason: str) -> None:
        """Stop the stream soon (the client left, or a write failed)."""
        ...

    @property
    def end_reason(self) -> str | None:
        """Why the stream ended by itself (``end``, a closed sink), once it has."""
        ...

    def log_fields(self) -> Mapping[str, object]:
        """Fields for the stream's log lines: its channels and how it started."""
        ...


class _NoBody:
    """Stands in for sse-starlette's body iterator: the frames need the output first."""

    def __aiter__(self) -> AsyncIterator[Any]:
        raise RuntimeError("StreamResponse makes its body per call")


_END_OF_BODY: Message = {"type": "http.response.body", "body": b"", "more_body": False}

CLOSE_LINGER = 2.0
"""Seconds an ended stream's unsent bytes (its closing hint) get to leave before its
connection is dropped (fast path): a client that stopped reading must not keep the
gateway's socket open."""


CUT_REASONS = frozenset({"send_timeout", "write_failed", "shutdown_forced"})
"""Ends the gateway forces on a stream whose client does not read: its connection is
dropped with whatever is still buffered for it."""


class StreamResponses:
    """Makes the stream responses of one app: the same headers, timeouts and path for all."""

    def __init__(
        self,
        *,
        streams: OpenStreams,
        fast_path: FastPath,
        send_timeout: float | None,
        tcp_nodelay: bool,
        metrics: Metrics,
        send_buffer: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.streams = streams
        self.metrics = metrics
        self.lifecycle = StreamLifecycle(metrics)
        self.fast_path = fast_path
        self.send_timeout = send_timeout
        self.coalesce_writes = not tcp_nodelay
        self.close_linger = CLOSE_LINGER
        """Leave Nagle's algorithm on for streams' sockets (fast path only)."""
        self.send_buffer = send_buffer
        """Kernel send buffer of streams' sockets, bytes (fast path); None: the kernel's."""
        self.headers = headers
        prototype = EventSourceResponse(
            _NoBody(), headers=headers, ping=streams.ping_interval, send_timeout=send_timeout
        )
        self.template = fast_path.response_template(prototype)

    def open(self, source: FrameSource) -> StreamResponse:
        return StreamResponse(source, self)


class OpenStream:
    """A started stream: its output, its source, and what its end must do.

    Its task is the server's until the source parks (a fan-out group writes the
    stream, fast path only); then no task runs for it, and ``resume`` starts one of
    the gateway's own (owned by ``OpenStreams``) when the source needs it again. So
    the end of a stream is this object's, not a frame's: ``serve`` runs in whichever
    task the stream has when it ends."""

    __slots__ = (
        "_direct",
        "_may_park",
        "_on_end",
        "_output",
        "_requested_at",
        "_responses",
        "_scope",
        "_send",
        "_server_send",
        "_source",
        "_watch",
        "task",
    )

    def __init__(
        self,
        responses: StreamResponses,
        output: StreamOutput,
        source: FrameSource,
        scope: Scope,
        requested_at: float,
        send: Send,
        server_send: Send,
        direct: ChunkedTransport | None,
        on_end: Callable[[], None] | None,
    ) -> None:
        self._responses = responses
        self._output = output
        self._source = source
        self._scope = scope
        self._requested_at = requested_at
        self._send = send
        self._server_send = server_send
        self._direct = direct
        self._on_end = on_end
        self._may_park = responses.fast_path.may_park(server_send)
        self._watch: Watch | None = None
        self.task: asyncio.Task[None] | None = None
        """The task that runs the stream now; None while it is parked."""

    # -- callbacks ---------------------------------------------------------------

    def opened(self) -> None:
        self._responses.lifecycle.opened(self._source, self._scope, self._requested_at)

    def client_left(self) -> None:
        self._output.disconnected = True
        self._source.end("disconnect")

    def write_failed(self) -> None:
        self._source.end("write_failed")

    def resume(self) -> None:
        """The parked source needs a task again (called back by it)."""
        task = self.task = asyncio.get_running_loop().create_task(self.serve(resumed=True))
        task.add_done_callback(self._resumed_done)

    def cancel(self) -> None:
        """End the stream now (the shutdown grace period is over)."""
        task = self.task
        if task is not None:
            task.cancel()
        else:
            # Parked, so its client reads: its source ends it, in a task of its own.
            self._source.end("shutdown_forced")

    # -- the stream ------------------------------------------------------------------

    def watch(self, receive: Receive) -> None:
        """Notice the client leaving (from uvicorn's request cycle on the fast path)."""
        fast_path = self._responses.fast_path
        watch: Watch | None = fast_path.watch_disconnect(receive, self.client_left)
        if watch is None:
            generic = watch = DisconnectWatch(receive, self.client_left)
            generic.start()
        self._watch = watch

    async def serve(self, resumed: bool = False) -> None:
        """Run the stream until it ends, or until it parks; end it when it ends."""
        output, source, responses = self._output, self._source, self._responses
        streams = responses.streams
        reason = "error"
        parked = False
        try:
            try:
                try:
                    if resumed:
                        parked = await source.go_on(output)
                    else:
                        resumer = self if self._may_park else None
                        parked = await source.run(output, self.opened, resumer)
                except Exception as exc:
                    if exc is not output.error:
                        raise  # a bug, not a client that stopped reading
                if parked:
                    self.task = None
                    if not resumed:
                        responses.fast_path.park(self._server_send)
                    return
                if output.error is not None:
                    # A stalled client: no end-of-body write could reach it.
                    reason = write_failure(output.error)
                else:
                    reason = source.end_reason or "disconnect"
                    if not output.disconnected:
                        if self._direct is not None:
                            self._direct.flush_head()
                        await self._send(_END_OF_BODY)
            except asyncio.CancelledError:
                reason = "shutdown_forced"
                if not streams.was_forced(output):
                    output.drop()
                    raise
                task = asyncio.current_task()
                assert task is not None
                task.uncancel()  # ended by the shutdown, as sse-starlette's task group does
            finally:
                if not parked:
                    await self._ended(reason)
            if reason in CUT_REASONS and not output.drop():
                # Through ASGI alone a cut can only be told to the server by raising: it
                # closes the connection (once its client has read what is buffered or left).
                # The cut is logged already; gateway.logs keeps it to that one line.
                raise StreamCut(reason)
            # Until its socket is closed the connection holds an fd and its unsent bytes:
            # the admission slot is given back only then.
            await output.released(responses.close_linger)
        finally:
            if not parked:
                self._release()

    async def _ended(self, reason: str) -> None:
        output = self._output
        watch, self._watch = self._watch, None
        watch_task = None if watch is None else watch.stop()
        self._responses.streams.discard(output)
        await output.aclose()
        if watch_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await watch_task
        self._responses.lifecycle.closed(self._source, self._scope, reason, self._requested_at)
        output.on_failure = None  # no cycle left (see _release)

    def _release(self) -> None:
        self.task = None
        on_end, self._on_end = self._on_end, None
        _response_over(on_end, self._scope)

    def _resumed_done(self, task: asyncio.Task[None]) -> None:
        """What the server does when a response's task fails, for a task of our own (fast
        path only, where a cut drops the connection instead of raising ``StreamCut``)."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("Exception in a stream's task", exc_info=exc)
            self._output.drop()


def _response_over(on_end: Callable[[], None] | None, scope: Scope) -> None:
    """However a stream response ends: its admission slot back, the scope's cycle broken."""
    if on_end is not None:
        on_end()
    # The scope holds the server's send, bound to the request cycle that holds the
    # scope: a cycle. Broken, an ended stream's objects (protocol, transport, cycle,
    # output, subscription) are freed by their reference counts, not by the next
    # full collection, which walks every open stream (~0.5 s at 15,000).
    scope.pop(SERVER_SEND, None)


class StreamResponse(EventSourceResponse):
    """An endless SSE response over a ``FrameSource``, in the server's task (and, while a
    fan-out group writes it, in no task: ``OpenStream``)."""

    def __init__(
        self,
        source: FrameSource,
        responses: StreamResponses,
        status_code: int = 200,  # FastAPI's OpenAPI reads the default from this signature
    ) -> None:
        template = responses.template
        if template is not None:
            template.fill(self)
        else:
            super().__init__(
                _NoBody(),
                status_code=status_code,
                headers=responses.headers,
                ping=responses.streams.ping_interval,
                send_timeout=responses.send_timeout,
            )
        self._source = source
        self._responses = responses
        self.on_end: Callable[[], None] | None = None
        """Called once when the response ends, however it ends (admission's release)."""
        self.requested_at: float | None = None
        """When the request came (``time.perf_counter``); None: when the response starts."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        on_end = self.on_end
        if scope["type"] != "http" or scope["method"].upper() == "HEAD":
            try:
                await super().__call__(scope, receive, send)
            finally:
                _response_over(on_end, scope)
            return
        try:
            stream = await self._start(scope, receive, send)
        except BaseException:
            _response_over(on_end, scope)
            raise
        del self  # the response object (headers, settings) is not needed any more
        await stream.serve()

    async def _start(self, scope: Scope, receive: Receive, send: Send) -> OpenStream:
        """Send the head, set up the stream's output and watch; the stream to serve."""
        requested_at = self.requested_at or time.perf_counter()
        task = asyncio.current_task()
        assert task is not None
        responses = self._responses
        fast_path = responses.fast_path
        server_send = scope.get(SERVER_SEND, send)
        # The head leaves with the opening frame: one write and one segment, not two.
        head = fast_path.hold_head(server_send)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
        except BaseException:
            if head is not None:
                head.write_now()
            raise
        direct = fast_path.direct_writes(
            server_send,
            coalesce=responses.coalesce_writes,
            send_buffer=responses.send_buffer,
            head=head,
        )
        # The request's headers have been read (auth, cursor, CORS, access log): a
        # browser's dozen headers and cookies need not live as long as the stream.
        request_headers = scope.get("headers")
        if isinstance(request_headers, list):
            request_headers.clear()  # in place: uvicorn's protocol holds the same list
        output = StreamOutput(server_send, self.send_timeout, direct)
        stream = OpenStream(
            responses,
            output,
            self._source,
            scope,
            requested_at,
            send,
            server_send,
            direct,
            self.on_end,
        )
        self.on_end = None
        output.on_failure = stream.write_failed
        stream.task = task
        responses.streams.add(output, stream)
        stream.watch(receive)
        return stream
