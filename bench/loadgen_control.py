"""The orchestrator's handle on a load generator process (``bench.loadgen``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from bench.procs import CLIENT_CORE, PYTHON, ROOT, pinned


class LoadgenError(RuntimeError):
    """The load generator died or answered something unexpected."""


class Loadgen:
    """Sends JSON commands to a load generator's stdin and reads its JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self._process = process
        self._log_path = log_path

    async def _read(self, kind: str, within: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), within)
        except TimeoutError:
            raise LoadgenError(f"no {kind} report within {within:.0f}s") from None
        if not line:
            tail = self._log_path.read_text(errors="replace")[-2000:]
            raise LoadgenError(f"load generator exited (waiting for {kind}):\n{tail}")
        message: dict[str, Any] = json.loads(line)
        if message.get("type") != kind:
            raise LoadgenError(f"expected a {kind} report, got {message}")
        return message

    async def _send(self, command: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write((json.dumps(command) + "\n").encode())
        await self._process.stdin.drain()

    async def stage(self, within: float = 120.0) -> dict[str, Any]:
        """Wait for the report of the stage being opened."""
        return await self._read("stage", within)

    async def next_stage(self, within: float = 120.0) -> dict[str, Any]:
        await self._send({"cmd": "continue"})
        return await self.stage(within)

    async def collect(
        self, expect: int, within: float, seqs: dict[str, tuple[int, int]] | None = None
    ) -> dict[str, Any]:
        """Wait until every stream has ``expect`` events (or ``within``); the round report."""
        await self._send(
            {
                "cmd": "collect",
                "expect": expect,
                "timeout": within,
                "seqs": {tag: list(bounds) for tag, bounds in (seqs or {}).items()},
            }
        )
        return await self._read("round", within + 60.0)

    async def status(self) -> dict[str, Any]:
        await self._send({"cmd": "status"})
        return await self._read("status", 30.0)

    async def quit(self) -> None:
        if self._process.returncode is None:
            with contextlib.suppress(ConnectionError, LoadgenError):
                await self._send({"cmd": "quit"})
                await self._read("done", 30.0)
            try:
                await asyncio.wait_for(self._process.wait(), 10.0)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()


@contextlib.asynccontextmanager
async def loadgen(
    *,
    port: int,
    path: str,
    stages: Sequence[int],
    log_dir: Path,
    headers: Sequence[str] = (),
    rate: float = 0.0,
    concurrency: int = 256,
    sample: int = 50,
    expect: int = 0,
    ready_on: str = "head",
    core: str | None = CLIENT_CORE,
) -> AsyncIterator[Loadgen]:
    """A load generator process; it is told to quit when the block ends."""
    argv = [
        PYTHON, "-m", "bench.loadgen",
        "--port", str(port),
        "--path", path,
        "--stages", ",".join(str(n) for n in stages),
        "--rate", str(rate),
        "--concurrency", str(concurrency),
        "--sample", str(sample),
        "--expect", str(expect),
        "--ready-on", ready_on,
    ]  # fmt: skip
    for header in headers:
        argv += ["--header", header]
    log_path = log_dir / "loadgen.log"
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *pinned(core, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=ROOT,
            limit=1 << 20,
        )
    handle = Loadgen(process, log_path)
    try:
        yield handle
    finally:
        await handle.quit()
