"""Issue 14: instructions per new stream, counted by callgrind while streams open.

CPU per new stream in the reconnect storm moves by ±20% from round to round on this
VM, more when other processes share the server's core; instructions do not. The
gateway runs under callgrind (``bench.callgrind``); a warm-up storm opens and closes
some streams, and once they are gone the count runs while ``bench/storm.c`` opens
``streams`` more with one client in flight, until the last is answered (its streams'
teardown is not counted). ``python -m bench.open_instructions [--streams N]``
prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.storm import storm, storm_argv
from bench.systems import started

WARM_UP_STREAMS = 200
SETTLE_SECONDS = 5.0
"""Time for the warm-up's closed streams to be torn down before counting starts."""
QUIET = {"SSE_PING_INTERVAL": "3600"}
"""No keep-alive round during the count: under callgrind a storm takes minutes, and
each round writes to every open stream, as often as the machine's load stretches it."""


async def open_instructions(run_dir: Path, streams: int) -> dict[str, Any]:
    """Instructions the gateway executes per new stream (one client in flight)."""
    async with started("ours", run_dir, count_instructions=True, env=QUIET) as server:
        await storm(server, run_dir, clients=WARM_UP_STREAMS, in_flight=1)
        await asyncio.sleep(SETTLE_SECONDS)
        await server.wait_idle()
        argv = storm_argv(server, run_dir, clients=streams, in_flight=1)
        assert server.instructions is not None
        client = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert client.stdout is not None
        assert client.stdin is not None
        try:
            async with server.instructions.counting() as counted:
                line = await asyncio.wait_for(client.stdout.readline(), max(600.0, streams))
        finally:
            client.stdin.write(b"close\n")
            await client.stdin.drain()
            client.stdin.close()
            await client.wait()
        result: dict[str, Any] = json.loads(line)
        answered = int(result["answered"])
        return {
            "streams": streams,
            "answered": answered,
            "instructions": counted[0],
            "instructions_per_new_stream": round(counted[0] / answered) if answered else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="open-instructions-") as run_dir:
        print(json.dumps(asyncio.run(open_instructions(Path(run_dir), args.streams))))


if __name__ == "__main__":
    main()
