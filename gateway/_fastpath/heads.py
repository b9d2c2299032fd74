"""Limits on request heads, for ``LeanHttpProtocol``: size, time, and how many wait at once.

httptools has none of h11's limits. A connection is *waiting* from when it opens (or
its last response ended) until its request head is complete; while it waits it holds
a descriptor and the head's bytes and is not a stream yet. Each waiting connection
may send at most ``max_bytes`` (then a 431) within ``timeout`` seconds (then a 408);
at most ``max_waiting`` wait at once, the oldest dropped for a new one, so that idle
or trickling connections can neither hold memory nor use up the descriptors a health
check or a stream needs.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from typing import Protocol


class Waiting(Protocol):
    """A connection waiting for its request head (``LeanHttpProtocol``)."""

    def drop_waiting(self) -> None:
        """Close the connection now: newer connections need its place."""
        ...


@dataclass(frozen=True)
class HeadLimits:
    """The limits, and the responses that say a head broke them."""

    max_bytes: int
    timeout: float
    max_waiting: int
    too_large: bytes
    """A complete HTTP response (431) for a head over ``max_bytes``."""
    too_slow: bytes
    """A complete HTTP response (408) for a head not complete within ``timeout``."""
    waiting: WaitingConnections = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "waiting", WaitingConnections(self.max_waiting))


class WaitingConnections:
    """The connections waiting for a request head, oldest first; never more than a bound."""

    __slots__ = ("_connections", "bound", "dropped")

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._connections: dict[Waiting, None] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._connections)

    def add(self, connection: Waiting) -> None:
        connections = self._connections
        while len(connections) >= self.bound:
            oldest = next(iter(connections))
            del connections[oldest]
            self.dropped += 1
            oldest.drop_waiting()
        connections[connection] = None

    def discard(self, connection: Waiting) -> None:
        self._connections.pop(connection, None)


def waiting_bound(wanted: int) -> int:
    """``wanted``, but at most half the descriptors this process may open: the other half
    is for streams, Redis and the process itself."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft // 2))


def http_response(status: int, reason: str, body: bytes) -> bytes:
    """A whole HTTP/1.1 response with a JSON body that closes its connection."""
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, reason.encode(), len(body), body)
    )
