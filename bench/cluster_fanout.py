"""``python -m bench.cluster_fanout``: fan-out through a gateway on a Redis Cluster, with
the channels on one master or spread over three.

Starts a local Redis Cluster (3 masters, a replica each, AOF on; the one the tests use)
and one gateway process on it, opens ``--streams`` SSE streams spread over
``--channels`` channels, then publishes as fast as ``--workers`` publisher processes
can (``bench.cluster_publish``'s workers, ``SSE_PUBLISH_REPLICAS=0``) for
``--duration`` seconds. It reports publishes/s, deliveries/s (the gateway's own count,
``/stats`` ``deliveries.events``), the gateway's CPU, and the masters' CPU per publish,
once with every channel on one master and once with them spread over three.

What it shows: with the channels on three masters the gateway holds three sharded
pub/sub links instead of one, and each master carries a third of the traffic. On one
machine the gateway (one process, one core) is the ceiling long before Redis is, so
deliveries/s barely move; the masters' CPU per publish says where Redis would stop.
Every process of the run shares this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from bench.cluster_publish import masters_cpu
from bench.cluster_publish import publish_for as publish_worker
from bench.procs import PYTHON, ROOT, free_port
from tests.support.redis_cluster import LocalRedisCluster


@dataclass(frozen=True)
class Row:
    masters: int
    publishes_per_s: float
    deliveries_per_s: float
    gateway_cpu: float
    """Cores the gateway process used during the run (1.0: one core all the time)."""
    master_cpu_us: float
    """CPU the masters spent per publish."""


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def gateway(url: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": url, "SSE_LOG_FORMAT": "text", "SSE_MAX_STREAMS": "100000"}
    process = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "gateway", "--port", str(port), "--log-level", "warning",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(400):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{base}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the gateway did not become ready")
        yield process, base
    finally:
        process.terminate()
        await process.wait()


async def read_stream(port: int, channel: str) -> None:
    """One SSE stream, read and thrown away until cancelled."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    query = urlencode({"channel": channel, "last_event_id": "live"})
    writer.write(f"GET /sse?{query} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    try:
        while await reader.read(65536):
            pass
    finally:
        writer.close()


async def stats(client: httpx.AsyncClient, base: str) -> dict[str, object]:
    data: dict[str, object] = (await client.get(f"{base}/stats")).json()
    return data


async def publish_for(url: str, channels: Sequence[str], args: argparse.Namespace) -> int:
    """Run the publisher worker processes; how many publishes they made together."""
    command = [
        PYTHON, "-m", "bench.cluster_fanout", "--url", url,
        "--worker-channels", ",".join(channels),
        "--concurrency", str(args.concurrency), "--duration", str(args.duration),
    ]  # fmt: skip
    workers = [
        await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(args.workers)
    ]
    total = 0
    for worker in workers:
        stdout, stderr = await worker.communicate()
        if worker.returncode != 0:
            raise RuntimeError(f"a publisher failed:\n{stderr.decode()[-2000:]}")
        total += int(json.loads(stdout.splitlines()[-1])["count"])
    return total


async def scenario(
    cluster: LocalRedisCluster, channels: Sequence[str], masters: int, args: argparse.Namespace
) -> Row:
    async with gateway(cluster.url) as (process, base), httpx.AsyncClient(timeout=10) as client:
        port = int(base.rsplit(":", 1)[1])
        readers = [
            asyncio.create_task(read_stream(port, channels[number % len(channels)]))
            for number in range(args.streams)
        ]
        try:
            for _ in range(600):
                data = await stats(client, base)
                if data["streams"]["open"] >= args.streams:  # type: ignore[index]
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the streams did not all open")
            before = await stats(client, base)
            cpu, redis_cpu, started = process_cpu(process.pid), masters_cpu(cluster), time.time()
            published = await publish_for(cluster.url, channels, args)
            elapsed = time.time() - started
            after = await stats(client, base)
            cpu = process_cpu(process.pid) - cpu
            redis_cpu = masters_cpu(cluster) - redis_cpu
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    delivered = after["deliveries"]["events"] - before["deliveries"]["events"]  # type: ignore[index]
    return Row(
        masters=masters,
        publishes_per_s=published / args.duration,
        deliveries_per_s=delivered / elapsed,
        gateway_cpu=cpu / elapsed,
        master_cpu_us=redis_cpu * 1e6 / max(published, 1),
    )


async def bench(args: argparse.Namespace) -> list[Row]:
    cluster = LocalRedisCluster()
    try:
        await asyncio.to_thread(cluster.start)
        per_master = cluster.channels_on_each_master(per_master=args.channels, stem="fan")
        spread = [name for turn in zip(*per_master, strict=True) for name in turn]
        rows = []
        for masters, channels in ((1, per_master[0]), (3, spread[: args.channels])):
            row = await scenario(cluster, channels, masters, args)
            print(row, file=sys.stderr)
            rows.append(row)
        return rows
    finally:
        cluster.close()


def table(rows: Sequence[Row], args: argparse.Namespace, load: float) -> str:
    lines = [
        f"One gateway, {args.streams} streams over {args.channels} channels;"
        f" {args.workers} publisher processes x {args.concurrency} in flight,"
        f" {args.duration:g} s; load average (1 min) before the run: {load:.2f}",
        "",
        "| channels on | publishes/s | deliveries/s | gateway CPU | master CPU per publish |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.masters} master{'s' if row.masters > 1 else ''}"
            f" | {row.publishes_per_s:,.0f} | {row.deliveries_per_s:,.0f}"
            f" | {row.gateway_cpu:.2f} cores | {row.master_cpu_us:.1f} µs |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster_fanout",
        description="Fan-out deliveries/s through one gateway on a local Redis Cluster,"
        " channels on 1 master or spread over 3.",
    )
    parser.add_argument("--streams", type=int, default=300, help="SSE streams")
    parser.add_argument("--channels", type=int, default=6, help="channels")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument("--workers", type=int, default=1, help="publisher processes")
    parser.add_argument("--concurrency", type=int, default=16, help="publishes in flight each")
    # A publisher process (started by the run itself): publish, print the count, exit.
    parser.add_argument("--worker-channels", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    return parser


async def worker(args: argparse.Namespace) -> int:
    """Publish for ``args.duration`` seconds; one short line of JSON with the count (a
    log line of the publisher's cannot end up inside it)."""
    channels = args.worker_channels.split(",")
    result = await publish_worker(args.url, channels, 0, args.concurrency, args.duration)
    print(json.dumps({"count": result["count"]}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker_channels:
        return asyncio.run(worker(args))
    load = os.getloadavg()[0]
    rows = asyncio.run(bench(args))
    print(table(rows, args, load))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
