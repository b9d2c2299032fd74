"""The broker seam: what the rest of the gateway needs from Redis, whatever its shape.

A ``Broker`` carries two flows. The live flow: channels are subscribed and
unsubscribed by name, and every entry published on a subscribed channel is
handed to one ``BrokerListener`` (the hub), together with the changes of the
flow's state: a subscription confirmed, the flow interrupted for some channels,
the flow back (entries may have been missed meanwhile). History: a page of a
channel's entries after (or before) a position, with the channel's tip, read
atomically.

``RedisBroker`` (``gateway.broker.standalone``) implements it on one Redis
server; a cluster broker implements it again with one connection per shard.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.broker.entry import Entry


class HistoryRefused(Exception):
    """Redis refused to read a channel's history after a position (an error reply, not an
    outage): the position cannot be read from, whatever it names."""


@dataclass(frozen=True, slots=True)
class Page:
    """Entries next to a position (oldest first), and the channel's tip (its last id ever)
    when they were read."""

    tip: bytes
    entries: tuple[Entry, ...]
    linked: bool = False
    """Every entry's predecessor is the entry before it (``HistoryReader`` checks it once):
    a stream at the first one's predecessor takes the page whole."""


@dataclass(frozen=True, slots=True)
class NodeStats:
    """One Redis node's pub/sub connection: its state and counters since the process began."""

    node: str
    """The server's address (``host:port``, or a socket path)."""
    connected: bool
    reconnects: int
    """Times the connection was lost (and made again)."""
    messages: int
    """Live messages received."""
    malformed_skipped: int
    """Live messages that did not decode, skipped."""


@dataclass(frozen=True, slots=True)
class BrokerStats:
    """What a broker reports of its connections: one ``NodeStats`` per node it reads from."""

    mode: str
    nodes: tuple[NodeStats, ...]

    def as_dict(self) -> dict[str, Any]:
        """``/stats``'s ``redis`` section: totals over the nodes, then each node."""
        nodes = self.nodes
        return {
            "mode": self.mode,
            "connected": all(node.connected for node in nodes),
            "reconnects": sum(node.reconnects for node in nodes),
            "messages": sum(node.messages for node in nodes),
            "malformed_skipped": sum(node.malformed_skipped for node in nodes),
            "nodes": [
                {
                    "node": node.node,
                    "connected": node.connected,
                    "reconnects": node.reconnects,
                    "messages": node.messages,
                    "malformed_skipped": node.malformed_skipped,
                }
                for node in nodes
            ],
        }


class BrokerListener(Protocol):
    """Told, in order, everything that happens to the live flow (the hub)."""

    def live_entry(self, entry: Entry) -> None:
        """An entry published on a subscribed channel."""
        ...

    def subscribed(self, channel: str) -> None:
        """Redis confirmed the subscription: every entry published from now on arrives."""
        ...

    def interrupted(self, channels: Collection[str]) -> None:
        """The live flow of these channels stopped (a connection was lost)."""
        ...

    def resumed(self, channels: Collection[str]) -> None:
        """The live flow of these channels is back; entries published meanwhile did not arrive."""
        ...


class Broker(Protocol):
    """Redis as the gateway uses it: the live flow of subscribed channels and their history."""

    def listening(self, listener: BrokerListener) -> AbstractAsyncContextManager[None]:
        """Run the live flow into ``listener`` until the block ends (connects, reconnects)."""
        ...

    async def subscribe(self, channel: str) -> None:
        """Start the live flow of ``channel``; ``BrokerListener.subscribed`` confirms it."""
        ...

    async def unsubscribe(self, channel: str) -> None:
        """Stop the live flow of ``channel``."""
        ...

    async def read_page(self, channel: str, after: bytes | None, count: int) -> Page:
        """Up to ``count`` entries after ``after`` (None: from the earliest retained).

        Waits through outages (retrying with backoff) rather than failing the caller;
        raises ``HistoryRefused`` if Redis answers with an error."""
        ...

    async def read_page_before(self, channel: str, before: bytes | None, count: int) -> Page:
        """Up to ``count`` entries just before ``before`` (None: the newest), oldest first.

        Reads backwards (the history API's paging back); waits through outages as
        ``read_page`` does."""
        ...

    async def ping(self) -> None:
        """Return if Redis answers now; raise otherwise (readiness)."""
        ...

    @property
    def connected(self) -> bool:
        """Whether the live flow is up for every subscribed channel."""
        ...

    def stats(self) -> BrokerStats:
        """Connection state and counters per node, for ``/stats`` and ``/metrics``."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...
