"""Instructions the server executes in a block, counted by valgrind's callgrind.

CPU time per delivery moves by ±10% between two runs of the same code on this VM
(steal, caches, the load generator's batching), so a difference of a few percent
cannot be read from it. Instructions can: the same work counts the same to within
a fraction of a percent, whatever else the machine runs. The server is started
under callgrind with instrumentation off (``wrap``); ``Counter.counting`` turns it
on for one block and reads the total from the dump that ends the block. Under
callgrind the server runs some 50x slower, so only light loads can be counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

VALGRIND = "valgrind"
CONTROL = "callgrind_control"


class CallgrindUnavailable(RuntimeError):
    """valgrind (with callgrind_control) is not installed."""


def available() -> bool:
    return shutil.which(VALGRIND) is not None and shutil.which(CONTROL) is not None


def wrap(argv: Sequence[str], out_file: Path) -> list[str]:
    """``argv`` run under callgrind, counting nothing until told to."""
    if not available():
        raise CallgrindUnavailable(
            "valgrind and callgrind_control are needed (apt-get install valgrind)"
        )
    return [
        VALGRIND,
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_file}",
        *argv,
    ]


@dataclass
class Counter:
    """Counts instructions of the callgrind'ed process ``pid`` block by block."""

    pid: int
    out_file: Path
    """The ``--callgrind-out-file`` given to ``wrap``: dumps are written beside it."""
    _seen: set[Path] = field(default_factory=set)

    @contextlib.asynccontextmanager
    async def counting(self) -> AsyncIterator[list[int]]:
        """Count the instructions executed while the block runs; the list holds the
        total once the block is over."""
        got: list[int] = []
        await self._control("--instr=on")
        try:
            yield got
        finally:
            await self._control("--instr=off")
            # A dump holds what was counted since the previous one (or the start).
            await self._control("--dump")
            got.append(self._newest_total())

    async def _control(self, option: str) -> None:
        process = await asyncio.create_subprocess_exec(
            CONTROL,
            option,
            str(self.pid),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{CONTROL} {option} {self.pid}: {output.decode(errors='replace')}")

    def _newest_total(self) -> int:
        # ``out_file`` itself is written at exit; the dumps asked for are ``out_file.N``.
        dumps = set(self.out_file.parent.glob(f"{self.out_file.name}.*")) - self._seen
        if len(dumps) != 1:
            raise RuntimeError(f"expected one new callgrind dump, found {sorted(dumps)}")
        dump = dumps.pop()
        self._seen.add(dump)
        return dump_total(dump)


def dump_total(path: Path) -> int:
    """The instruction count (``summary:`` or ``totals:`` line) of one callgrind dump."""
    total = None
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
    if total is None:
        raise RuntimeError(f"no instruction total in {path}")
    return total
