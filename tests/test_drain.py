"""Graceful drain at scale: SIGTERM with well over a thousand open streams.

Every stream must end cleanly (the response's terminating chunk, not a cut
connection) after a short ``retry:`` hint and a ``reconnect`` event, and the process
must exit with status 0, all within SSE_SHUTDOWN_GRACE_PERIOD.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable

import pytest

from tests.support.paths import ALL_PATHS, StreamPath
from tests.support.processes import GatewayProcess
from tests.support.raw_streams import RawStream, ensure_open_files, open_many
from tests.support.sse import Frame


@pytest.fixture(params=ALL_PATHS, ids=lambda path: path.name)
def stream_path(request: pytest.FixtureRequest) -> StreamPath:
    """Every test here runs on the fast path and on both stock paths."""
    path: StreamPath = request.param
    return path


STREAMS = 1200
GRACE_PERIOD = 5.0
SHUTDOWN_RETRY_MS = 300
CHANNELS = [f"drain.{n}" for n in range(8)]


def channel_sets(count: int) -> list[list[str]]:
    """Mostly one channel per stream; every tenth stream merges two (aiostream's path)."""
    sets = []
    for n in range(count):
        first = CHANNELS[n % len(CHANNELS)]
        sets.append([first, CHANNELS[(n + 1) % len(CHANNELS)]] if n % 10 == 0 else [first])
    return sets


def assert_closed_with_retry_hint(frames: list[Frame]) -> None:
    assert len(frames) >= 3, frames
    opening, hint, goodbye = frames[0], frames[-2], frames[-1]
    assert opening.id is not None
    assert not opening.has_data
    assert hint.retry == SHUTDOWN_RETRY_MS
    assert goodbye.event == "reconnect"
    assert json.loads(goodbye.data) == {"reason": "shutdown", "retry_ms": SHUTDOWN_RETRY_MS}
    assert goodbye.id == opening.id, "the cursor to resume from"


async def test_sigterm_closes_every_stream_with_a_retry_hint_within_the_grace_period(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    ensure_open_files(2 * STREAMS + 512)  # the client's sockets and, inherited, the gateway's
    gateway = gateway_factory(
        env={
            "SSE_SHUTDOWN_GRACE_PERIOD": str(GRACE_PERIOD),
            "SSE_SHUTDOWN_RETRY_MS": str(SHUTDOWN_RETRY_MS),
        }
    )
    streams = await open_many(gateway.port, channel_sets(STREAMS), concurrency=50, timeout=60)
    try:
        stats = await asyncio.to_thread(gateway.stats)
        assert stats["streams"]["open"] == STREAMS  # type: ignore[index]

        loop = asyncio.get_running_loop()
        ended_at: list[float] = []

        async def follow(stream: RawStream) -> list[Frame]:
            frames = await stream.read_to_end()
            ended_at.append(loop.time())
            return frames

        def wait_for_exit() -> tuple[int, float]:
            status = gateway.wait(timeout=GRACE_PERIOD + 15)
            return status, time.monotonic()

        readers = [asyncio.create_task(follow(stream)) for stream in streams]
        signalled, signalled_loop = time.monotonic(), loop.time()
        gateway.signal(signal.SIGTERM)
        status, exited = await asyncio.to_thread(wait_for_exit)
        all_frames = await asyncio.wait_for(asyncio.gather(*readers), timeout=10)
    finally:
        for stream in streams:
            stream.close()

    assert status == 0, gateway.log()[-3000:]
    assert exited - signalled < GRACE_PERIOD, f"exited {exited - signalled:.1f}s after SIGTERM"
    assert max(ended_at) - signalled_loop < GRACE_PERIOD
    for frames in all_frames:
        assert_closed_with_retry_hint(frames)
    assert "timeout graceful shutdown exceeded" not in gateway.log()
