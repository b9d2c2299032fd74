"""The systems under test: how each is started, addressed, published to and inspected.

- ``ours``: ``python -m gateway`` with its own redis-server.
- ``seed``: ``bench/baselines/seed_app.py`` under uvicorn, with its own redis-server.
- ``nchan``: nginx with Debian's nchan module (memory store, no Redis).
- ``floor``: ``bench/baselines/floor_server.py``, a uvloop protocol that answers a new
  stream as our gateway does and nothing else (no Redis): the reconnect storm's reference.

Servers run pinned to the server core; redis-server runs on the client core
with the load generator, so the server core measures the server alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from redis.asyncio import Redis

from bench import callgrind
from bench.baselines import nchan
from bench.procs import (
    PYTHON,
    SERVER_CORE,
    Proc,
    free_port,
    pinned,
    running,
    start_process,
    start_redis,
    wait_for_port,
)
from bench.procstat import TreeUsage, tree_usage
from bench.publisher import GatewaySink, NchanSink, RedisPublishSink, Sink

SYSTEMS = ("ours", "seed", "nchan", "floor")
STORM_ONLY = ("floor",)
"""Systems that only open streams: measured in the reconnect storm alone."""
START_SECONDS = 30.0
"""How long a server may take to listen and then to be ready."""
WORKERS_START_SECONDS = 120.0
"""With ``--workers`` the port accepts only once a worker serves: a spawned interpreter that
imports everything again, 20-30 s on a busy two-core machine."""
CALLGRIND_START_SECONDS = 240.0
IDLE_FDS = 64
"""The floor server's descriptors with no stream open are fewer (listener, epoll, stdio)."""
LABELS = {
    "ours": "redis-sse-gateway",
    "seed": "seed-style FastAPI (pub/sub per client)",
    "nchan": "nginx + nchan",
    "floor": "Python floor (uvloop protocol, no logic)",
}


class Unsupported(ValueError):
    """The system cannot do what a scenario asks (e.g. several channels per stream)."""


async def http_get(port: int, target: str, headers: Sequence[str] = ()) -> tuple[int, bytes]:
    """A one-shot ``GET`` on 127.0.0.1 (``Connection: close``): status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        extra = "".join(f"{h}\r\n" for h in headers)
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n".encode()
        )
        raw = await asyncio.wait_for(reader.read(), 10.0)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return int(head.split(b" ", 2)[1]), body


def _dechunk(body: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    while True:
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2


@dataclass
class Server:
    """A running system under test."""

    system: str
    port: int
    proc: Proc
    redis_proc: Proc | None = None
    redis_url: str | None = None
    workers: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    instructions: callgrind.Counter | None = None
    """Counts the server's instructions block by block (``started(count_instructions=True)``)."""

    @property
    def label(self) -> str:
        return LABELS[self.system] + (f" ({self.workers} workers)" if self.workers > 1 else "")

    @property
    def ready_on(self) -> str:
        """When the load generator may count a stream as open: our gateway sends its
        first bytes (retry hint and cursor) only once the stream is subscribed; the floor
        sends them with its head, in the same write."""
        return "body" if self.system in ("ours", "floor") else "head"

    @property
    def counts_subscriptions(self) -> bool:
        """Whether ``subscriptions`` sees every stream (ours: one worker's /stats only)."""
        return self.system != "ours" or self.workers == 1

    def usage(self) -> TreeUsage:
        """CPU, RSS, fds and threads of the server's process tree."""
        return tree_usage(self.proc.pid)

    def redis_usage(self) -> TreeUsage | None:
        return tree_usage(self.redis_proc.pid) if self.redis_proc is not None else None

    def sse_path(self, channels: Sequence[str]) -> str:
        if self.system == "ours":
            return "/sse?" + urlencode([("channel", c) for c in channels])
        if len(channels) == 1:
            return "/sse?" + urlencode({"channel": channels[0]})
        if self.system == "nchan" and len(channels) == 2:
            return "/sse2?" + urlencode({"a": channels[0], "b": channels[1]})
        raise Unsupported(f"{self.system} streams carry one channel")

    def sink(self) -> Sink:
        if self.system in STORM_ONLY:
            raise Unsupported(f"{self.system} publishes nothing")
        if self.system == "ours":
            assert self.redis_url is not None
            return GatewaySink(self.redis_url)
        if self.system == "seed":
            assert self.redis_url is not None
            return RedisPublishSink(self.redis_url)
        return NchanSink(self.port)

    async def subscriptions(self, channels: Sequence[str]) -> int:
        """Live subscriptions on ``channels`` (each stream counts once per channel)."""
        if self.system == "ours":
            # /stats counts subscriptions over all channels; scenarios wait for idle first.
            status, body = await http_get(self.port, "/stats")
            return int(json.loads(body)["hub"]["subscribers"]) if status == 200 else 0
        if self.system == "seed":
            assert self.redis_url is not None
            async with Redis.from_url(self.redis_url) as redis:
                counts = await redis.pubsub_numsub(*channels)
            return sum(int(n) for _, n in counts)
        total = 0
        for channel in channels:
            status, body = await http_get(
                self.port, "/pub?" + urlencode({"channel": channel}), ["Accept: text/json"]
            )
            if status == 200:
                total += int(json.loads(body)["subscribers"])
        return total

    async def open_streams(self) -> int | None:
        """Streams the server holds now, where it can say (ours only)."""
        if self.system != "ours":
            return None
        status, body = await http_get(self.port, "/stats")
        return int(json.loads(body)["streams"]["open"]) if status == 200 else None

    async def stats(self) -> dict[str, Any] | None:
        if self.system != "ours":
            return None
        status, body = await http_get(self.port, "/stats")
        return json.loads(body) if status == 200 else None

    async def wait_subscribed(
        self, channels: Sequence[str], expected: int, within: float = 60.0
    ) -> float:
        """Wait until ``expected`` subscriptions are live; returns the seconds it took."""
        started = time.monotonic()
        if not self.counts_subscriptions:
            return 0.0  # the load generator waited for every stream's first bytes
        while True:
            have = await self.subscriptions(channels)
            if have >= expected:
                return time.monotonic() - started
            if time.monotonic() - started > within:
                raise TimeoutError(
                    f"{self.system}: {have} of {expected} subscriptions after {within}s"
                )
            await asyncio.sleep(0.05)

    async def wait_idle(self, within: float = 30.0) -> None:
        """Wait until streams of earlier scenarios are gone (where the server can tell)."""
        deadline = time.monotonic() + within
        if not self.counts_subscriptions:
            await asyncio.sleep(1.0)
            return
        while time.monotonic() < deadline:
            if self.system == "ours":
                if await self.subscriptions([]) == 0:
                    return
            elif self.system == "seed":
                assert self.redis_url is not None
                async with Redis.from_url(self.redis_url) as redis:
                    if not await redis.pubsub_channels():
                        return
            elif self.system in STORM_ONLY:
                # Its streams are its only descriptors: closing the last storm's is done.
                if self.usage().fds < IDLE_FDS:
                    return
            else:
                return
            await asyncio.sleep(0.1)


def _server_argv(system: str, port: int, workers: int) -> list[str]:
    common = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if workers > 1:
        common += ["--workers", str(workers)]
    if system == "ours":
        return [PYTHON, "-m", "gateway", *common]
    return [PYTHON, "-m", "uvicorn", "bench.baselines.seed_app:app", *common, "--no-access-log"]


async def _wait_ready(server: Server, within: float = 30.0) -> None:
    if server.system != "ours":
        return
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            status, _ = await http_get(server.port, "/readyz")
            if status == 200:
                return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"gateway not ready after {within}s:\n{server.proc.log_tail()}")


@contextlib.asynccontextmanager
async def started(
    system: str,
    run_dir: Path,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    label: str | None = None,
    count_instructions: bool = False,
    burn_us: float = 0.0,
) -> AsyncIterator[Server]:
    """Start ``system`` (and its redis-server); stop everything when the block ends.

    ``label`` names its log directory when the same system runs several times. With
    ``count_instructions`` the server runs under callgrind (``bench.callgrind``) and
    ``Server.instructions`` counts what it executes in a block. ``burn_us``: the floor's
    spin per new stream (``floor_server --burn-us``)."""
    log_dir = run_dir / (label or (system if workers == 1 else f"{system}-w{workers}"))
    log_dir.mkdir(parents=True, exist_ok=True)
    if system == "nchan":
        proc, port = await nchan.start_nchan(log_dir)
        async with running(proc):
            yield Server(system, port, proc, extra={"version": nchan.version()})
        return
    if system == "floor":
        port = free_port()
        argv = [PYTHON, "-m", "bench.baselines.floor_server", "--port", str(port)]
        argv += ["--burn-us", f"{burn_us:g}"]
        proc = await start_process(system, pinned(SERVER_CORE, argv), log_dir=log_dir)
        async with running(proc):
            await wait_for_port(proc, port, within=START_SECONDS)
            yield Server(system, port, proc, extra={"burn_us": burn_us})
        return
    redis_proc, redis_url = await start_redis(log_dir)
    async with running(redis_proc):
        port = free_port()
        core = SERVER_CORE if workers == 1 else ",".join(str(c) for c in range(workers))
        argv = _server_argv(system, port, workers)
        dumps = log_dir / "callgrind.out"
        if count_instructions:
            argv = callgrind.wrap(argv, dumps)
        proc = await start_process(
            system,
            pinned(core, argv),
            log_dir=log_dir,
            env={"REDIS_URL": redis_url, **(env or {})},
        )
        # Under callgrind the interpreter starts some 50x slower.
        within = START_SECONDS if workers == 1 else WORKERS_START_SECONDS
        if count_instructions:
            within = CALLGRIND_START_SECONDS
        async with running(proc):
            await wait_for_port(proc, port, within=within)
            server = Server(system, port, proc, redis_proc, redis_url, workers)
            if count_instructions:
                server.instructions = callgrind.Counter(proc.pid, dumps)
            await _wait_ready(server, within=within)
            yield server
