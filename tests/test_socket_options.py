"""A stream's socket options and addresses, read without a socket object per call.

``socket_options`` sets options with libc's ``setsockopt`` on the descriptor and takes
addresses from what the loop read when the connection was made; these check, on a
real uvloop connection, that the options land on the socket and the addresses are
uvicorn's.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import uvloop
from uvicorn.protocols.utils import get_local_addr, get_remote_addr

from gateway._fastpath.socket_options import address, set_int_option


class _Accepted(asyncio.Protocol):
    def __init__(self, made: asyncio.Future[asyncio.Transport]) -> None:
        self._made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._made.set_result(transport)  # type: ignore[arg-type]  # uvloop's is no subclass


async def _accepted_transport() -> AsyncIterator[tuple[asyncio.Transport, socket.socket]]:
    loop = asyncio.get_running_loop()
    made: asyncio.Future[asyncio.Transport] = loop.create_future()
    server = await loop.create_server(lambda: _Accepted(made), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    try:
        transport = await asyncio.wait_for(made, 10)
        yield transport, client
        transport.abort()
    finally:
        client.close()
        server.close()
        await server.wait_closed()


def _run(body: object) -> None:
    async def main() -> None:
        async for transport, client in _accepted_transport():
            await body(transport, client)  # type: ignore[operator]

    uvloop.run(main())


def test_options_land_on_the_connections_socket() -> None:
    async def body(transport: asyncio.Transport, client: socket.socket) -> None:
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0  # uvloop's default
        set_int_option(transport, socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        set_int_option(transport, socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        after = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        assert after != before
        assert after == 2 * 16384  # Linux doubles what it is given, for its bookkeeping

    _run(body)


def test_addresses_are_the_ones_uvicorn_reads() -> None:
    async def body(transport: asyncio.Transport, client: socket.socket) -> None:
        assert address(transport, "sockname") == get_local_addr(transport)
        assert address(transport, "peername") == get_remote_addr(transport)
        assert address(transport, "peername") == client.getsockname()

    _run(body)


def test_a_closed_connection_is_left_alone() -> None:
    async def body(transport: asyncio.Transport, client: socket.socket) -> None:
        transport.abort()
        await asyncio.sleep(0)  # the handle is closed on the loop's next turn
        set_int_option(transport, socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)  # no error

    _run(body)


@pytest.mark.parametrize("info", [None, "/tmp/gateway.sock", ("::1",)])
def test_an_address_that_is_not_host_and_port_is_none(info: object) -> None:
    class Transport(asyncio.BaseTransport):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return info

    assert address(Transport(), "peername") is None
