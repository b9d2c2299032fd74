"""Stalled resumers at full size: what 500 clients that ask for a long history and never
read cost one gateway process, and how soon cut streams give their sockets back.

    python -m bench.hostile [--stalled 500] [--events 3000] [--size 10000]

Starts its own redis-server and gateway processes on free ports (127.0.0.1 only),
publishes ``events`` events of ``size`` bytes to one channel, then:

1. memory: ``stalled`` sockets with a 4 KB receive buffer send ``GET /sse`` with
   ``Last-Event-ID: earliest`` and never read. Gateway RSS before, at its peak while
   they are open, after they left and after the next keep-alive round (which gives
   free heap back); ``/healthz`` latency, probed every 0.2 s from before the first
   client connects until they leave.
2. sockets: the same clients against a gateway with ``SSE_SEND_TIMEOUT=5``: the
   streams are cut, and the gateway's descriptor count is watched until it is back
   to where it was, while the clients still hold their sockets.

The test suite runs the same shapes at a smaller size (tests/test_hostile_replay.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.procs import (
    PYTHON,
    Proc,
    free_port,
    raise_fd_limit,
    running,
    start_process,
    start_redis,
    wait_for_port,
)
from bench.procstat import tree_usage
from contract.events import Echo, EchoPayload
from producers.publisher import Publisher

CHANNEL = "hist"
MIB = 2**20
PING_INTERVAL = 5


async def start_gateway(
    redis_url: str, log_dir: Path, env: dict[str, str], name: str
) -> tuple[Proc, int]:
    port = free_port()
    argv = [PYTHON, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port)]
    proc = await start_process(name, argv, log_dir=log_dir, env={"REDIS_URL": redis_url, **env})
    await wait_for_port(proc, port)
    return proc, port


async def http_get(port: int, path: str) -> tuple[float, bytes]:
    """(seconds, body) of a GET on a fresh connection."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return time.monotonic() - started, data.partition(b"\r\n\r\n")[2]


async def open_streams(port: int) -> int:
    _, body = await http_get(port, "/stats")
    count: int = json.loads(body)["streams"]["open"]
    return count


async def publish_history(redis_url: str, events: int, size: int) -> None:
    pad = "x" * size
    async with Publisher.from_url(redis_url) as publisher:
        for n in range(events):
            data = Echo(data=EchoPayload(message=f"msg-{n} {pad}")).encode_data()
            await publisher.publish_raw(CHANNEL, "echo", data)


def stalled_sockets(port: int, count: int) -> list[socket.socket]:
    request = (
        f"GET /sse?channel={CHANNEL} HTTP/1.1\r\nHost: b\r\nLast-Event-ID: earliest\r\n\r\n"
    ).encode()
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        sockets.append(sock)
    return sockets


async def wait_streams(port: int, count: int, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while await open_streams(port) != count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"never {count} open streams")
        await asyncio.sleep(0.2)


async def settled_rss(pid: int, quiet: float = 1.0) -> int:
    last = tree_usage(pid).rss_bytes
    while True:
        await asyncio.sleep(quiet)
        now = tree_usage(pid).rss_bytes
        if abs(now - last) < MIB:
            return now
        last = now


async def probe_health(port: int, seconds: list[float]) -> None:
    """``GET /healthz`` every 0.2 s until cancelled; each answer's time into ``seconds``."""
    while True:
        took, _ = await http_get(port, "/healthz")
        seconds.append(took)
        await asyncio.sleep(0.2)


async def memory_phase(redis_url: str, log_dir: Path, stalled: int) -> dict[str, float]:
    env = {"SSE_SEND_TIMEOUT": "600", "SSE_PING_INTERVAL": str(PING_INTERVAL)}
    gateway, port = await start_gateway(redis_url, log_dir, env, "gateway-mem")
    async with running(gateway):
        baseline = await settled_rss(gateway.pid)
        health: list[float] = []
        probing = asyncio.create_task(probe_health(port, health))
        sockets = await asyncio.to_thread(stalled_sockets, port, stalled)
        try:
            await wait_streams(port, stalled)
            peak = baseline
            quiet_since, last = time.monotonic(), baseline
            while time.monotonic() - quiet_since < 3:
                rss = tree_usage(gateway.pid).rss_bytes
                peak = max(peak, rss)
                if abs(rss - last) >= MIB:
                    quiet_since, last = time.monotonic(), rss
                await asyncio.sleep(0.5)
            fds_during = tree_usage(gateway.pid).fds
        finally:
            probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probing
            for sock in sockets:
                sock.close()
        await wait_streams(port, 0)
        after = await settled_rss(gateway.pid)
        # The keep-alive round after the burst gives free heap back (SSE_PING_INTERVAL).
        await asyncio.sleep(PING_INTERVAL + 1)
        trimmed = await settled_rss(gateway.pid)
    return {
        "rss_before_mib": baseline / MIB,
        "rss_peak_mib": peak / MIB,
        "rss_after_mib": after / MIB,
        "rss_after_next_ping_round_mib": trimmed / MIB,
        "per_stream_kib": (peak - baseline) / stalled / 1024,
        "healthz_worst_s": max(health),
        "healthz_probes": len(health),
        "fds_during": fds_during,
    }


async def socket_phase(redis_url: str, log_dir: Path, stalled: int) -> dict[str, float]:
    env = {"SSE_SEND_TIMEOUT": "5"}
    gateway, port = await start_gateway(redis_url, log_dir, env, "gateway-fds")
    async with running(gateway):
        baseline = tree_usage(gateway.pid).fds
        sockets = stalled_sockets(port, stalled)
        try:
            # The first streams may be cut before the last open: note the most fds held.
            held = tree_usage(gateway.pid).fds
            while await open_streams(port):
                held = max(held, tree_usage(gateway.pid).fds)
                await asyncio.sleep(0.1)
            ended = time.monotonic()
            while tree_usage(gateway.pid).fds > baseline + 2:
                if time.monotonic() - ended > 120:
                    break
                await asyncio.sleep(0.05)
            released = time.monotonic() - ended
            left = tree_usage(gateway.pid).fds
        finally:
            for sock in sockets:
                sock.close()
    return {
        "fds_before": baseline,
        "fds_streams_open": held,
        "fds_after_cut": left,
        "release_seconds": released,
    }


async def run(
    stalled: int, events: int, size: int, phases: Sequence[str]
) -> dict[str, dict[str, float]]:
    raise_fd_limit()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    redis, redis_url = await start_redis(log_dir, core=None)
    async with running(redis):
        await publish_history(redis_url, events, size)
        figures = {}
        if "memory" in phases:
            figures["memory"] = await memory_phase(redis_url, log_dir, stalled)
        if "sockets" in phases:
            figures["sockets"] = await socket_phase(redis_url, log_dir, stalled)
        return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__)
    parser.add_argument("--stalled", type=int, default=500)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--phase", action="append", choices=["memory", "sockets"])
    args = parser.parse_args(argv)
    phases = args.phase or ["memory", "sockets"]
    figures = asyncio.run(run(args.stalled, args.events, args.size, phases))
    print(f"{args.stalled} stalled resumers of {args.events} x {args.size} B:")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
