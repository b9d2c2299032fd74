"""The reconnect storm (issue 14): many clients open a stream, a bounded number at a time.

A deploy or a network blip reconnects every client at once; what they wait for is how
many new streams per second the server answers. The client is ``bench/storm.c``, built
with gcc into the run directory at bench time and pinned to the client core: a Python
client limits nchan before nchan limits itself. CPU per new stream is the server tree's
utime+stime over the storm (from its first connect to its last answer) over the streams
answered.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench.procs import CLIENT_CORE, SERVER_CORE, build_c, pinned
from bench.procstat import core_busy_seconds
from bench.systems import Server

SOURCE = Path(__file__).with_name("storm.c")


def build(run_dir: Path) -> Path:
    """``storm.c`` compiled into ``run_dir`` (once per run)."""
    return build_c(SOURCE, run_dir)


def storm_argv(
    server: Server, run_dir: Path, *, clients: int, in_flight: int, channel: str = "storm"
) -> list[str]:
    """The command line of a ``storm.c`` client against ``server`` (built if need be)."""
    return [
        str(build(run_dir)),
        "127.0.0.1",
        str(server.port),
        server.sse_path([channel]),
        str(clients),
        str(in_flight),
        server.ready_on,
    ]


async def storm(
    server: Server,
    run_dir: Path,
    *,
    clients: int,
    in_flight: int,
    channel: str = "storm",
    header: str = "",
) -> dict[str, Any]:
    """``clients`` streams opened with at most ``in_flight`` unanswered; measured with all
    of them open, then closed (RST) before returning."""
    argv = storm_argv(server, run_dir, clients=clients, in_flight=in_flight, channel=channel)
    if header:
        argv.append(header)
    await server.wait_idle()
    before = server.usage()
    core_before, began = core_busy_seconds(int(SERVER_CORE)), time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *pinned(CLIENT_CORE, argv),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), max(120.0, clients / 100))
        after = server.usage()
        core_busy = core_busy_seconds(int(SERVER_CORE)) - core_before
        elapsed = time.monotonic() - began
        result: dict[str, Any] = json.loads(line)
    finally:
        if proc.returncode is None:
            proc.stdin.write(b"close\n")
            await proc.stdin.drain()
            proc.stdin.close()
            await proc.wait()
    answered = result["answered"]
    cpu = after.cpu_seconds - before.cpu_seconds
    kernel = after.system_seconds - before.system_seconds
    result.update(
        in_flight=in_flight,
        server_cpu_s=round(cpu, 3),
        cpu_us_per_new_stream=round(cpu / answered * 1e6, 1) if answered else None,
        kernel_us_per_new_stream=round(kernel / answered * 1e6, 1) if answered else None,
        server_rss_mb=round(after.rss_bytes / 1024 / 1024, 1),
        # The server core's time given to other processes (a busy machine shows here).
        server_core_others_pct=round(max(0.0, core_busy - cpu) / max(elapsed, 1e-9) * 100, 1),
    )
    return result
