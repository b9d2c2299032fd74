"""Instructions per resuming stream, counted under callgrind (``bench.callgrind``).

    python -m bench.resume_count [--clients 1000] [--behind 100] [--warm 100]

``resume_storm``'s wall-clock figure moves with whatever else the 2-core machine runs;
this counts what the server executes while ``clients`` streams open at once with a
cursor ``behind`` events back and catch up (the same load generator and cursor as the
scenario), after ``warm`` streams did the same so that first-use paths are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from bench import systems
from bench.loadgen_control import loadgen
from bench.publisher import GatewaySink, publish_at_rate
from bench.systems import started


async def count(
    clients: int, behind: int, warm: int, concurrency: int, run_dir: Path
) -> dict[str, object]:
    channel = "resume"
    async with started("ours", run_dir, count_instructions=True) as server:
        assert server.redis_url is not None
        assert server.instructions is not None
        sink = GatewaySink(server.redis_url)
        try:
            history = await publish_at_rate(
                sink, [channel], rate=20_000, count=behind + 1, keep_ids=True, in_flight=1
            )
        finally:
            await sink.aclose()
        cursor = f"{channel}={history.ids[0]}"
        async with loadgen(
            port=server.port,
            path=server.sse_path([channel]),
            stages=[warm, warm + clients],
            log_dir=run_dir,
            sample=10,
            expect=behind,
            concurrency=concurrency,
            headers=[f"Last-Event-ID: {cursor}"],
            ready_on=server.ready_on,
        ) as lg:
            await lg.stage(within=600.0)
            await lg.collect(behind, 600.0)
            before = await server.stats() or {}
            async with server.instructions.counting() as counted:
                stage = await lg.next_stage(within=1200.0)
                caught = await lg.collect(behind, 1200.0)
            after = await server.stats() or {}
        return {
            "clients": clients,
            "behind": behind,
            "failed": stage["failed"],
            "errors": stage.get("errors"),
            "complete": caught["complete"],
            "history_redis_reads": _reads(after) - _reads(before),
            "instructions": counted[0],
            "per_stream": round(counted[0] / clients),
        }


def _reads(stats: dict[str, Any]) -> int:
    return int(stats.get("history", {}).get("redis_reads", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--behind", type=int, default=100)
    parser.add_argument("--warm", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    # Starting under callgrind takes minutes when the 2 cores are shared with other runs.
    systems.CALLGRIND_START_SECONDS = max(systems.CALLGRIND_START_SECONDS, 900.0)
    with tempfile.TemporaryDirectory(prefix="resume-count-") as tmp:
        result = asyncio.run(
            count(args.clients, args.behind, args.warm, args.concurrency, Path(tmp))
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
