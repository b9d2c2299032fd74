"""``ClusterBroker``: the broker on a Redis Cluster, one sharded pub/sub link per master.

A channel's history key and live channel share its ``{channel}`` hash tag, so one
slot, one master, holds both. Live channels are grouped by that master: the process
keeps one ``_link.PubSubLink`` (``SSUBSCRIBE``) per master that owns a channel it
serves, never one per client. The slot map is redis-py's (``RedisCluster``'s nodes
manager), shared with the client that reads history, so a ``MOVED`` met by a read
refreshes it for the live flow too.

The map changes under the broker in three ways, all handled as a reconnect is on one
server (the channels' live flow is reported interrupted, then resumed, and every
stream on them reads history after its position):

- a slot moved to another master: the old master pushes ``sunsubscribe``; the channel
  is placed again (map refreshed, ``SSUBSCRIBE`` on its new master);
- a ``MOVED`` reply to ``SSUBSCRIBE`` (the map was stale) or a lost connection (a
  master failed): the link reports all its channels interrupted and, before it
  reconnects, the map is read again and the channels whose slot has another master
  now move to that master's link. A link left without channels on a node that is no
  longer a master ends;
- a master that never comes back: its channels stay with its link, which keeps
  retrying (reading the map each time) until the node returns or a replica is promoted.
  Streams on those channels stay open and get nothing; other shards are unaffected.

History pages are read with ``read.lua`` through the cluster client, which routes by
slot and follows ``MOVED``/``ASK``; outages and failovers (``CLUSTERDOWN``,
``TRYAGAIN``) are waited out (``_reads.PageReads``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contract.backoff import Backoff
from contract.redis_target import RedisMode, RedisTarget
from contract.wire import Keyspace, script_source
from gateway.broker._link import SHARDED, PubSubLink
from gateway.broker._reads import PageReads
from gateway.broker.interface import BrokerListener, BrokerStats, Page

log = logging.getLogger(__name__)

RETRYABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    asyncio.TimeoutError,
    ClusterError,  # CLUSTERDOWN, MASTERDOWN: a failover under way
    TryAgainError,  # a multi-key operation during a slot migration
    AskError,  # redirections that did not settle within one call (MOVED included)
    RedisClusterException,  # no node known for the slot yet
)
"""What a history read meets while a shard is away or moving: read again after a backoff."""

MAP_CHECK_INTERVAL = 5.0
"""Seconds between two reads of the slot map while channels are served: a master that
lost its slots without losing its connections is left within about this long."""


class ClusterBroker:
    """The live flow and history of channels on a Redis Cluster."""

    def __init__(
        self,
        target: RedisTarget,
        keyspace: Keyspace,
        *,
        backoff: Backoff,
        read_timeout: float = 5.0,
    ) -> None:
        self._target = target
        self._keyspace = keyspace
        self._backoff = backoff
        cluster = target.client(RedisMode.CLUSTER, socket_timeout=read_timeout)
        assert isinstance(cluster, RedisCluster)
        self._cluster = cluster
        self._reads = PageReads(
            cluster.register_script(script_source("read")),
            keyspace,
            backoff=backoff,
            retryable=RETRYABLE,
            where=target.describe(),
        )
        self._listener: BrokerListener | None = None
        self._links: dict[str, PubSubLink] = {}
        """One link per master node name (``host:port``) that carries or carried channels."""
        self._link_of: dict[bytes, PubSubLink] = {}
        """The link carrying each subscribed channel, by live name."""
        self._unplaced: dict[bytes, str] = {}
        """Subscribed channels waiting for a master (map unknown, or their slot just moved)."""
        self._place_wanted = asyncio.Event()
        self._placer: asyncio.Task[None] | None = None

    # -- the live flow -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def listening(self, listener: BrokerListener) -> AsyncIterator[None]:
        self._listener = listener
        self._placer = asyncio.create_task(self._place_forever(), name="cluster-placer")
        try:
            yield
        finally:
            await self._stop()

    @property
    def connected(self) -> bool:
        """Whether every shard this process serves is up (and every channel has one)."""
        return not self._unplaced and all(
            link.connected for link in self._links.values() if link.channels
        )

    async def subscribe(self, channel: str) -> None:
        live = self._keyspace.live_channel(channel).encode()
        node = self._owner(live)
        if node is None:
            self._unplaced[live] = channel
            self._place_wanted.set()
            return
        await self._add(self._link_for(node), live, channel)

    async def unsubscribe(self, channel: str) -> None:
        live = self._keyspace.live_channel(channel).encode()
        if self._unplaced.pop(live, None) is not None:
            return
        link = self._link_of.pop(live, None)
        if link is not None:
            await link.remove(live)

    def _owner(self, live: bytes) -> ClusterNode | None:
        """The master of ``live``'s slot in the map as last read, if the map has one."""
        try:
            return self._cluster.nodes_manager.get_node_from_slot(key_slot(live))
        except RedisClusterException:  # SlotNotCoveredError: no map yet, or no master
            return None

    def _link_for(self, node: ClusterNode) -> PubSubLink:
        link = self._links.get(node.name)
        if link is None:
            assert self._listener is not None, "subscribe() outside listening()"
            link = self._links[node.name] = PubSubLink(
                node_url(self._target.urls[0], node.host, int(node.port)),
                node.name,
                self._listener,
                backoff=self._backoff,
                commands=SHARDED,
                before_reconnect=self._before_reconnect,
                dropped=self._dropped,
            )
            link.start()
        return link

    async def _add(self, link: PubSubLink, live: bytes, channel: str) -> None:
        self._link_of[live] = link
        await link.add(live, channel)

    def _dropped(self, link: PubSubLink, live: bytes) -> None:
        """The node dropped a channel (``sunsubscribe`` pushed: its slot moved away)."""
        channel = link.forget(live)
        if channel is None or self._listener is None:
            return
        log.info(
            "channel's slot moved; resubscribing", extra={"node": link.node, "channel": channel}
        )
        self._link_of.pop(live, None)
        self._listener.interrupted([channel])
        self._unplaced[live] = channel
        self._place_wanted.set()

    async def _before_reconnect(self, link: PubSubLink) -> bool:
        """A link lost its connection (its channels are reported interrupted): read the map
        again, move the channels whose slot another master owns now; end the link if it
        has none left and its node is no longer a master."""
        await self._refresh()
        await self._rehome(link, link_up=False)
        if link.channels or self._is_master(link.node):
            return True
        if self._links.get(link.node) is link:
            del self._links[link.node]
        return False

    def _is_master(self, name: str) -> bool:
        node = self._cluster.nodes_manager.nodes_cache.get(name)
        return node is not None and node.server_type == "primary"

    async def _move(self, live: bytes, channel: str, node: ClusterNode) -> None:
        assert self._listener is not None
        await self._add(self._link_for(node), live, channel)
        # Entries published meanwhile did not arrive here: every stream reads history
        # (once the new master confirms the subscription).
        self._listener.resumed([channel])

    async def _refresh(self) -> bool:
        """Read the slot map again; False if no node answered."""
        try:
            await self._cluster.nodes_manager.initialize()
        except (*RETRYABLE, ValueError) as exc:
            log.debug("cluster map not read: %s", exc)
            return False
        return True

    async def _place_forever(self) -> None:
        """Give every unplaced channel to its master's link, reading the map first; and
        every ``MAP_CHECK_INTERVAL``, move channels whose slot has another master now."""
        attempt = 0
        while True:
            try:
                await asyncio.wait_for(self._place_wanted.wait(), MAP_CHECK_INTERVAL)
            except TimeoutError:
                if not await self._map_moved():
                    continue
            self._place_wanted.clear()
            if await self._refresh():
                await self._follow_map()
                for live, channel in list(self._unplaced.items()):
                    node = self._owner(live)
                    if node is not None and self._unplaced.pop(live, None) is not None:
                        await self._move(live, channel, node)
            if not self._unplaced:
                attempt = 0
                continue
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1
            self._place_wanted.set()

    async def _map_moved(self) -> bool:
        """Whether a node's view of the cluster (``CLUSTER SLOTS`` on any node) gives a
        served channel's slot to another master than the link that carries it. Cheaper
        than reading the whole map again, which makes redis-py reconnect every node."""
        served = [(live, link.node) for link in self._links.values() for live in link.channels]
        if not served:
            return False
        try:
            slots: dict[tuple[int, int], dict[str, Any]] = await self._cluster.execute_command(
                "CLUSTER SLOTS", target_nodes=RedisCluster.RANDOM
            )
        except RETRYABLE as exc:
            log.debug("cluster map not checked: %s", exc)
            return False
        for live, node in served:
            slot = key_slot(live)
            for (first, last), owners in slots.items():
                if first <= slot <= last:
                    host, port = owners["primary"]
                    if f"{host}:{port}" != node:
                        return True
        return False

    async def _follow_map(self) -> None:
        """Move the channels whose slot the map (just read) gives another master, from links
        that still look fine: a master cut off from the rest of the cluster (paused, or on
        the wrong side of a partition) may keep its connections up long after a replica
        took its slots over, and nothing published there would ever arrive."""
        for link in list(self._links.values()):
            await self._rehome(link, link_up=True)

    async def _rehome(self, link: PubSubLink, *, link_up: bool) -> None:
        """Move ``link``'s channels whose slot the map gives another master to that master's
        link. ``link_up``: ``link`` still carries them (its connection looks fine), so their
        interruption is told here and they are unsubscribed there; else the lost connection
        has told it already."""
        assert self._listener is not None
        for live in list(link.channels):
            node = self._owner(live)
            if node is None or node.name == link.node:
                continue
            channel = link.forget(live)
            assert channel is not None
            log.info(
                "channel's slot has a new master",
                extra={"node": node.name, "was": link.node, "channel": channel},
            )
            if link_up:
                self._listener.interrupted([channel])
            await self._move(live, channel, node)
            if link_up:
                await link.release(live)

    async def _stop(self) -> None:
        placer, self._placer = self._placer, None
        if placer is not None:
            placer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await placer
        for link in list(self._links.values()):
            await link.stop()
        self._listener = None

    # -- history ---------------------------------------------------------------

    async def read_page(self, channel: str, after: bytes | None, count: int) -> Page:
        return await self._reads.after(channel, after, count)

    async def read_page_before(self, channel: str, before: bytes | None, count: int) -> Page:
        return await self._reads.before(channel, before, count)

    async def ping(self) -> None:
        """Raise unless every shard this process serves answers (readiness)."""
        down = [link.node for link in self._links.values() if link.channels and not link.connected]
        if down or self._unplaced:
            raise RedisConnectionError(f"shards unreachable: {', '.join(down) or 'no map'}")
        await self._cluster.initialize()
        served = [
            node
            for name, link in self._links.items()
            if link.channels and (node := self._cluster.get_node(node_name=name)) is not None
        ]
        if served:  # their history is read there
            await self._cluster.execute_command("PING", target_nodes=served)
            return
        # No shard served yet: any master answering will do (a dead one serves nobody here).
        error: BaseException = RedisConnectionError("no master in the cluster map")
        for node in self._cluster.get_primaries():
            try:
                await self._cluster.execute_command("PING", target_nodes=node)
                return
            except RETRYABLE as exc:
                error = exc
        raise error

    def stats(self) -> BrokerStats:
        links = sorted(self._links.values(), key=lambda link: link.node)
        return BrokerStats(mode="cluster", nodes=tuple(link.stats() for link in links))

    async def aclose(self) -> None:
        await self._stop()
        await self._cluster.aclose()


def node_url(template: str, host: str, port: int) -> str:
    """``template`` (a seed URL: scheme, credentials, TLS options) pointed at ``host:port``."""
    parts = urlsplit(template)
    credentials = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    netloc = f"{credentials}@{address}" if credentials else address
    return urlunsplit((parts.scheme, netloc, "", parts.query, ""))
