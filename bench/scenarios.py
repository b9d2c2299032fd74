"""The measurements of issue 6, each against one running system.

Every scenario opens its streams on channels of its own, waits until the
server reports them all subscribed, publishes at a fixed rate, and asks the
load generator whether every stream got every event. CPU figures are the
server's process tree (utime+stime) over the publishing round divided by the
deliveries of that round.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from bench.loadgen_control import Loadgen, loadgen
from bench.procs import CLIENT_CORE, SERVER_CORE
from bench.procstat import core_busy_seconds
from bench.profiles import Profile
from bench.publisher import GatewaySink, Sink, publish_at_rate
from bench.storm import storm
from bench.systems import Server

MB = 1024 * 1024


@contextlib.asynccontextmanager
async def subscribed(
    server: Server,
    channels: Sequence[str],
    streams: int,
    run_dir: Path,
    *,
    sample: int,
    headers: Sequence[str] = (),
) -> AsyncIterator[tuple[Loadgen, dict[str, Any]]]:
    """A load generator with ``streams`` open and subscribed on ``channels``."""
    await server.wait_idle()
    async with loadgen(
        port=server.port,
        path=server.sse_path(channels),
        stages=[streams],
        log_dir=run_dir,
        sample=sample,
        headers=headers,
        ready_on=server.ready_on,
    ) as lg:
        stage = await lg.stage(within=max(60.0, streams / 100))
        if stage["failed"]:
            raise RuntimeError(f"{stage['failed']} of {streams} streams failed: {stage['errors']}")
        await server.wait_subscribed(
            channels, streams * len(channels), within=max(30.0, streams / 100)
        )
        yield lg, stage


class Rounds:
    """Publishing rounds on one set of streams; sequence numbers continue across rounds."""

    def __init__(
        self, server: Server, lg: Loadgen, channels: Sequence[str], profile: Profile
    ) -> None:
        self.server = server
        self.lg = lg
        self.channels = list(channels)
        self.profile = profile
        self.sink: Sink = server.sink()
        self.published = 0  # per channel
        self.expected = 0  # per stream

    async def run(self, rate: float, seconds: float) -> dict[str, Any]:
        """Publish ``rate`` events/s (over all channels) for ``seconds``; measure the round."""
        count = max(len(self.channels), round(rate * seconds))
        count -= count % len(self.channels)
        before, redis_before = self.server.usage(), self.server.redis_usage()
        core_before, began = core_busy_seconds(int(SERVER_CORE)), time.monotonic()
        client_core_before = core_busy_seconds(int(CLIENT_CORE))
        pub = await publish_at_rate(
            self.sink, self.channels, rate=rate, count=count, start_seq=self.published
        )
        self.published += count // len(self.channels)
        self.expected += count
        seqs = dict.fromkeys(self.channels, (0, self.published))
        report = await self.lg.collect(self.expected, self.profile.drain_seconds, seqs)
        after, redis_after = self.server.usage(), self.server.redis_usage()
        core_busy = core_busy_seconds(int(SERVER_CORE)) - core_before
        client_core_busy = core_busy_seconds(int(CLIENT_CORE)) - client_core_before
        elapsed = time.monotonic() - began
        streams = report["streams"]
        delivered = report["delivered"]
        span = max(report["delivery_span_s"], count / rate)
        cpu = after.cpu_seconds - before.cpu_seconds
        kernel = after.system_seconds - before.system_seconds
        result: dict[str, Any] = {
            "streams": streams,
            "events": count,
            "rate_offered": rate,
            "rate_published": round(pub.rate, 1),
            "publisher_max_lag_ms": round(pub.max_lag_ms, 1),
            "deliveries_offered_per_s": round(rate * streams),
            "deliveries_per_s": round(delivered / span) if span else 0,
            "delivered": delivered,
            "expected": count * streams,
            "lost": report["lost"],
            "duplicated": report["excess"] + report["sample_duplicated"],
            "sample_missing": report["sample_missing"],
            "sample_unexpected": report["sample_unexpected"],
            "streams_closed": report["closed"],
            "latency_ms": report["latency_ms"],
            "latency_cdf_ms": report["latency_cdf_ms"],
            "server_cpu_s": round(cpu, 3),
            "cpu_us_per_delivery": round(cpu / delivered * 1e6, 3) if delivered else None,
            "kernel_us_per_delivery": round(kernel / delivered * 1e6, 3) if delivered else None,
            "server_rss_mb": round(after.rss_bytes / MB, 1),
            # CPU the server core gave to other processes: a busy machine shows here.
            "server_core_others_pct": round(
                max(0.0, core_busy - cpu) / max(elapsed, 1e-9) * 100, 1
            ),
            # The load generator, publisher and redis-server share this core: near 100%,
            # latency figures include their own queueing.
            "client_core_busy_pct": round(client_core_busy / max(elapsed, 1e-9) * 100, 1),
        }
        if redis_before is not None and redis_after is not None:
            redis_cpu = redis_after.cpu_seconds - redis_before.cpu_seconds
            result["redis_cpu_us_per_delivery"] = (
                round(redis_cpu / delivered * 1e6, 3) if delivered else None
            )
        if report["sample_other_events"]:
            result["other_events"] = report["sample_other_events"]
        result["nothing_lost"] = nothing_lost(result)
        return result

    async def aclose(self) -> None:
        await self.sink.aclose()


def nothing_lost(result: dict[str, Any]) -> bool:
    return bool(
        result["lost"] == 0
        and result["duplicated"] == 0
        and result["sample_missing"] == 0
        and result["sample_unexpected"] == 0
        and result["streams_closed"] == 0
    )


def sustained(result: dict[str, Any], profile: Profile) -> bool:
    """Every event delivered at the offered rate with p99 within the latency target."""
    p99 = result["latency_ms"]["p99"]
    return (
        result["nothing_lost"]
        and p99 is not None
        and p99 <= profile.latency_target_ms
        and result["rate_published"] >= 0.95 * result["rate_offered"]
    )


@contextlib.asynccontextmanager
async def rounds(
    server: Server, channels: Sequence[str], streams: int, profile: Profile, run_dir: Path
) -> AsyncIterator[Rounds]:
    async with subscribed(server, channels, streams, run_dir, sample=profile.sample_streams) as (
        lg,
        _,
    ):
        r = Rounds(server, lg, channels, profile)
        try:
            yield r
        finally:
            await r.aclose()


async def fanout(
    server: Server,
    profile: Profile,
    run_dir: Path,
    *,
    subscribers: int | None = None,
    tag: str = "fanout",
    step_seconds: float | None = None,
) -> dict[str, Any]:
    """(a) Step the offered deliveries/s up until the system stops keeping up."""
    subscribers = subscribers or profile.fanout_subscribers
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    failures = 0
    async with rounds(server, [tag], subscribers, profile, run_dir) as r:
        for offered in profile.fanout_steps:
            step = await r.run(offered / subscribers, step_seconds or profile.step_seconds)
            step["sustained"] = sustained(step, profile)
            step.pop("latency_cdf_ms")
            steps.append(step)
            if step["sustained"]:
                failures = 0
                if best is None or step["deliveries_per_s"] > best["deliveries_per_s"]:
                    best = step
            else:
                failures += 1
                if failures >= profile.max_failed_steps:
                    break
    return {
        "subscribers": subscribers,
        "max_sustained_deliveries_per_s": best["deliveries_per_s"] if best else 0,
        "max_sustained_offered_per_s": best["deliveries_offered_per_s"] if best else 0,
        "saturated": not steps[-1]["sustained"],
        "steps": steps,
        "nothing_lost_while_sustained": all(s["nothing_lost"] for s in steps if s["sustained"]),
    }


async def moderate(server: Server, profile: Profile, run_dir: Path) -> dict[str, Any]:
    """(b) CPU per delivery, latency and loss at a moderate offered load (80k/s in full)."""
    async with rounds(server, ["moderate"], profile.moderate_subscribers, profile, run_dir) as r:
        return await r.run(profile.moderate_rate, profile.moderate_seconds)


async def idle_memory(server: Server, stages: Sequence[int], run_dir: Path) -> dict[str, Any]:
    """(c)+(d) RSS of the server tree as idle streams are opened in stages, and how fast."""
    channel = "idle"
    await server.wait_idle()
    points: list[dict[str, Any]] = []
    async with loadgen(
        port=server.port,
        path=server.sse_path([channel]),
        stages=stages,
        log_dir=run_dir,
        sample=0,
        concurrency=512,
        ready_on=server.ready_on,
    ) as lg:
        for index, total in enumerate(stages):
            begun = time.monotonic()
            stage = await (lg.stage() if index == 0 else lg.next_stage())
            await server.wait_subscribed([channel], total, within=max(60.0, total / 50))
            ready_s = time.monotonic() - begun
            await asyncio.sleep(1.0)  # let the server finish what each new stream started
            usage = server.usage()
            redis = server.redis_usage()
            points.append(
                {
                    "streams": total,
                    "failed": stage["failed"],
                    "errors": stage["errors"],
                    "open_s": stage["seconds"],
                    "ready_s": round(ready_s, 3),
                    "rss_mb": round(usage.rss_bytes / MB, 2),
                    "redis_rss_mb": round(redis.rss_bytes / MB, 2) if redis else None,
                    "fds": usage.fds,
                    "threads": usage.threads,
                }
            )
    first, last = points[0], points[-1]
    added = last["streams"] - first["streams"]
    timed = points[1:]
    seconds = sum(max(p["open_s"], p["ready_s"]) for p in timed)
    result: dict[str, Any] = {
        "streams": last["streams"],
        "kb_per_stream": round((last["rss_mb"] - first["rss_mb"]) * 1024 / added, 2),
        "new_streams_per_s": round(added / seconds, 1) if seconds else None,
        "failed": sum(p["failed"] for p in points),
        "points": points,
    }
    if last["redis_rss_mb"] is not None:
        result["redis_kb_per_stream"] = round(
            (last["redis_rss_mb"] - first["redis_rss_mb"]) * 1024 / added, 2
        )
    return result


async def resume_storm(server: Server, profile: Profile, run_dir: Path) -> dict[str, Any]:
    """(e) Clients that each resume ``resume_behind`` events back connect at once."""
    channel, behind, clients = "resume", profile.resume_behind, profile.resume_clients
    assert server.redis_url is not None
    sink = GatewaySink(server.redis_url)
    try:
        history = await publish_at_rate(
            sink, [channel], rate=20_000, count=behind + 1, keep_ids=True, in_flight=1
        )
        cursor = f"{channel}={history.ids[0]}"
        stats_before = await server.stats() or {}
        await server.wait_idle()
        usage_before = server.usage()
        async with loadgen(
            port=server.port,
            path=server.sse_path([channel]),
            stages=[clients],
            log_dir=run_dir,
            sample=profile.sample_streams,
            expect=behind,
            concurrency=512,
            headers=[f"Last-Event-ID: {cursor}"],
            ready_on=server.ready_on,
        ) as lg:
            stage = await lg.stage(within=max(60.0, clients / 100))
            caught = await lg.collect(
                behind, max(30.0, profile.resume_target_s * 4), {channel: (1, behind + 1)}
            )
            usage_caught = server.usage()
            # Then the live flow must continue where history ended.
            await server.wait_subscribed([channel], clients)
            live = await publish_at_rate(sink, [channel], rate=200, count=20, start_seq=behind + 1)
            after = await lg.collect(
                behind + live.count, profile.drain_seconds, {channel: (1, behind + 1 + live.count)}
            )
        stats_after = await server.stats() or {}
    finally:
        await sink.aclose()
    reads = stats_after.get("history", {}).get("redis_reads", 0) - stats_before.get(
        "history", {}
    ).get("redis_reads", 0)
    result: dict[str, Any] = {
        "clients": clients,
        "behind": behind,
        "open_s": stage["seconds"],
        "failed": stage["failed"],
        "caught_up_s": caught["caught_up_s"],
        "complete": caught["complete"],
        "history_lost": caught["lost"],
        "lost": after["lost"],
        "duplicated": after["excess"] + after["sample_duplicated"],
        "sample_missing": after["sample_missing"],
        "sample_unexpected": after["sample_unexpected"],
        "streams_closed": after["closed"],
        "live_latency_ms": after["latency_ms"],
        "history_redis_reads": reads,
        # The server's CPU from the first connect until all caught up: it moves less with
        # the machine's other load than the wall clock does.
        "server_cpu_s": round(usage_caught.cpu_seconds - usage_before.cpu_seconds, 3),
        "server_kernel_s": round(usage_caught.system_seconds - usage_before.system_seconds, 3),
        "target_s": profile.resume_target_s,
    }
    result["nothing_lost"] = nothing_lost(result)
    result["met"] = bool(
        result["nothing_lost"]
        and caught["caught_up_s"] is not None
        and caught["caught_up_s"] <= profile.resume_target_s
    )
    return result


async def reconnect_storm(server: Server, profile: Profile, run_dir: Path) -> dict[str, Any]:
    """(g) ``storm_clients`` clients open a stream, at most ``storm_in_flight`` waiting for
    an answer at a time, ``storm_rounds`` times: new streams/s and CPU per new stream."""
    rounds = []
    for _ in range(profile.storm_rounds):
        rounds.append(
            await storm(
                server, run_dir, clients=profile.storm_clients, in_flight=profile.storm_in_flight
            )
        )
    cpu = sorted(r["cpu_us_per_new_stream"] for r in rounds if r["cpu_us_per_new_stream"])
    rate = sorted(r["new_streams_per_s"] for r in rounds)
    return {
        "clients": profile.storm_clients,
        "in_flight": profile.storm_in_flight,
        "new_streams_per_s": rate[len(rate) // 2],
        "cpu_us_per_new_stream": cpu[len(cpu) // 2] if cpu else None,
        "failed": sum(r["failed"] for r in rounds),
        "nothing_lost": all(r["failed"] == 0 for r in rounds),
        "rounds": rounds,
    }


async def multiplex(server: Server, profile: Profile, run_dir: Path) -> dict[str, Any]:
    """(f) CPU per delivered event: streams on two channels vs streams on one."""
    n, rate, seconds = (
        profile.multiplex_subscribers,
        profile.multiplex_rate,
        profile.multiplex_seconds,
    )
    async with rounds(server, ["mx1"], n, profile, run_dir) as r:
        one = await r.run(rate, seconds)
    async with rounds(server, ["mxa", "mxb"], n, profile, run_dir) as r:
        two = await r.run(rate, seconds)
    for result in (one, two):
        result.pop("latency_cdf_ms")
    ratio = None
    if one["cpu_us_per_delivery"] and two["cpu_us_per_delivery"]:
        ratio = round(two["cpu_us_per_delivery"] / one["cpu_us_per_delivery"], 3)
    return {
        "one_channel": one,
        "two_channels": two,
        "cpu_ratio": ratio,
        "nothing_lost": one["nothing_lost"] and two["nothing_lost"],
    }


async def soak(
    server: Server, profile: Profile, run_dir: Path, *, rate: float, subscribers: int
) -> dict[str, Any]:
    """Half the max rate for ``soak_seconds``: RSS, fds, threads and tasks must stay flat."""
    samples: list[dict[str, Any]] = []
    lost = 0
    started = time.monotonic()
    async with rounds(server, ["soak"], subscribers, profile, run_dir) as r:
        while time.monotonic() - started < profile.soak_seconds:
            result = await r.run(rate, profile.soak_round_seconds)
            lost += 0 if result["nothing_lost"] else 1
            usage = server.usage()
            stats = await server.stats()
            samples.append(
                {
                    "t_s": round(time.monotonic() - started, 1),
                    "rss_mb": round(usage.rss_bytes / MB, 2),
                    "fds": usage.fds,
                    "threads": usage.threads,
                    "tasks": stats["tasks"] if stats else None,
                    "p99_ms": result["latency_ms"]["p99"],
                    "nothing_lost": result["nothing_lost"],
                }
            )
    settled = samples[1:] or samples
    head, tail = settled[: max(1, len(settled) // 4)], settled[-max(1, len(settled) // 4) :]
    rss_head = sum(s["rss_mb"] for s in head) / len(head)
    rss_tail = sum(s["rss_mb"] for s in tail) / len(tail)
    growth = (rss_tail - rss_head) / rss_head * 100
    return {
        "seconds": round(time.monotonic() - started, 1),
        "rate": rate,
        "subscribers": subscribers,
        "rss_growth_pct": round(growth, 2),
        "fds_flat": len({s["fds"] for s in settled}) == 1,
        "tasks_flat": len({s["tasks"] for s in settled}) <= 1,
        "rounds_with_loss": lost,
        "nothing_lost": lost == 0,
        "met": lost == 0 and abs(growth) <= 5.0,
        "samples": samples,
    }
