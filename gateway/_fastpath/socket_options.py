"""A connection's addresses and socket options without a Python socket object per call.

uvloop hands out a transport's socket as a ``PseudoSocket``, and each of its methods
builds a ``socket.socket`` on the descriptor for the one call: CPython checks the new
object's descriptor with a ``getsockname`` of its own, so uvicorn's ``get_local_addr``
and ``get_remote_addr`` and one ``setsockopt`` cost seven syscalls and three socket
objects for every new stream. uvloop (like asyncio) already read both addresses when
the connection was made and answers ``get_extra_info("sockname"/"peername")`` from
that; a socket option is set with libc's ``setsockopt`` on the descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
from typing import Any


def address(transport: asyncio.BaseTransport, name: str) -> tuple[str, int] | None:
    """The transport's ``name`` (``"sockname"`` or ``"peername"``) as uvicorn puts it in
    the scope: ``(host, port)``, or None for a socket without one (a Unix socket)."""
    info: Any = transport.get_extra_info(name)
    if isinstance(info, tuple | list) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def _libc_setsockopt() -> Any:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        setsockopt = libc.setsockopt
        setsockopt.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_uint32,
        )
        setsockopt.restype = ctypes.c_int
        return setsockopt
    return None


_SETSOCKOPT = _libc_setsockopt()


def set_int_option(transport: asyncio.BaseTransport, level: int, option: int, value: int) -> None:
    """Set an integer socket option of the transport's socket; errors are ignored (the
    connection may be closing), as is a transport without a socket."""
    sock: Any = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        descriptor = sock.fileno()
        if descriptor < 0:
            return
        if _SETSOCKOPT is None:
            sock.setsockopt(level, option, value)
            return
        number = ctypes.c_int(value)
        _SETSOCKOPT(descriptor, level, option, ctypes.byref(number), ctypes.sizeof(number))
