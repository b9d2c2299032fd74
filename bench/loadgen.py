"""The load generator: thousands of SSE streams from one process, driven over stdin/stdout.

Run as its own process (pinned to a core by the orchestrator)::

    python -m bench.loadgen --port 8000 --path '/sse?channel=echo' --stages 1000,2000

It opens the streams of each stage (``--rate`` per second, ``--concurrency``
handshakes in flight), prints one JSON line per stage, and then obeys one
JSON command per stdin line:

- ``{"cmd": "continue"}``: open the next stage.
- ``{"cmd": "collect", "expect": K, "timeout": T, "seqs": {"tag": [lo, hi]}}``:
  wait until every stream has received K events in total (or T seconds),
  then print a round report: delivered, lost, duplicated, latency, seq check.
- ``{"cmd": "status"}``: print the counters now.
- ``{"cmd": "quit"}``: close every stream (RST, so no TIME_WAIT pile-up) and exit.

One core has to read what a server core writes, so the load generator must
cost far less per delivery than the server. Streams are plain non-blocking
sockets in two private epoll sets (``streams``): handshakes and the
``--sample`` streams sit in the *prompt* set, read as soon as bytes arrive
(those streams are parsed in full for publish-to-delivery latency and for the
sequence numbers in the message); every other stream sits in the *bulk* set,
read every ``--poll-ms`` so that one ``recv`` carries several events, which
are counted by a marker without parsing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import select
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.procs import raise_fd_limit
from bench.sse_wire import EVENT_MARKER
from bench.streams import ConnectionSets, Stream

CDF_POINTS = 200


def percentile(ordered: Sequence[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class LoadGen:
    """All streams of one run and the counters the orchestrator asks for."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.loop = asyncio.get_running_loop()
        self.args = args
        headers = "".join(f"{h}\r\n" for h in args.header)
        request = (
            f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
            f"Accept: text/event-stream\r\nCache-Control: no-cache\r\n{headers}\r\n"
        ).encode()
        self.sets = ConnectionSets(
            address=(args.host, args.port),
            request=request,
            marker=args.marker.encode(),
            ready_on_body=args.ready_on == "body",
            on_events=self.on_events,
            on_closed=self.on_closed,
        )
        self.streams: list[Stream] = []
        self.target = args.expect
        self.pending = 0  # open streams below the target
        self.all_done = asyncio.Event()
        self.started: float | None = None  # when the first stage began opening
        self.last_done = 0.0
        self.round_first: float | None = None
        self.round_last = 0.0
        self.round_base = 0  # events counted before this round
        total = max(args.stages)
        self.sample_every = max(1, total // max(1, args.sample)) if args.sample else 0
        self._bulk_handle: asyncio.TimerHandle | None = None
        self.loop.add_reader(self.sets.prompt_fd, self.sets.poll_prompt)
        self._schedule_bulk()

    # Bulk reading of the counted streams.
    def _schedule_bulk(self) -> None:
        self._bulk_handle = self.loop.call_later(self.args.poll_ms / 1000, self._bulk)

    def _bulk(self) -> None:
        self.sets.poll_bulk()
        self._schedule_bulk()

    # Callbacks from streams.
    def on_events(self, stream: Stream, now: float) -> None:
        if self.round_first is None:
            self.round_first = now
        self.round_last = now
        if self.target and stream.done_at is None and stream.count >= self.target:
            stream.done_at = now
            self.last_done = now
            self._one_done()

    def on_closed(self, stream: Stream) -> None:
        if self.target and stream.done_at is None and stream.head is not None:
            stream.done_at = -1.0  # will never get there
            self._one_done()

    def _one_done(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.all_done.set()

    def _retarget(self, target: int) -> None:
        self.target = target
        self.pending = 0
        self.all_done.clear()
        now = time.monotonic()
        for stream in self.streams:
            stream.done_at = None
            if stream.closed or stream.head is None:
                stream.done_at = -1.0
            elif stream.count >= target:
                stream.done_at = now
            else:
                self.pending += 1
        if self.pending == 0:
            self.all_done.set()

    # Opening streams.
    async def open_stage(self, total: int) -> dict[str, Any]:
        want = total - len(self.streams)
        limit = asyncio.Semaphore(self.args.concurrency)
        started = time.monotonic()
        if self.started is None:
            self.started = started
        interval = 1.0 / self.args.rate if self.args.rate > 0 else 0.0
        base = len(self.streams)
        opening: list[Stream] = []

        def opened(stream: Stream) -> None:
            limit.release()
            if stream.error and self.target and stream.done_at is None:
                stream.done_at = -1.0
                self._one_done()

        for i in range(want):
            await limit.acquire()
            if interval:
                delay = started + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            index = base + i
            sample = self.sample_every > 0 and index % self.sample_every == 0
            stream = self.sets.open(sample=sample, on_open=opened)
            self.streams.append(stream)
            opening.append(stream)
            if self.target:
                self.pending += 1
        # Wait for the last handshakes (the semaphore is free once all of them ended).
        deadline = time.monotonic() + self.args.connect_timeout
        while any(not s.settled for s in opening):
            if time.monotonic() > deadline:
                for s in opening:
                    if not s.settled:
                        self.sets.fail(s, "no response within the connect timeout")
                break
            await asyncio.sleep(0.002)
        seconds = max(s.settled_at for s in opening) - started if opening else 0.0
        opened_ok = sum(1 for s in opening if s.head is not None and s.error is None)
        errors = [s.error for s in opening if s.error]
        return {
            "type": "stage",
            "streams": len(self.streams),
            "opened": opened_ok,
            "failed": len(errors),
            "errors": sorted(set(errors))[:5],
            "seconds": round(seconds, 4),
            "streams_per_s": round(opened_ok / seconds, 1) if seconds > 0 else None,
        }

    # Reports.
    def counters(self) -> dict[str, Any]:
        self.sets.poll_bulk()
        counts = [s.count for s in self.streams]
        target = self.target
        return {
            "streams": len(self.streams),
            "open": sum(1 for s in self.streams if not s.closed and s.head is not None),
            "closed": sum(1 for s in self.streams if s.closed and s.head is not None),
            "failed": sum(1 for s in self.streams if s.error),
            "delivered_total": sum(counts),
            "lost": sum(max(0, target - c) for c in counts) if target else 0,
            "excess": sum(max(0, c - target) for c in counts) if target else 0,
            "complete": sum(1 for c in counts if target and c >= target),
        }

    async def collect(
        self, expect: int, within: float, seqs: dict[str, list[int]]
    ) -> dict[str, Any]:
        begun = time.monotonic()
        self._retarget(expect)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_done.wait(), within)
        if not self.all_done.is_set():
            # Late bytes already in socket buffers still count.
            await asyncio.sleep(self.args.poll_ms / 1000)
        waited = time.monotonic() - begun
        report = {"type": "round", "expect": expect, "waited": round(waited, 3), **self.counters()}
        delivered = report["delivered_total"] - self.round_base
        self.round_base = report["delivered_total"]
        span = (self.round_last - self.round_first) if self.round_first is not None else 0.0
        report["delivered"] = delivered
        report["delivery_span_s"] = round(span, 4)
        report["delivered_per_s"] = round(delivered / span, 1) if span > 0 else None
        report["caught_up_s"] = (
            round(self.last_done - self.started, 4)
            if report["complete"] and self.started is not None and self.last_done
            else None
        )
        report["read_resolution_ms"] = self.args.poll_ms
        report.update(self._sample_report(seqs))
        self.round_first = None
        return report

    def _sample_report(self, seqs: dict[str, list[int]]) -> dict[str, Any]:
        latencies: list[float] = []
        missing = duplicated = unexpected = 0
        others: list[str] = []
        sampled = [s for s in self.streams if s.parser is not None and s.head is not None]
        for stream in sampled:
            assert stream.parser is not None
            result = stream.parser.result
            latencies.extend(result.latencies)
            result.latencies = []
            others.extend(result.other_events[:3])
            for key, times in result.seen.items():
                tag, seq = key
                bounds = seqs.get(tag)
                if bounds is None or not bounds[0] <= seq < bounds[1]:
                    unexpected += times
                duplicated += times - 1
            for tag, (low, high) in seqs.items():
                missing += sum(1 for seq in range(low, high) if (tag, seq) not in result.seen)
        latencies.sort()
        step = max(1, len(latencies) // CDF_POINTS)
        return {
            "sample_streams": len(sampled),
            "sample_events": len(latencies),
            "sample_missing": missing,
            "sample_duplicated": duplicated,
            "sample_unexpected": unexpected,
            "sample_other_events": others[:5],
            "latency_ms": {
                name: None if value is None else round(value * 1000, 3)
                for name, value in (
                    ("p50", percentile(latencies, 0.5)),
                    ("p90", percentile(latencies, 0.9)),
                    ("p99", percentile(latencies, 0.99)),
                    ("max", latencies[-1] if latencies else None),
                )
            },
            "latency_cdf_ms": [round(v * 1000, 3) for v in latencies[::step]],
        }

    def close_all(self) -> None:
        if self._bulk_handle is not None:
            self._bulk_handle.cancel()
        self.loop.remove_reader(self.sets.prompt_fd)
        self.sets.close_all()


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Commands:
    """JSON command lines from stdin, read without a thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._reader = asyncio.StreamReader(limit=1 << 20)
        self._loop = loop

    async def start(self) -> None:
        protocol = asyncio.StreamReaderProtocol(self._reader)
        await self._loop.connect_read_pipe(lambda: protocol, sys.stdin)

    async def next(self) -> dict[str, Any]:
        line = await self._reader.readline()
        if not line:
            return {"cmd": "quit"}
        command: dict[str, Any] = json.loads(line)
        return command


async def run(args: argparse.Namespace) -> None:
    gen = LoadGen(args)
    commands = Commands(gen.loop)
    await commands.start()
    try:
        for total in args.stages:
            if total > len(gen.streams):
                emit(await gen.open_stage(total))
            command = await commands.next()
            while command["cmd"] not in ("continue", "quit"):
                await obey(gen, command)
                command = await commands.next()
            if command["cmd"] == "quit":
                return
        while True:
            command = await commands.next()
            if command["cmd"] == "quit":
                return
            await obey(gen, command)
    finally:
        gen.close_all()
        emit({"type": "done"})


async def obey(gen: LoadGen, command: dict[str, Any]) -> None:
    if command["cmd"] == "collect":
        emit(
            await gen.collect(
                command["expect"], command.get("timeout", 10.0), command.get("seqs", {})
            )
        )
    elif command["cmd"] == "status":
        emit({"type": "status", **gen.counters()})
    else:
        emit({"type": "error", "message": f"unknown command {command!r}"})


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="request target, e.g. /sse?channel=echo")
    parser.add_argument("--header", action="append", default=[], help="extra request header")
    parser.add_argument(
        "--stages", type=lambda s: [int(x) for x in s.split(",")], required=True,
        help="cumulative stream counts, e.g. 1000,5000,15000",
    )  # fmt: skip
    parser.add_argument("--rate", type=float, default=0.0, help="new streams per second (0: max)")
    parser.add_argument("--concurrency", type=int, default=256, help="handshakes in flight")
    parser.add_argument("--connect-timeout", type=float, default=15.0)
    parser.add_argument("--sample", type=int, default=50, help="streams parsed in full")
    parser.add_argument("--expect", type=int, default=0, help="events every stream should get")
    parser.add_argument(
        "--poll-ms", type=float, default=20.0, help="how often counted streams are read"
    )
    parser.add_argument(
        "--ready-on", choices=["head", "body"], default="head",
        help="a stream counts as open on its response head, or on its first body bytes",
    )  # fmt: skip
    parser.add_argument("--marker", default=EVENT_MARKER.decode(), help="counted event marker")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    raise_fd_limit()
    # Thousands of long-lived objects and nothing cyclic: collections only cost pauses.
    gc.disable()
    assert hasattr(select, "epoll"), "the load generator needs Linux (epoll)"
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))


if __name__ == "__main__":
    main()
