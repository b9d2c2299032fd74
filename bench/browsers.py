"""Many browsers (issue 14): tens of thousands of streams held open, one event a second to all.

The gateway runs with ``--workers N`` (one process holds at most ``RLIMIT_NOFILE``
descriptors; 20,000 on the bench machine) and ``SSE_MAX_STREAMS`` a little under that
per worker: the kernel spreads accepts over the workers unevenly, and a worker at its
maximum answers 503, which the client retries like a browser would. The clients are
``bench/browsers.c`` processes, built with gcc at bench time, each holding its share of
the streams from a loopback source address of its own (127.0.0.2, .3, ...: one source
address reaches only ~28,000 ports towards one server port). They check every event of
every stream (sequence in order, ids increasing) and measure publish-to-receive latency
from the ``created_at`` each event carries.

RSS per stream is the server tree's RSS (every worker and the supervisor) with the streams
open minus before, over the streams. CPU is the server tree's ``utime+stime`` over the
publishing; "others" is what both cores did beyond the server, the clients, redis-server
and this process (other work on a shared machine).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import CLIENT_CORE, SERVER_CORE, build_c, cpu_count, pinned
from bench.procstat import core_busy_seconds, load_average, process_tree, tree_usage
from bench.profiles import Profile
from bench.publisher import publish_at_rate
from bench.systems import Server, started

SOURCE = Path(__file__).with_name("browsers.c")
CHANNEL = "browsers"
MB = 1024 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
REPORT_LIMIT = 16 * MB
"""A client's report is one line with its latency histogram: hundreds of KB at 50k streams."""


@dataclass
class Client:
    """One ``browsers`` process and its share of the streams."""

    process: asyncio.subprocess.Process
    streams: int
    source: str

    async def line(self, within: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), within)
        if not raw:
            raise RuntimeError(f"browsers client from {self.source} exited without a report")
        result: dict[str, Any] = json.loads(raw)
        return result

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def close(self) -> None:
        """Close every stream (RST) and wait for the process; whatever it still prints is
        read, or a full pipe would keep it (and ``wait``) from ever finishing."""
        if self.process.returncode is not None:
            return
        try:
            await asyncio.wait_for(self.process.communicate(b"close\n"), 30.0)
        except (OSError, TimeoutError):
            self.process.kill()
            await asyncio.wait_for(self.process.communicate(), 30.0)


def shares(streams: int, per_client: int) -> list[int]:
    """``streams`` split as evenly as possible over as few clients as hold ``per_client``."""
    clients = max(1, math.ceil(streams / per_client))
    base, extra = divmod(streams, clients)
    return [base + (1 if i < extra else 0) for i in range(clients)]


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_busy() -> float:
    return sum(core_busy_seconds(core) for core in range(cpu_count()))


def _workers(server: Server) -> list[dict[str, Any]]:
    """Per process of the server tree (supervisor and workers): RSS and descriptors, which
    show how the streams spread over the workers."""
    out = []
    for pid in process_tree(server.proc.pid):
        try:
            pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue  # exited between listing and reading
        out.append({"pid": pid, "rss_mb": round(pages * PAGE_SIZE / MB, 1), "fds": fds})
    return out


WORKER_HEALTHCHECK_S = 5.0
"""uvicorn's default: its supervisor kills a worker that does not answer its ping within
this (also one still importing on a busy machine) and starts another. The gateway waits
longer (``--worker-healthcheck-timeout``); a worker set stable for twice this is settled
enough to open streams on."""


async def _workers_settled(server: Server, within: float = 120.0) -> None:
    """Wait until the server tree has had the same processes for longer than uvicorn's
    health check: streams opened while a worker is being replaced all go to the others."""
    deadline = time.monotonic() + within
    pids, since = set(process_tree(server.proc.pid)), time.monotonic()
    while time.monotonic() - since < 2 * WORKER_HEALTHCHECK_S:
        if time.monotonic() > deadline:
            raise TimeoutError(f"gateway workers still restarting after {within:.0f}s")
        await asyncio.sleep(0.5)
        now = set(process_tree(server.proc.pid))
        if now != pids:
            pids, since = now, time.monotonic()


def _merge_latency(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Percentiles of the clients' histograms added together."""
    counts: Counter[int] = Counter()
    bucket_us = reports[0]["bucket_us"] if reports else 100
    for r in reports:
        for bucket, n in r["histogram"]:
            counts[bucket] += n
    total = sum(counts.values())
    out: dict[str, Any] = {"count": total}
    ordered = sorted(counts.items())
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
        if not total:
            out[name] = None
            continue
        rank, seen = int(q * (total - 1)), 0
        for bucket, n in ordered:
            seen += n
            if seen > rank:
                out[name] = round((bucket + 0.5) * bucket_us / 1000, 2)
                break
    out["max"] = max((r["latency_ms"]["max"] for r in reports), default=None)
    return out


async def _start_client(
    server: Server,
    binary: Path,
    *,
    channel: str,
    streams: int,
    source: str,
    in_flight: int,
    core: str | None = None,
) -> Client:
    """One ``browsers.c`` process holding ``streams`` streams of ``channel`` from the
    address ``source`` (pinned to ``core`` if given)."""
    argv = [
        str(binary),
        "127.0.0.1",
        str(server.port),
        server.sse_path([channel]),
        str(streams),
        source,
        str(in_flight),
        channel,
        server.ready_on,
    ]
    process = await asyncio.create_subprocess_exec(
        *(argv if core is None else pinned(core, argv)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=REPORT_LIMIT,
    )
    return Client(process, streams, source)


async def _start_clients(server: Server, binary: Path, profile: Profile) -> list[Client]:
    return [
        await _start_client(
            server,
            binary,
            channel=CHANNEL,
            streams=count,
            source=f"127.0.0.{2 + i}",
            in_flight=profile.browsers_in_flight,
        )
        for i, count in enumerate(shares(profile.browsers_streams, profile.browsers_per_client))
    ]


async def many_browsers(profile: Profile, run_dir: Path) -> dict[str, Any]:
    """``browsers_streams`` streams on one channel over ``browsers_workers`` workers, one
    event every ``1 / browsers_rate`` s for ``browsers_seconds``: every event checked."""
    p = profile
    binary = build_c(SOURCE, run_dir)
    env = {"SSE_MAX_STREAMS": str(p.browsers_max_streams_per_worker)}
    async with started(
        "ours", run_dir, workers=p.browsers_workers, env=env, label="ours-browsers"
    ) as server:
        await _workers_settled(server)
        base = server.usage()
        load_before = load_average()
        clients = await _start_clients(server, binary, p)
        try:
            return await _measure(server, clients, base, load_before, p)
        finally:
            await asyncio.gather(*(c.close() for c in clients))


async def _measure(
    server: Server,
    clients: list[Client],
    base: Any,
    load_before: list[float],
    p: Profile,
) -> dict[str, Any]:
    pids_before = set(process_tree(server.proc.pid))
    opening = await asyncio.gather(*(c.line(max(120.0, c.streams / 100)) for c in clients))
    opened = sum(o["opened"] for o in opening)
    open_s = max(o["open_s"] for o in opening)
    await asyncio.sleep(2.0)  # let every worker finish what its new streams started
    held = server.usage()
    workers = _workers(server)

    count = max(1, round(p.browsers_rate * p.browsers_seconds))
    sink = server.sink()
    client_pids = [c.process.pid for c in clients]
    assert server.redis_proc is not None
    redis_pid = server.redis_proc.pid

    def ours_cpu() -> float:
        return (
            server.usage().cpu_seconds
            + sum(tree_usage(pid).cpu_seconds for pid in [*client_pids, redis_pid])
            + _self_cpu()
        )

    before = server.usage()
    clients_before = sum(tree_usage(pid).cpu_seconds for pid in client_pids)
    ours_before, busy_before, began = ours_cpu(), _machine_busy(), time.monotonic()
    try:
        pub = await publish_at_rate(sink, [CHANNEL], rate=p.browsers_rate, count=count)
    finally:
        await sink.aclose()
    elapsed = time.monotonic() - began
    after = server.usage()
    clients_after = sum(tree_usage(pid).cpu_seconds for pid in client_pids)
    others = max(0.0, (_machine_busy() - busy_before) - (ours_cpu() - ours_before))
    for c in clients:
        await c.send(f"collect {count} {p.drain_seconds}")
    reports = await asyncio.gather(*(c.line(p.drain_seconds + 60.0) for c in clients))
    expected = sum(r["expected"] for r in reports)
    received = sum(r["received"] for r in reports)
    cpu = after.cpu_seconds - before.cpu_seconds
    delivered = min(received, expected)
    result: dict[str, Any] = {
        "streams": p.browsers_streams,
        "opened": opened,
        "failed": p.browsers_streams - opened,
        "refused_503": sum(o["refused"] for o in opening),
        "retried": sum(o["retried"] for o in opening),
        "open_s": round(open_s, 2),
        "new_streams_per_s": round(opened / open_s) if open_s else None,
        "clients": [
            {"source": c.source, "streams": c.streams, **o}
            for c, o in zip(clients, opening, strict=True)
        ],
        "workers": server.workers,
        "max_streams_per_worker": p.browsers_max_streams_per_worker,
        "server_processes": workers,
        # Workers replaced by uvicorn's supervisor (a missed health check) during the run.
        "worker_restarts": len(set(process_tree(server.proc.pid)) - pids_before),
        "rss_mb_before": round(base.rss_bytes / MB, 1),
        "rss_mb_held": round(held.rss_bytes / MB, 1),
        "kb_per_stream": (
            round((held.rss_bytes - base.rss_bytes) / 1024 / opened, 2) if opened else None
        ),
        "fds_held": held.fds,
        "events": count,
        "rate": p.browsers_rate,
        "rate_published": round(pub.rate, 3),
        "publisher_max_lag_ms": round(pub.max_lag_ms, 1),
        "expected": expected,
        "received": received,
        "lost": sum(r["lost"] for r in reports),
        "gaps": sum(r["gaps"] for r in reports),
        "duplicated": sum(r["duplicated"] for r in reports),
        "ids_not_increasing": sum(r["ids_not_increasing"] for r in reports),
        "parse_errors": sum(r["parse_errors"] for r in reports),
        "streams_closed": sum(r["closed"] for r in reports),
        "streams_complete": sum(r["complete"] for r in reports),
        "latency_ms": _merge_latency(reports),
        "publish_s": round(elapsed, 1),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_pct": round(cpu / elapsed * 100, 1),
        "cpu_us_per_delivery": round(cpu / delivered * 1e6, 2) if delivered else None,
        "clients_cpu_pct": round((clients_after - clients_before) / elapsed * 100, 1),
        # Both cores' busy time beyond the server, clients, redis and the bench itself.
        "others_cpu_pct": round(others / elapsed * 100, 1),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "first_errors": sorted({r["first_error"] for r in [*opening, *reports]} - {""}),
    }
    result["nothing_lost"] = bool(
        result["failed"] == 0
        and result["lost"] == 0
        and result["gaps"] == 0
        and result["duplicated"] == 0
        and result["ids_not_increasing"] == 0
        and result["parse_errors"] == 0
        and result["streams_closed"] == 0
        and received == expected == count * p.browsers_streams
    )
    return result


async def wide_fanout(
    server: Server,
    profile: Profile,
    run_dir: Path,
    *,
    subscribers: int,
    step_seconds: float,
    channel: str = "wide",
) -> dict[str, Any]:
    """The fan-out ladder with ``subscribers`` streams on one channel, read by one
    ``browsers.c`` process pinned to the client core (the Python load generator cannot
    keep up with 5,000 streams at one event a second, see docs/performance.md): the
    offered deliveries/s step up until the server stops keeping up."""
    p = profile
    binary = build_c(SOURCE, run_dir)
    await server.wait_idle()
    client = await _start_client(
        server,
        binary,
        channel=channel,
        streams=subscribers,
        source="127.0.0.2",
        in_flight=p.browsers_in_flight,
        core=CLIENT_CORE,
    )
    sink = server.sink()
    steps: list[dict[str, Any]] = []
    try:
        opening = await client.line(max(120.0, subscribers / 100))
        if opening["opened"] != subscribers:
            raise RuntimeError(f"{opening['opened']} of {subscribers} streams opened: {opening}")
        await server.wait_subscribed([channel], subscribers, within=max(30.0, subscribers / 100))
        # One event first: the publisher's connection set-up is not a step's latency.
        await publish_at_rate(sink, [channel], rate=1.0, count=1)
        await client.send(f"collect 1 {p.drain_seconds}")
        warm = await client.line(p.drain_seconds + 60.0)
        published, lost_before, failures = 1, warm["lost"], 0
        for offered in p.fanout_steps:
            rate = offered / subscribers
            count = max(1, round(rate * step_seconds))
            before = server.usage()
            core_before, began = core_busy_seconds(int(SERVER_CORE)), time.monotonic()
            pub = await publish_at_rate(
                sink, [channel], rate=rate, count=count, start_seq=published
            )
            published += count
            await client.send(f"collect {published} {p.drain_seconds}")
            report = await client.line(p.drain_seconds + 60.0)
            after = server.usage()
            core_busy = core_busy_seconds(int(SERVER_CORE)) - core_before
            elapsed = time.monotonic() - began
            lost = report["lost"] - lost_before
            lost_before = report["lost"]
            delivered = count * subscribers - lost
            cpu = after.cpu_seconds - before.cpu_seconds
            lat = _merge_latency([report])
            step = {
                "deliveries_offered_per_s": offered,
                "deliveries_per_s": round(delivered / max(pub.seconds, count / rate)),
                "events": count,
                "rate_published": round(pub.rate, 1),
                "lost": lost,
                "duplicated": report["duplicated"] + report["ids_not_increasing"],
                "streams_closed": report["closed"],
                "latency_ms": lat,
                "cpu_us_per_delivery": round(cpu / delivered * 1e6, 3) if delivered else None,
                # The server core's time given to other processes (a busy machine shows here).
                "server_core_others_pct": round(max(0.0, core_busy - cpu) / elapsed * 100, 1),
            }
            step["sustained"] = bool(
                lost == 0
                and step["duplicated"] == 0
                and report["closed"] == 0
                and lat["p99"] is not None
                and lat["p99"] <= p.latency_target_ms
                and pub.rate >= 0.95 * rate
            )
            steps.append(step)
            failures = 0 if step["sustained"] else failures + 1
            if failures >= p.max_failed_steps:
                break
    finally:
        await sink.aclose()
        await client.close()
    best = max(
        (s for s in steps if s["sustained"]), key=lambda s: s["deliveries_per_s"], default=None
    )
    return {
        "subscribers": subscribers,
        "reader": "bench/browsers.c",
        "max_sustained_deliveries_per_s": best["deliveries_per_s"] if best else 0,
        "max_sustained_offered_per_s": best["deliveries_offered_per_s"] if best else 0,
        "saturated": bool(steps) and not steps[-1]["sustained"],
        "steps": steps,
        "nothing_lost_while_sustained": all(
            s["lost"] == 0 and s["duplicated"] == 0 for s in steps if s["sustained"]
        ),
    }
