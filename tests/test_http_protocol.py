"""The lighter pieces ``LeanHttpProtocol`` gives uvicorn, and the disconnect watch on them.

(The integration tests run every stream through them: ``python -m gateway`` uses
``LeanHttpProtocol``. These pin the event semantics uvicorn relies on.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httptools
import uvicorn
from starlette.types import Message, Receive, Scope, Send

from gateway._fastpath.disconnect import CycleWatch
from gateway._fastpath.protocol import LeanHttpProtocol, LightEvent, _Pipeline
from gateway._fastpath.transport import ChunkedTransport
from tests.support.ports import free_port, wait_for_port


async def test_light_event_wakes_every_waiter_and_can_be_cleared() -> None:
    event = LightEvent()
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    event.set()
    assert event.is_set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert await event.wait() is True  # already set: no wait
    event.clear()
    again = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    assert not again.done()
    again.cancel()
    await asyncio.sleep(0)
    assert event._waiters is None  # a cancelled waiter leaves nothing behind


async def test_light_event_calls_back_once_on_the_next_turn() -> None:
    event = LightEvent()
    calls: list[int] = []
    event.call_when_set(lambda: calls.append(1))
    event.set()
    assert calls == []  # like a waiter, it runs on the next turn, not inside set()
    await asyncio.sleep(0)
    assert calls == [1]
    event.clear()
    event.set()
    await asyncio.sleep(0)
    assert calls == [1]  # once
    event.clear()
    event.call_when_set(lambda: calls.append(2))
    event.call_when_set(None)
    event.set()
    await asyncio.sleep(0)
    assert calls == [1]


def test_pipeline_keeps_deque_order() -> None:
    pipeline, reference = _Pipeline(), deque[int]()
    for item in (1, 2, 3):
        pipeline.appendleft(item)
        reference.appendleft(item)
    assert [pipeline.pop() for _ in range(3)] == [reference.pop() for _ in range(3)]
    assert not pipeline


class _Flow:
    def __init__(self) -> None:
        self.resumed = 0

    def resume_reading(self) -> None:
        self.resumed += 1


class _Cycle:
    """The attributes of uvicorn's ``RequestResponseCycle`` that ``receive()`` uses."""

    def __init__(self) -> None:
        self.message_event = LightEvent()
        self.message_event.set()  # the GET request is complete
        self.flow = _Flow()
        self.disconnected = False
        self.response_complete = False
        self.waiting_for_100_continue = False
        self.body = bytearray()

    async def receive(self) -> Message:  # pragma: no cover - the watch does its work itself
        raise AssertionError("not called on the fast path")


async def test_disconnect_watch_on_a_light_event_needs_no_receive_coroutine() -> None:
    cycle = _Cycle()
    left: list[bool] = []
    watch = CycleWatch.of(cycle.receive, lambda: left.append(True))
    assert watch is not None
    watch.start()
    assert not cycle.message_event.is_set()  # the request was taken, as receive() does
    assert cycle.flow.resumed == 2
    assert not left
    cycle.message_event.set()  # more request data, not a disconnect: watch on
    await asyncio.sleep(0)
    assert not left
    cycle.disconnected = True  # what uvicorn's connection_lost does
    cycle.message_event.set()
    await asyncio.sleep(0)
    assert left == [True]


async def test_a_stopped_disconnect_watch_stays_quiet() -> None:
    cycle = _Cycle()
    left: list[Any] = []
    watch = CycleWatch.of(cycle.receive, lambda: left.append(True))
    assert watch is not None
    watch.start()
    watch.stop()
    cycle.disconnected = True
    cycle.message_event.set()
    await asyncio.sleep(0)
    assert left == []


class _EndlessApp:
    """Streams ``data: a`` after ``last_on_connection``, then ends when told to or on a
    disconnect; records the connections' parsers once the stream has started."""

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None
        self.finish = asyncio.Event()
        self.client_left = asyncio.Event()
        self.parsers: list[Any] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        direct = ChunkedTransport.of(send)
        assert direct is not None
        assert self.server is not None
        direct.last_on_connection()
        self.parsers.extend(protocol.parser for protocol in self.server.server_state.connections)
        await send({"type": "http.response.body", "body": b"data: a\n\n", "more_body": True})
        finished = asyncio.ensure_future(self.finish.wait())
        left = asyncio.ensure_future(self._disconnect(receive))
        await asyncio.wait({finished, left}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (finished, left):
            waiter.cancel()
        await asyncio.gather(finished, left, return_exceptions=True)
        if self.client_left.is_set():
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass  # the request's (empty) body
        self.client_left.set()


@contextlib.asynccontextmanager
async def endless_server() -> AsyncIterator[
    tuple[_EndlessApp, asyncio.StreamReader, asyncio.StreamWriter]
]:
    """An in-process uvicorn with ``LeanHttpProtocol``, and a connection that sent a stream
    request with a second request pipelined behind it (in one segment) and read ``data: a``."""
    app = _EndlessApp()
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=LeanHttpProtocol, lifespan="off", log_level="error"
    )
    app.server = uvicorn.Server(config)
    serving = asyncio.create_task(app.server.serve())
    try:
        assert await asyncio.to_thread(wait_for_port, port, 10)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        received = b""
        async with asyncio.timeout(5):
            while b"data: a" not in received:
                received += await reader.read(4096)
        assert received.count(b"HTTP/1.1 200") == 1, received
        try:
            yield app, reader, writer
        finally:
            writer.close()
    finally:
        app.server.should_exit = True
        await serving


async def test_an_endless_response_frees_the_parser_and_answers_no_pipelined_request() -> None:
    async with endless_server() as (app, reader, _):
        assert app.parsers
        assert not any(isinstance(p, httptools.HttpRequestParser) for p in app.parsers)
        # The pipelined request could never be answered while the stream lasted; after
        # the stream the connection closes instead.
        app.finish.set()
        rest = b""
        async with asyncio.timeout(5):
            while chunk := await reader.read(4096):  # EOF: the server closed the connection
                rest += chunk
        assert b"HTTP/1.1" not in rest, rest
        assert rest.endswith(b"0\r\n\r\n"), rest


async def test_a_client_that_pipelined_a_request_is_still_seen_leaving() -> None:
    async with endless_server() as (app, _, writer):
        writer.close()  # the stream, not the dropped pipelined request, must hear of it
        async with asyncio.timeout(5):
            await app.client_left.wait()
