"""A connection that is an SSE stream from its first byte.

uvicorn opens every connection the same way: a protocol with a ``__dict__`` of two
dozen attributes, its address looked up through two syscalls, an httptools parser,
a Python callback per header, a scope built piece by piece, a request cycle, and a
task running ``run_asgi``, then the app, then the route; the protocol, the scope, the
cycle and two of those coroutine frames stay alive as long as the stream. For a
reconnect storm that is most of what a new stream costs.

``OpeningProtocol`` is the protocol uvicorn makes for each connection on the fast
path. It reads the first request head itself. A plain ``GET /sse`` head
(``StreamHead``) opens the stream at once: the scope is built in one go, the request
cycle is uvicorn's own (the stream's writes, disconnect watch and held head work on
it unchanged), and the task runs the app's stream opener (``GatewayApp.open_stream``:
the same admission, auth, limits and cursor checks as through ASGI) with no
``run_asgi`` or app frame under it; what ``run_asgi`` does when the app fails is done
when the task ends (``_asgi_done``). Anything else (another path, a head that is not
plain, a server that has no stream opener) is handed, with the bytes read so far, to
``LeanHttpProtocol``, which answers it as uvicorn would. So is a connection whose
stream request was refused, once its answer is sent: further requests on it are
uvicorn's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway._fastpath.protocol import HeadWait, LeanHttpProtocol, LightEvent
from gateway._fastpath.socket_options import address
from gateway._fastpath.stream_cycle import StreamCycle
from gateway._fastpath.stream_head import StreamHead, head_ended, may_be_stream_request

StreamOpener = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
"""``(scope, receive, send)`` to the coroutine that serves ``GET /sse`` (an ASGI app's
call, made synchronously so that nothing of the app stays on the stack)."""

OPENER_ATTRIBUTE = "open_stream"
"""The attribute of the app uvicorn runs that is its ``StreamOpener``, if it has one."""

_LOGGER = logging.getLogger("uvicorn.error")
_ACCESS_LOGGER = logging.getLogger("uvicorn.access")
_ASGI = {"version": "3.0", "spec_version": "2.3"}


def stream_opener(config: Any) -> StreamOpener | None:
    """The opener of the app ``config`` runs, when streams may open without uvicorn's
    request path: a plain app (no uvicorn middleware around it), no root path, no
    concurrency limit, no TLS (uvicorn's protocol handles those)."""
    if not config.loaded:
        config.load()
    opener = getattr(config.loaded_app, OPENER_ATTRIBUTE, None)
    if (
        not callable(opener)
        or config.root_path
        or config.limit_concurrency is not None
        or config.is_ssl
        or config.asgi_version != "3.0"
    ):
        return None
    return opener  # type: ignore[no-any-return]


class OpeningProtocol(HeadWait, asyncio.Protocol):
    """A connection's protocol: its stream, if its first request is a plain ``GET /sse``."""

    __slots__ = (
        "_app_state",
        "_buffer",
        "_config",
        "_cycle",
        "_opener",
        "_reading",
        "_server_state",
        "flow",
        "transport",
    )

    _server: tuple[str, int | None] | None = None
    """The local address of the latest stream opened (``_open``)."""

    _openers: dict[int, tuple[Any, StreamOpener | None]] = {}
    """Per uvicorn config (its id, and the config kept alive): the opener, looked up once."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        known = self._openers.get(id(config))
        if known is None or known[0] is not config:
            known = self._openers[id(config)] = (config, stream_opener(config))
        self._opener = known[1]
        self._buffer = b""
        self._cycle: StreamCycle | None = None
        self._reading = True
        self._init_head_wait()
        self.flow: FlowControl | None = None

    # -- the connection ----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self._server_state.connections.add(self)
        self._wait_for_head()

    def data_received(self, data: bytes) -> None:
        if not self._reading:
            return  # the stream runs: the connection reads no further request
        if self._cycle is not None:
            # Behind a request being answered: uvicorn's, once the answer is sent. Read
            # no more meanwhile (uvicorn pauses for a pipelined request too; the stream's
            # disconnect watch resumes reading).
            self._buffer += data
            if self.flow is not None:
                self.flow.pause_reading()
            return
        if self._head_too_large(data):
            return
        buffer = self._buffer = self._buffer + data
        if self._opener is None:
            self._hand_over()
        elif head_ended(buffer):
            head = StreamHead.parse(buffer)
            if head is None:
                self._hand_over()
            else:
                self._buffer = b""
                self._head_done()
                self._open(head)
        elif not may_be_stream_request(buffer):
            self._hand_over()

    def connection_lost(self, exc: Exception | None) -> None:
        # What uvicorn's protocol does for its cycle, and LeanHttpProtocol's end.
        self.lost = True
        self._head_done()
        self._server_state.connections.discard(self)
        cycle = self._cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.message_event.set()
            if cycle.parked:
                # What ``_asgi_done`` does once the task that finishes the response has
                # ended; a parked stream's did not: no cycle back to this protocol.
                cycle.on_response = _nothing
        if self.flow is not None:
            self.flow.resume_writing()
        if exc is None:
            self.transport.close()
        self._tell_lost()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        if self.flow is not None:
            self.flow.pause_writing()

    def resume_writing(self) -> None:
        if self.flow is not None:
            self.flow.resume_writing()

    def shutdown(self) -> None:
        """The server is shutting down (uvicorn calls this on every connection)."""
        cycle = self._cycle
        if cycle is None or cycle.response_complete:
            self.transport.close()
        else:
            cycle.keep_alive = False

    def stop_reading_requests(self, cycle: Any) -> None:
        """The stream's response is endless: read no request after it, and close the
        connection when it ends (as ``LeanHttpProtocol`` does)."""
        if self.lost:
            return
        cycle.keep_alive = False
        self._reading = False
        self._buffer = b""

    def _stop_reading(self) -> None:
        self._reading = False

    # -- the stream ----------------------------------------------------------------

    def _open(self, head: StreamHead) -> None:
        """Start the stream's task on uvicorn's request cycle for ``head``."""
        transport, server_state = self.transport, self._server_state
        flow = self.flow = FlowControl(transport)
        flow._is_writable_event = LightEvent(True)  # type: ignore[assignment]
        config = self._config
        server = address(transport, "sockname")
        if server == OpeningProtocol._server:
            # Connections to one listening address share it: one tuple for every stream,
            # not one per stream.
            server = OpeningProtocol._server
        else:
            OpeningProtocol._server = server
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": "1.1",
            "server": server,
            "client": address(transport, "peername"),
            "scheme": "http",
            "root_path": "",
            "headers": head.headers,
            "state": self._app_state.copy(),
            "method": "GET",
            "path": "/sse",
            "raw_path": b"/sse",
            "query_string": head.query_string,
        }
        cycle = self._cycle = StreamCycle(
            scope=scope,  # type: ignore[arg-type]
            transport=transport,
            flow=flow,
            logger=_LOGGER,
            access_logger=_ACCESS_LOGGER,
            access_log=config.access_log and _ACCESS_LOGGER.hasHandlers(),
            default_headers=server_state.default_headers,
            message_event=LightEvent(),  # type: ignore[arg-type]
            expect_100_continue=False,
            keep_alive=True,
            on_response=self._response_complete,
        )
        # The whole request is read: what uvicorn's on_message_complete does.
        cycle.more_body = False
        cycle.message_event.set()
        assert self._opener is not None
        task = asyncio.ensure_future(self._opener(scope, cycle.receive, cycle.send))
        task.add_done_callback(self._asgi_done)
        server_state.tasks.add(task)

    def _asgi_done(self, task: asyncio.Task[None]) -> None:
        """What uvicorn's ``run_asgi`` does once the app returns or raises."""
        self._server_state.tasks.discard(task)
        cycle = self._cycle
        if cycle is None or cycle.parked:
            return  # no response to finish yet: the stream goes on without this task
        cycle.on_response = _nothing  # run_asgi's finally: no cycle back to this protocol
        exc: BaseException | None = (
            asyncio.CancelledError() if task.cancelled() else task.exception()
        )
        if exc is not None:
            cycle.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not cycle.response_started:
                self._answer_500(cycle)
            else:
                cycle.transport.close()
        elif not cycle.response_started and not cycle.disconnected:
            cycle.logger.error("ASGI callable returned without starting response.")
            self._answer_500(cycle)
        elif not cycle.response_complete and not cycle.disconnected:
            cycle.logger.error("ASGI callable returned without completing response.")
            cycle.transport.close()

    @staticmethod
    def _answer_500(cycle: RequestResponseCycle) -> None:
        task = asyncio.ensure_future(cycle.send_500_response())
        task.add_done_callback(_retrieve)

    def _response_complete(self) -> None:
        """A response that was not a stream is over: the connection is uvicorn's now."""
        if self.transport.is_closing():
            self._server_state.total_requests += 1  # else counted by the protocol taking over
            return
        self._hand_over(after_response=True)

    # -- uvicorn's protocol for everything else -----------------------------------------

    def _hand_over(self, after_response: bool = False) -> None:
        """Let ``LeanHttpProtocol`` serve this connection from here, with what was read."""
        timer = self._head_timer
        deadline = None if timer is None else timer.when()
        self._head_done()
        self._reading = False
        self._server_state.connections.discard(self)
        data, self._buffer = self._buffer, b""
        protocol = LeanHttpProtocol(
            config=self._config,
            server_state=self._server_state,
            app_state=self._app_state,
            _loop=asyncio.get_running_loop(),
        )
        paused = self.flow is not None and self.flow.read_paused
        protocol.adopt(self.transport, data, deadline, after_response=after_response, paused=paused)


def _nothing() -> None:
    pass


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
