"""Sampling profiles of the server under test with py-spy (``--profile``).

py-spy attaches to the running server for the length of one scenario and
writes collapsed stacks (``*.folded``, the input of flamegraph tools and
speedscope); ``summarize`` turns them into the share of samples per function,
inclusive and self, for results.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.procs import CLIENT_CORE, pinned

RATE = 250
"""Samples per second: enough for a 10 s scenario, cheap enough not to skew it."""


def _py_spy() -> str | None:
    """py-spy from PATH, or from the virtualenv running the bench (``pip install .[bench]``)."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def available() -> bool:
    return _py_spy() is not None


@contextlib.asynccontextmanager
async def sampling(pid: int, out: Path) -> AsyncIterator[Path]:
    """py-spy on ``pid`` (and its children) for the duration of the block."""
    argv = [_py_spy() or "py-spy", "record", "--pid", str(pid), "--subprocesses", "--format", "raw"]
    argv += ["--rate", str(RATE), "--nonblocking", "--output", str(out)]
    with out.with_suffix(".log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *pinned(CLIENT_CORE, argv), stdout=log, stderr=log
        )
    try:
        await asyncio.sleep(0.5)  # attached before the scenario starts
        yield out
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def _frame_name(frame: str) -> str:
    """``"_flush (gateway/hub.py:276)"`` -> ``"gateway/hub.py:_flush"``."""
    name, _, where = frame.partition(" (")
    path = where.split(":")[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "/lib/python3" in path:
        path = "stdlib/" + path.rsplit("/", 1)[-1]
    elif "/work/" in path or path.startswith("/"):
        parts = path.split("/")
        path = "/".join(parts[-2:])
    return f"{path}:{name.strip()}"


def summarize(folded: Path, top: int = 25) -> dict[str, Any]:
    """Share of samples per function: inclusive (on the stack) and self (on top)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    if not folded.exists():
        return {"error": f"no profile written ({folded.with_suffix('.log')})"}
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")[1:]]  # the first is the process
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return {"samples": 0}

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(n / total * 100, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "inclusive_pct": share(inclusive), "self_pct": share(own)}
