"""``python -m bench``: run the side-by-side benchmark and write results.json and results.md."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from bench import metrics_cost, report, suite
from bench.procs import CLIENT_CORE, ROOT, cpu_count, raise_fd_limit
from bench.procstat import load_average
from bench.profiles import FULL, QUICK
from bench.systems import SYSTEMS


def _names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return names

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the gateway side by side with nginx+nchan and a seed-style "
        "FastAPI app: fan-out, CPU per delivery, memory per stream, connection and resume "
        "storms, multiplexing; a do-nothing Python server (floor) in the reconnect storm. "
        "Starts every process itself on free loopback ports.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny versions of every scenario (<1 min)"
    )
    parser.add_argument(
        "--only",
        type=_names(SYSTEMS),
        default=list(SYSTEMS),
        help=f"systems (default: all): {','.join(SYSTEMS)}",
    )
    parser.add_argument(
        "--scenarios", type=_names(suite.SCENARIOS), default=list(suite.SCENARIOS),
        help=f"scenarios (default: all): {','.join(suite.SCENARIOS)}",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results dir")
    parser.add_argument("--plots", action="store_true", help="write PNG plots (needs matplotlib)")
    parser.add_argument("--plots-dir", type=Path, default=ROOT / "docs", help="where the PNGs go")
    parser.add_argument(
        "--sweep", action=argparse.BooleanOptionalAction, default=None,
        help="fan-out at other subscriber counts too (default: on for the full run, off in quick)",
    )  # fmt: skip
    parser.add_argument("--soak", action="store_true", help="10 minutes at half the max rate")
    parser.add_argument("--soak-seconds", type=float, help="override the soak duration")
    parser.add_argument(
        "--scaling", action="store_true", help="fan-out and storm again with --workers 2"
    )
    parser.add_argument(
        "--profile", type=_names(suite.SCENARIOS), default=[], metavar="SCENARIOS",
        help="sample the Python servers with py-spy during these scenarios "
        "(collapsed stacks in <out>/profiles, a summary in results.json)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-cost", action="store_true",
        help="what metrics cost (ours only): instructions per delivery and per scrape with "
        "SSE_METRICS=true vs =false under callgrind, and CPU per delivery at the moderate load "
        f"and the fan-out search with metrics on (scraped every {metrics_cost.SCRAPE_SECONDS:g} s) "
        "and off",
    )  # fmt: skip
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    log = logging.getLogger("bench")
    raise_fd_limit()
    if cpu_count() >= 2:
        # The publisher runs in this process: keep it off the server's core.
        os.sched_setaffinity(0, {int(CLIENT_CORE)})
    else:
        log.warning("only one core: server and load generator share it, figures are not comparable")
    profile = QUICK if args.quick else FULL
    if args.soak_seconds:
        profile = replace(profile, soak_seconds=args.soak_seconds)
    run_dir = Path(tempfile.mkdtemp(prefix="sse-bench-"))
    opts = suite.Options(
        profile=profile,
        systems=args.only,
        scenarios=args.scenarios,
        run_dir=run_dir,
        soak=args.soak,
        scaling=args.scaling,
        sweep=not args.quick if args.sweep is None else args.sweep,
        py_spy=args.profile,
        profile_dir=args.out / "profiles",
        metrics_cost=args.metrics_cost,
    )
    begun, load_before = time.monotonic(), load_average()
    results = asyncio.run(suite.run(opts))
    results["command"] = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    results["machine"] = report.machine()
    results["machine"]["load_average_before_after"] = [load_before, load_average()]
    results["elapsed_s"] = round(time.monotonic() - begun, 1)
    lost = report.lost_anywhere(results["systems"])
    results["nothing_lost"] = not lost
    results["lost_in"] = lost
    # The baselines losing events under overload is a result; our gateway losing one is a bug.
    ours_lost = lost.get("ours", [])
    errors = [
        f"{system}/{name}"
        for system, data in results["systems"].items()
        for name, value in data.items()
        if name == "error" or (isinstance(value, dict) and "error" in value)
    ]
    results["errors"] = errors
    if errors or ours_lost or args.keep_logs:
        results["logs"] = str(run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        results["logs"] = None
    json_path, md_path = report.write(results, args.out)
    if args.plots:
        from bench import plots  # matplotlib is only needed here

        for path in plots.write_all(results, args.plots_dir):
            log.info("wrote %s", path)
    print(md_path.read_text())
    log.info("wrote %s and %s in %.0fs", json_path, md_path, results["elapsed_s"])
    if errors:
        log.error("errors in: %s (details in results.json, logs in %s)", ", ".join(errors), run_dir)
        return 2
    if lost:
        log.warning("events lost or duplicated: %s", lost)
    if ours_lost:
        log.error("our gateway lost or duplicated events in %s (logs in %s)", ours_lost, run_dir)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
