"""The long-lived resources of a gateway process, opened and closed by the app's lifespan.

This is where the parts meet: the broker (Redis), the history reader over it,
the hub that listens to the broker, the open streams and the factory of their
responses, and the Prometheus export that reads them all. Nothing here is
created at import; everything is closed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from contract.backoff import Backoff
from contract.redis_target import UNREACHABLE, RedisMode, RedisTarget
from contract.wire import Keyspace
from gateway._fastpath import FastPath, server_exiting
from gateway.broker import Broker, ClusterBroker, HistoryReader, RedisBroker
from gateway.fanout import Hub
from gateway.gc_tuning import tune_for_streams
from gateway.metrics import Metrics
from gateway.metrics.multiprocess import ENV as MULTIPROCESS_DIR
from gateway.metrics.prometheus import PrometheusExport, Sample
from gateway.resume import StreamOptions
from gateway.settings import GatewaySettings
from gateway.sse import OpenStreams, StreamResponses
from producers.publisher import Publisher

log = logging.getLogger(__name__)

SHUTDOWN_POLL = 0.1
PUBLISHES_IN_FLIGHT = 256

STREAM_HEADERS = {"Access-Control-Expose-Headers": "Content-Type"}


@dataclass
class Runtime:
    settings: GatewaySettings
    broker: Broker
    hub: Hub
    history: HistoryReader
    streams: OpenStreams
    responses: StreamResponses
    stream_options: StreamOptions
    metrics: Metrics
    export: PrometheusExport | None = None
    """``GET /metrics``; None when SSE_METRICS is off."""
    publisher: Publisher | None = None
    """The producers' publisher, for HTTP publish (None unless SSE_HTTP_PUBLISH)."""
    publish_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(PUBLISHES_IN_FLIGHT)
    )
    """HTTP publishes running at once: each may hold a Redis connection of its own."""
    draining: bool = False

    def drain(self) -> None:
        """Stop serving: every stream gets a short retry hint and closes."""
        if not self.draining:
            self.draining = True
            log.info("draining", extra={"streams": self.streams.open})
            self.hub.close_all("shutdown")

    def sample(self) -> Sample:
        """The gauges of this process now, for the Prometheus export."""
        hub = self.hub.stats()
        return Sample(
            streams_open=self.streams.open,
            channels=hub.channels,
            grouped=hub.grouped,
            own=hub.streams - hub.grouped,
            groups=hub.groups,
            draining=self.draining,
            nodes=self.broker.stats().nodes,
            channel_streams=(
                self.hub.streams_per_channel() if self.metrics.channels is not None else {}
            ),
        )


@contextlib.asynccontextmanager
async def open_runtime(
    settings: GatewaySettings, fast_path: FastPath, metrics: Metrics
) -> AsyncIterator[Runtime]:
    """Open the broker, the hub and the history reader; close all of them on exit."""
    tune_for_streams()
    backoff = Backoff(settings.redis_backoff_initial, settings.redis_backoff_max)
    broker = await open_broker(settings, backoff)
    history = HistoryReader(
        broker,
        cache_pages=settings.history_cache_pages,
        cache_bytes=settings.history_cache_bytes,
        metrics=metrics,
    )
    hub = Hub(
        broker,
        max_buffer_events=settings.client_buffer_events,
        max_buffer_bytes=settings.client_buffer_bytes,
        flush_interval=settings.flush_interval_ms / 1000,
        metrics=metrics,
    )
    # Its own Redis client: publishes never queue behind history reads, nor these behind them.
    publisher = (
        settings.publisher(settings.redis_url, prefix=settings.key_prefix, mode=settings.redis_mode)
        if settings.http_publish
        else None
    )
    try:
        async with broker.listening(hub), OpenStreams(settings.ping_interval, metrics) as streams:
            runtime = Runtime(
                settings=settings,
                broker=broker,
                hub=hub,
                history=history,
                streams=streams,
                responses=StreamResponses(
                    streams=streams,
                    fast_path=fast_path,
                    send_timeout=settings.send_timeout,
                    tcp_nodelay=settings.tcp_nodelay,
                    metrics=metrics,
                    send_buffer=settings.send_buffer_bytes or None,
                    headers=STREAM_HEADERS,
                ),
                stream_options=StreamOptions(
                    retry_ms=settings.retry_ms,
                    shutdown_retry_ms=settings.shutdown_retry_ms,
                    page_size=settings.history_page_size,
                    metrics=metrics,
                ),
                metrics=metrics,
                publisher=publisher,
            )
            async with _exported(runtime):
                watcher = asyncio.create_task(_watch_shutdown(runtime), name="shutdown-watcher")
                try:
                    yield runtime
                finally:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                    runtime.drain()
                    hub.close()
    finally:
        await history.aclose()
        await broker.aclose()
        if publisher is not None:
            await publisher.aclose()


async def open_broker(settings: GatewaySettings, backoff: Backoff) -> Broker:
    """The broker for the Redis at ``REDIS_URL``: one server's, or a Redis Cluster's.

    The mode is the server's (``INFO cluster``), checked against ``SSE_REDIS_MODE``. If
    no node answers yet, the gateway starts anyway (it waits for Redis like after an
    outage) with the forced mode, else a cluster for a seed list and one server for one URL.
    """
    target = RedisTarget.parse(settings.redis_url, settings.redis_mode)
    keyspace = Keyspace(settings.key_prefix)
    try:
        mode = await target.detect_mode()
    except UNREACHABLE as exc:
        mode = target.forced_mode or (
            RedisMode.CLUSTER if target.is_seed_list else RedisMode.STANDALONE
        )
        log.warning(
            "redis not reachable at start; assuming %s (SSE_REDIS_MODE sets it)",
            mode,
            extra={"redis": target.describe(), "error": str(exc) or type(exc).__name__},
        )
    if mode is RedisMode.CLUSTER:
        return ClusterBroker(target, keyspace, backoff=backoff)
    return RedisBroker(target.urls[0], keyspace, backoff=backoff)


@contextlib.asynccontextmanager
async def _exported(runtime: Runtime) -> AsyncIterator[None]:
    """The runtime's Prometheus export, kept in sync while the block runs (SSE_METRICS)."""
    if not runtime.settings.metrics:
        yield
        return
    export = runtime.export = PrometheusExport(
        runtime.metrics, runtime.sample, multiprocess_dir=os.environ.get(MULTIPROCESS_DIR)
    )
    syncing = asyncio.create_task(export.keep_synced(), name="metrics-sync")
    try:
        yield
    finally:
        syncing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await syncing
        export.close()


async def _watch_shutdown(runtime: Runtime) -> None:
    """Drain as soon as the server is told to exit (SIGTERM or SIGINT)."""
    # The sources are plain flags set from uvicorn's signal handler: there is nothing to await.
    while not server_exiting():  # noqa: ASYNC110
        await asyncio.sleep(SHUTDOWN_POLL)
    runtime.drain()
    # Streams whose client stopped reading cannot take their hint: end them when time is up.
    await asyncio.sleep(runtime.settings.shutdown_grace_period)
    runtime.streams.cancel_all()
