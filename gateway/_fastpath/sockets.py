"""The socket under a transport, borrowed for a few calls, and a connection's addresses.

uvloop's transports hand out a ``PseudoSocket`` whose every ``getsockname``,
``getpeername`` and ``setsockopt`` builds a Python ``socket.socket`` around the
descriptor and detaches it again: two Python-level calls of ``socket.py`` per
system call, a few thousand instructions each, three times for every new stream.
``borrow`` makes one C-level socket object for a stream's calls instead.
"""

from __future__ import annotations

import _socket
import asyncio
from typing import Any

Address = tuple[str, int]


def borrow(transport: asyncio.BaseTransport) -> _socket.socket | None:
    """The transport's socket as a plain socket object (None: the transport has none).
    The caller must ``detach()`` it when done: closed, it would close the connection."""
    info: Any = transport.get_extra_info("socket")
    if info is None:
        return None
    return _socket.socket(info.family, info.type, info.proto, info.fileno())


def set_option(transport: asyncio.BaseTransport, level: int, option: int, value: int) -> None:
    """``setsockopt`` on the transport's socket; failures are ignored (a closing socket)."""
    sock = borrow(transport)
    if sock is not None:
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            pass
        finally:
            sock.detach()


def addresses(sock: _socket.socket) -> tuple[tuple[str, int | None] | None, Address | None]:
    """(server, client) of a connected socket, as uvicorn's ``get_local_addr`` and
    ``get_remote_addr`` put them in the scope."""
    local = sock.getsockname()
    if isinstance(local, tuple):
        server: tuple[str, int | None] | None = (str(local[0]), int(local[1]))
    elif isinstance(local, str):
        server = (local, None)
    else:
        server = None
    try:
        peer = sock.getpeername()
    except OSError:
        return server, None
    client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
    return server, client
