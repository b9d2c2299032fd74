"""``python -m bench.floor``: the reconnect storm against the floor server, at several burns.

The floor server (``bench/baselines/floor_server.py``) answers a new stream and does
nothing else; ``--burn-us`` makes it spin that long in user space per stream first, as a
real gateway's Python work would. Run with 0 and 200 µs, the table shows what that work
costs besides itself: on loopback the storm client sleeps between answers and every
answer's write wakes it, so a slower server also pays more kernel time per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.procs import CLIENT_CORE, cpu_count, raise_fd_limit
from bench.profiles import FULL
from bench.storm import storm
from bench.systems import started


async def measure(
    burn_us: float, run_dir: Path, *, clients: int, in_flight: int, rounds: int
) -> dict[str, Any]:
    """``rounds`` storms against one floor server spinning ``burn_us`` per stream; medians."""
    label = f"floor-burn{burn_us:g}"
    async with started("floor", run_dir, label=label, burn_us=burn_us) as server:
        done = [
            await storm(server, run_dir, clients=clients, in_flight=in_flight)
            for _ in range(rounds)
        ]

    def median(key: str) -> float | None:
        values = [r[key] for r in done if r[key] is not None]
        return statistics.median(values) if values else None

    return {
        "burn_us": burn_us,
        "new_streams_per_s": median("new_streams_per_s"),
        "cpu_us_per_new_stream": median("cpu_us_per_new_stream"),
        "kernel_us_per_new_stream": median("kernel_us_per_new_stream"),
        "failed": sum(r["failed"] for r in done),
        "first_error": next((r["first_error"] for r in done if r["first_error"]), ""),
        "rounds": done,
    }


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: one line per burn."""

    def cell(value: float | None, digits: int) -> str:
        return "n/a" if value is None else f"{value:,.{digits}f}"

    lines = [
        "| burn µs | new streams/s | CPU µs/new stream | of which kernel µs | failed |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['burn_us']:g} | {cell(r['new_streams_per_s'], 0)} "
            f"| {cell(r['cpu_us_per_new_stream'], 1)} "
            f"| {cell(r['kernel_us_per_new_stream'], 1)} | {r['failed']:,} |"
        )
    return "\n".join(lines)


def _burns(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.floor", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--burn-us", type=_burns, default=[0.0, 200.0], help="comma-separated (default: 0,200)"
    )
    parser.add_argument("--clients", type=int, default=FULL.storm_clients)
    parser.add_argument("--in-flight", type=int, default=FULL.storm_in_flight)
    parser.add_argument("--rounds", type=int, default=FULL.storm_rounds)
    return parser


async def run(args: argparse.Namespace, run_dir: Path) -> list[dict[str, Any]]:
    return [
        await measure(
            burn, run_dir, clients=args.clients, in_flight=args.in_flight, rounds=args.rounds
        )
        for burn in args.burn_us
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raise_fd_limit()
    if cpu_count() >= 2:
        # The storm client runs on the client core too: keep off the server's core.
        os.sched_setaffinity(0, {int(CLIENT_CORE)})
    run_dir = Path(tempfile.mkdtemp(prefix="sse-floor-"))
    try:
        rows = asyncio.run(run(args, run_dir))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(
        f"Floor server, {args.clients:,} clients, {args.in_flight} in flight, "
        f"median of {args.rounds} round(s):\n"
    )
    print(table(rows))
    for r in rows:
        if r["first_error"]:
            print(f"\nburn {r['burn_us']:g} µs, first error: {r['first_error']}")
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
