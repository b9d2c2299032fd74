"""A connection that is an SSE stream from its first byte (``OpeningProtocol``).

A plain ``GET /sse`` head opens its stream without uvicorn's request path; anything
else is handed to uvicorn's protocol with the bytes read so far, and a refused stream
request leaves its connection to uvicorn for the next request. These pin what is a
plain head, and, against a gateway process, that a client sees the same answers
however it sends its head: in pieces, pipelined, refused, over the limits, or gone
before the stream opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway._fastpath.stream_head import StreamHead, head_ended, may_be_stream_request
from tests.support.processes import GatewayProcess

GatewayFactory = Callable[..., GatewayProcess]

BROWSER_HEAD = (
    b"GET /sse?channel=echo&last_event_id=echo%3D1-0 HTTP/1.1\r\n"
    b"Host: localhost:8000\r\n"
    b"Accept: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Last-Event-ID: echo=5-0\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
    b"Cookie: a=1; b=2\r\n"
    b"\r\n"
)


def test_a_browsers_stream_head_is_read_as_uvicorn_reads_it() -> None:
    head = StreamHead.parse(BROWSER_HEAD)
    assert head is not None
    assert head.query_string == b"channel=echo&last_event_id=echo%3D1-0"
    assert head.headers == [
        (b"host", b"localhost:8000"),
        (b"accept", b"text/event-stream"),
        (b"cache-control", b"no-cache"),
        (b"last-event-id", b"echo=5-0"),
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64)"),
        (b"cookie", b"a=1; b=2"),
    ]
    bare = StreamHead.parse(b"GET /sse HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n")
    assert bare == StreamHead(b"", [(b"host", b"h"), (b"x-empty", b"")])
    # What browsers send on every HTTP/1.1 request.
    kept = StreamHead.parse(BROWSER_HEAD[:-2] + b"Connection: Keep-Alive\r\n\r\n")
    assert kept is not None
    assert kept.headers[-1] == (b"connection", b"Keep-Alive")


@pytest.mark.parametrize(
    "data",
    [
        BROWSER_HEAD[:-2],  # not complete yet
        BROWSER_HEAD + b"GET /healthz HTTP/1.1\r\n\r\n",  # a request pipelined behind
        BROWSER_HEAD.replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        BROWSER_HEAD.replace(b"GET /sse", b"GET /sse2", 1),
        BROWSER_HEAD.replace(b"GET /sse", b"GET /ss%65", 1),
        BROWSER_HEAD.replace(b"GET /sse", b"HEAD /sse", 1),
        BROWSER_HEAD.replace(b"channel=echo", b"channel=echo#top", 1),
        BROWSER_HEAD.replace(b"Accept: ", b"Accept:  x\r\n continued ", 1),  # folded
        BROWSER_HEAD.replace(b"no-cache", b"no-cache ", 1),  # trailing blank
        BROWSER_HEAD.replace(b"Cookie: a", b"Cookie: \xe9", 1),  # not ASCII
        BROWSER_HEAD.replace(b"Cookie: a", b"Cookie: \x00", 1),
        BROWSER_HEAD.replace(b"Host:", b"Ho st:", 1),
        BROWSER_HEAD.replace(b"\r\nAccept", b"\nAccept", 1),  # a bare line feed
        BROWSER_HEAD[:-2] + b"Content-Length: 0\r\n\r\n",
        BROWSER_HEAD[:-2] + b"Transfer-Encoding: chunked\r\n\r\n",
        BROWSER_HEAD[:-2] + b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        BROWSER_HEAD[:-2] + b"Expect: 100-continue\r\n\r\n",
        BROWSER_HEAD[:-2] + b"Connection: close\r\n\r\n",
        BROWSER_HEAD[:-2] + b"Connection: keep-alive, Upgrade\r\n\r\n",
    ],
)
def test_anything_but_a_plain_stream_head_is_left_to_uvicorn(data: bytes) -> None:
    assert StreamHead.parse(data) is None


def test_a_request_is_handed_on_as_soon_as_it_cannot_be_a_stream_request() -> None:
    assert may_be_stream_request(b"")
    assert may_be_stream_request(b"GE")
    assert may_be_stream_request(b"GET /sse?channel=a")
    assert may_be_stream_request(b"GET /sse?channel=a HTTP/1.1\r\nHost: t\r\nAcc")
    assert not may_be_stream_request(b"POST")
    assert not may_be_stream_request(b"GET /healthz")
    # A complete line that is not a plain one: uvicorn answers it now, not at the timeout.
    assert not may_be_stream_request(b"GET /sse?channel=a HTTP/1.0\r\n")
    assert not may_be_stream_request(b"GET /sse?channel=a HTTP/1.1\r\nX: \x01\r\nAcc")
    assert not may_be_stream_request(b"GET /sse?channel=a HTTP/1.1\r\nContent-Length: 3\r\n")
    assert not may_be_stream_request(b"GET /sse?channel=a HTTP/1.1\nHost")
    assert head_ended(b"GET /sse HTTP/1.1\r\n\r\nabc")  # a body after the head
    assert head_ended(b"GET /sse HTTP/1.1\n\n")
    assert not head_ended(b"GET /sse HTTP/1.1\r\nHost: t\r\n")


# -- against a gateway process -------------------------------------------------------


def read_until(sock: socket.socket, marker: bytes, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def open_streams(gateway: GatewayProcess) -> int:
    """Streams open, and subscribers the hub still holds (each should be none)."""
    stats = httpx.get(f"{gateway.base_url}/stats", timeout=5).json()
    return int(stats["streams"]["open"]) + int(stats["hub"]["subscribers"])


def wait_for_open_streams(gateway: GatewayProcess, count: int, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while open_streams(gateway) != count:
        assert time.monotonic() < deadline, f"{open_streams(gateway)} streams open, not {count}"
        time.sleep(0.05)


def test_a_head_sent_in_pieces_opens_the_same_stream(gateway: GatewayProcess) -> None:
    head = b"GET /sse?channel=pieces HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (head[:3], head[3:9], head[9:40], head[40:-1], head[-1:]):
            sock.sendall(piece)
            time.sleep(0.05)
        data = read_until(sock, b"\n\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked\r\n" in data
    assert b"id: pieces=" in data


def test_a_refused_stream_request_leaves_its_connection_open_for_the_next(
    gateway: GatewayProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        refused = read_until(sock, b"}}")
        head, _, body = refused.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert json.loads(body)["error"]["code"] == "no_channels"
        # The same connection serves another request, the way uvicorn serves it.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_until(sock, b'"ok"}').startswith(b"HTTP/1.1 200 OK\r\n")
        # And a stream after that.
        sock.sendall(b"GET /sse?channel=again HTTP/1.1\r\nHost: t\r\n\r\n")
        assert b"id: again=" in read_until(sock, b"\n\n")


def test_a_request_pipelined_behind_a_refusal_is_answered_after_it(
    gateway: GatewayProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        data = read_until(sock, b'"ok"}')
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert data.count(b"HTTP/1.1 ") == 2
    assert b"HTTP/1.1 200 OK\r\n" in data


def test_a_stream_head_over_the_limit_is_a_431(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(env={"SSE_MAX_HEADER_BYTES": "4096"})
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /sse?channel=big HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        data = read_until(sock, b"}}")
    assert data.startswith(b"HTTP/1.1 431 ")
    assert b"request_head_too_large" in data


def test_a_trickling_stream_head_is_closed_at_the_timeout(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(env={"SSE_HEADER_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        began = time.monotonic()
        sock.sendall(b"GET /sse?channel=slow HTTP/1.1\r\n")
        with contextlib.suppress(OSError):
            for _ in range(40):
                sock.sendall(b"X: a\r\n")
                time.sleep(0.1)
        data = read_until(sock, b"}}")
    assert data.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - began < 4


async def test_clients_gone_before_their_stream_opened_leave_nothing_open(
    gateway: GatewayProcess,
) -> None:
    head = b"GET /sse?channel=vanish HTTP/1.1\r\nHost: t\r\n\r\n"

    async def vanish(wait: bool) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(head)
        if wait:
            await writer.drain()
        transport = writer.transport
        transport.abort()  # RST, mid-open

    await asyncio.gather(*(vanish(n % 2 == 0) for n in range(200)))
    await asyncio.to_thread(wait_for_open_streams, gateway, 0)
    # The gateway still opens streams.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(head)
        assert b"id: vanish=" in read_until(sock, b"\n\n")


class _Written:
    """A transport that keeps what is written."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def _cycle(kind: type[Any], default_headers: list[tuple[bytes, bytes]]) -> Any:
    from uvicorn.protocols.http.flow_control import FlowControl

    transport = _Written()
    return kind(
        scope={"method": "GET", "path": "/sse", "query_string": b"", "http_version": "1.1"},
        transport=transport,
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=default_headers,
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )


async def test_a_stream_head_formatted_once_is_written_as_uvicorn_writes_it() -> None:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from gateway._fastpath.stream_cycle import StreamCycle

    default_headers = [(b"date", b"Wed, 02 Dec 2026 00:00:00 GMT"), (b"server", b"uvicorn")]
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")],
    }
    uvicorns, first, second = (
        _cycle(RequestResponseCycle, default_headers),
        _cycle(StreamCycle, default_headers),
        _cycle(StreamCycle, default_headers),
    )
    for cycle in (uvicorns, first, second):
        await cycle.send(dict(start))
        await cycle.send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    assert first.transport.data == second.transport.data == uvicorns.transport.data
    for cycle in (first, second):
        assert (cycle.response_started, cycle.chunked_encoding, cycle.keep_alive) == (
            True,
            True,
            True,
        )
    # Another second (a new default-header list) or other headers: formatted anew.
    later = _cycle(StreamCycle, [(b"date", b"Wed, 02 Dec 2026 00:00:01 GMT")])
    await later.send(dict(start))
    assert b"00:00:01" in later.transport.data
    refusal = _cycle(StreamCycle, default_headers)
    await refusal.send(
        {"type": "http.response.start", "status": 400, "headers": [(b"content-length", b"2")]}
    )
    assert refusal.transport.data.startswith(b"HTTP/1.1 400 ")
    assert refusal.chunked_encoding is False
