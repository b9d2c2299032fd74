"""``python -m bench.cluster_publish``: what durable publishes and extra masters cost.

Starts a local Redis Cluster (3 masters, a replica each, AOF on; the one the tests
use) and measures, on it:

- our ``Publisher``: latency of one publish at a time (p50/p99), and publishes/s from
  several publisher processes with many publishes in flight each, with ``replicas`` 0
  and 1, channels on one master or spread over three; plus the CPU the masters spent
  per publish;
- Redis alone: ``redis-benchmark -P 16`` calling ``publish.lua`` on one master, then on
  all three (``--cluster``), and the masters' CPU per publish: where Redis would stop
  if each master had a core of its own.

Every process of the run shares this machine's cores: the figures say what the
publish path costs here, not what three dedicated Redis hosts would sustain.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.procs import ROOT
from contract.events import Echo, EchoPayload
from contract.wire import Keyspace, script_source
from producers.publisher import Publisher
from tests.support.redis_cluster import LocalRedisCluster

T = TypeVar("T")
EVENT = Echo(data=EchoPayload(message="x" * 60))


@dataclass(frozen=True)
class Scenario:
    name: str
    replicas: int
    masters: int


SCENARIOS = (
    Scenario("3 masters, replicas=0", replicas=0, masters=3),
    Scenario("3 masters, replicas=1", replicas=1, masters=3),
    Scenario("1 master, replicas=0", replicas=0, masters=1),
    Scenario("1 master, replicas=1", replicas=1, masters=1),
)


@dataclass(frozen=True)
class Figures:
    publishes_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Row:
    scenario: Scenario
    lone: Figures
    """One publisher, one publish at a time: the latency of a publish itself."""
    loaded: Figures
    """Every worker at full speed: throughput, and latency including queueing."""
    master_cpu_us: float
    """CPU the masters spent per publish of the loaded run (Redis-side cost)."""


@dataclass(frozen=True)
class RedisSide:
    masters: int
    publishes_per_s: float
    master_cpu_us: float

    @property
    def ceiling(self) -> float:
        """Publishes/s the masters could take with a core each: where Redis would stop."""
        return self.masters * 1e6 / self.master_cpu_us


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def publish_for(
    url: str, channels: Sequence[str], replicas: int, concurrency: int, seconds: float
) -> dict[str, object]:
    """Publish as fast as ``concurrency`` tasks can for ``seconds``; count and latencies."""
    latencies: list[float] = []
    async with Publisher.from_url(url, replicas=replicas, max_attempts=3) as publisher:
        await publisher.connect()
        for channel in channels:  # load the script, learn the slots
            await publisher.publish(channel, EVENT)
        deadline = time.perf_counter() + seconds

        async def loop(worker: int) -> None:
            number = worker
            while (started := time.perf_counter()) < deadline:
                await publisher.publish(channels[number % len(channels)], EVENT)
                latencies.append(time.perf_counter() - started)
                number += concurrency

        await asyncio.gather(*(loop(worker) for worker in range(concurrency)))
    return {"count": len(latencies), "seconds": seconds, "latencies": latencies}


async def run_workers(
    url: str, channels: Sequence[str], replicas: int, args: argparse.Namespace
) -> Figures:
    """``args.workers`` publisher processes at once; their total rate and latencies."""
    command = [
        sys.executable, "-m", "bench.cluster_publish",
        "--url", url, "--worker-channels", ",".join(channels), "--replicas", str(replicas),
        "--concurrency", str(args.concurrency), "--duration", str(args.duration),
    ]  # fmt: skip
    processes = [
        await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(args.workers)
    ]
    try:
        outputs = [await process.communicate() for process in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"a publisher process failed:\n{stderr.decode()[-2000:]}")
    results = [json.loads(stdout) for stdout, _ in outputs]
    latencies = [value for result in results for value in result["latencies"]]
    return figures(len(latencies) / args.duration, latencies)


async def one_at_a_time(url: str, channels: Sequence[str], replicas: int, count: int) -> Figures:
    """Latency of a lone publisher publishing one event at a time."""
    latencies = []
    async with Publisher.from_url(url, replicas=replicas, max_attempts=3) as publisher:
        for channel in channels:
            await publisher.publish(channel, EVENT)
        for number in range(count):
            started = time.perf_counter()
            await publisher.publish(channels[number % len(channels)], EVENT)
            latencies.append(time.perf_counter() - started)
    return figures(count / sum(latencies), latencies)


def masters_cpu(cluster: LocalRedisCluster) -> float:
    """CPU seconds (user + system) the masters used so far, together."""
    total = 0.0
    for master in cluster.masters():
        with master.client() as client:
            info = client.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def figures(rate: float, latencies: Sequence[float]) -> Figures:
    return Figures(
        publishes_per_s=rate,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )


def redis_benchmark(cluster: LocalRedisCluster, masters: int, requests: int) -> RedisSide:
    """``publish.lua`` straight from ``redis-benchmark -c 50 -P 16``: no client in the way."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark is not installed: apt-get install redis-tools")
    source = script_source("publish")
    for master in cluster.masters():
        master.command("SCRIPT", "LOAD", source)
    sha = hashlib.sha1(source.encode()).hexdigest()
    first = cluster.masters()[0]
    if masters == 1:  # one channel of the first master
        where, tag = ["-p", str(first.port)], cluster.channels_on_each_master(1, "rb")[0][0]
    else:  # --cluster puts a {tag} of its own slots on each master
        where, tag = ["-p", str(first.port), "--cluster"], "tag"
    keys = Keyspace()
    args = [
        "EVALSHA", sha, "1", keys.history_key(tag), keys.live_channel(tag), "echo",
        EVENT.encode_data().decode(), "10000", "~", "0", "token", "0", "SPUBLISH", "0",
    ]  # fmt: skip
    before = masters_cpu(cluster)
    started = time.perf_counter()
    subprocess.run(
        [binary, "-h", "127.0.0.1", *where, "-c", "50", "-P", "16", "-n", str(requests), "-q",
         *args],
        check=True,
        capture_output=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    spent = masters_cpu(cluster) - before
    return RedisSide(masters, requests / elapsed, spent * 1e6 / requests)


async def bench(args: argparse.Namespace) -> tuple[list[Row], list[RedisSide]]:
    cluster = LocalRedisCluster()
    try:
        await asyncio.to_thread(cluster.start)
        redis_side = [
            await asyncio.to_thread(redis_benchmark, cluster, masters, args.requests)
            for masters in (1, 3)
        ]
        per_master = cluster.channels_on_each_master(per_master=args.channels, stem="bench")
        rows: list[Row] = []
        for scenario in SCENARIOS:
            if scenario.masters == 3:  # taken in turn from each master
                turns = zip(*per_master, strict=True)
                channels = [name for turn in turns for name in turn][: args.channels]
            else:
                channels = per_master[0][: args.channels]
            lone = await one_at_a_time(cluster.url, channels, scenario.replicas, args.latency_count)
            before = await asyncio.to_thread(masters_cpu, cluster)
            loaded = await run_workers(cluster.url, channels, scenario.replicas, args)
            spent = await asyncio.to_thread(masters_cpu, cluster) - before
            cpu_us = spent * 1e6 / (loaded.publishes_per_s * args.duration)
            rows.append(Row(scenario, lone, loaded, cpu_us))
            print(f"{scenario.name}: {lone}, {loaded}, {cpu_us:.1f} us", file=sys.stderr)
        return rows, redis_side
    finally:
        cluster.close()


def table(rows: Sequence[Row], redis_side: Sequence[RedisSide], args: argparse.Namespace) -> str:
    lines = [
        f"Publisher: {args.workers} processes x {args.concurrency} publishes in flight,"
        f" {args.duration:g} s per scenario; lone: {args.latency_count} publishes one at a time",
        "",
        "| scenario | publishes/s | p50 / p99 ms | lone p50 / p99 ms | master CPU per publish |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        loaded, lone = row.loaded, row.lone
        lines.append(
            f"| {row.scenario.name} | {loaded.publishes_per_s:,.0f}"
            f" | {loaded.p50_ms:.2f} / {loaded.p99_ms:.2f}"
            f" | {lone.p50_ms:.2f} / {lone.p99_ms:.2f} | {row.master_cpu_us:.1f} µs |"
        )
    lines += [
        "",
        f"Redis alone: redis-benchmark -c 50 -P 16, {args.requests:,} publish.lua calls",
        "",
        "| masters | publishes/s measured | master CPU per publish | ceiling, a core per master |",
        "|---|---:|---:|---:|",
    ]
    for side in redis_side:
        lines.append(
            f"| {side.masters} | {side.publishes_per_s:,.0f} | {side.master_cpu_us:.1f} µs"
            f" | {side.ceiling:,.0f}/s |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster_publish",
        description="Publishes/s and publish latency on a local Redis Cluster, with"
        " SSE_PUBLISH_REPLICAS 0 and 1, channels on 1 or 3 masters.",
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per scenario")
    parser.add_argument("--workers", type=int, default=2, help="publisher processes")
    parser.add_argument("--concurrency", type=int, default=32, help="publishes in flight each")
    parser.add_argument("--channels", type=int, default=6, help="channels per scenario")
    parser.add_argument("--latency-count", type=int, default=2000, help="lone publishes")
    parser.add_argument("--requests", type=int, default=300_000, help="redis-benchmark calls")
    # A worker process (started by the run itself): publish, print JSON, exit.
    parser.add_argument("--worker-channels", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--replicas", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def _run(work: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    return uvloop.run(work)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker_channels:
        channels = args.worker_channels.split(",")
        work = publish_for(args.url, channels, args.replicas, args.concurrency, args.duration)
        print(json.dumps(_run(work)))
        return 0
    rows, redis_side = _run(bench(args))
    print(table(rows, redis_side, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
