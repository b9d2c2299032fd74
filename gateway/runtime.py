"""The long-lived resources of a gateway process, created and closed by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis
from sse_starlette.sse import AppStatus

from contract.backoff import Backoff
from contract.wire import Keyspace
from gateway.broker.history import HistoryReader
from gateway.fanout.hub import Hub
from gateway.gc_tuning import tune_for_streams
from gateway.resume.subscription import StreamOptions
from gateway.settings import GatewaySettings
from gateway.sse.open_streams import OpenStreams

log = logging.getLogger(__name__)

SHUTDOWN_POLL = 0.1


@dataclass
class Runtime:
    settings: GatewaySettings
    redis: Redis
    hub: Hub
    history: HistoryReader
    streams: OpenStreams
    stream_options: StreamOptions
    draining: bool = False

    def drain(self) -> None:
        """Stop serving: every stream gets a short retry hint and closes."""
        if not self.draining:
            self.draining = True
            log.info("draining %d streams", self.streams.open)
            self.hub.close_all("shutdown")


@contextlib.asynccontextmanager
async def open_runtime(settings: GatewaySettings) -> AsyncIterator[Runtime]:
    """Open Redis, the hub and the history reader; close all of them on exit."""
    tune_for_streams()
    keyspace = Keyspace(settings.key_prefix)
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0)
    history = HistoryReader(
        redis,
        keyspace,
        cache_pages=settings.history_cache_pages,
        cache_bytes=settings.history_cache_bytes,
        backoff=Backoff(settings.redis_backoff_initial, settings.redis_backoff_max),
    )
    hub = Hub(
        settings.redis_url,
        keyspace,
        max_buffer_events=settings.client_buffer_events,
        max_buffer_bytes=settings.client_buffer_bytes,
        flush_interval=settings.flush_interval_ms / 1000,
        backoff_initial=settings.redis_backoff_initial,
        backoff_max=settings.redis_backoff_max,
    )
    try:
        async with (
            hub,
            OpenStreams(settings.ping_interval, tcp_nodelay=settings.tcp_nodelay) as streams,
        ):
            runtime = Runtime(
                settings=settings,
                redis=redis,
                hub=hub,
                history=history,
                streams=streams,
                stream_options=StreamOptions(
                    retry_ms=settings.retry_ms,
                    shutdown_retry_ms=settings.shutdown_retry_ms,
                    page_size=settings.history_page_size,
                ),
            )
            watcher = asyncio.create_task(_watch_shutdown(runtime), name="shutdown-watcher")
            try:
                yield runtime
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                runtime.drain()
    finally:
        await history.aclose()
        await redis.aclose()


async def _watch_shutdown(runtime: Runtime) -> None:
    """Drain as soon as the server is told to exit (SIGTERM or SIGINT)."""
    # Both sources are plain flags set from uvicorn's signal handler: there is nothing to await.
    while not server_exiting():  # noqa: ASYNC110
        await asyncio.sleep(SHUTDOWN_POLL)
    runtime.drain()
    # Streams whose client stopped reading cannot take their hint: end them when time is up.
    await asyncio.sleep(runtime.settings.shutdown_grace_period)
    runtime.streams.cancel_all()


def server_exiting() -> bool:
    """Whether uvicorn has been told to exit.

    sse-starlette's ``AppStatus`` flag is set by its patch of uvicorn's ``Server.handle_exit``,
    which only takes hold when sse-starlette is imported before uvicorn installs its signal
    handlers. A ``--workers`` child imports the app afterwards, so the flag stays unset there;
    the server behind the installed SIGTERM handler is asked too (sse-starlette's own watcher
    does the same, sysid/sse-starlette#132).
    """
    if AppStatus.should_exit:
        return True
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))
