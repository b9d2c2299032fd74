"""Processes of a run: free ports, CPU pinning, startup checks and clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SERVER_CORE = "0"
CLIENT_CORE = "1"
REDIS_SERVER = "/usr/bin/redis-server"


class CompilerUnavailable(RuntimeError):
    """No C compiler: the C clients of the bench cannot be built."""


class StartupError(RuntimeError):
    """A process did not come up (its log tail is in the message)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def build_c(source: Path, run_dir: Path) -> Path:
    """A C client of the bench (``bench/*.c``) compiled into ``run_dir``, once per run."""
    binary = run_dir / source.stem
    if binary.exists():
        return binary
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise CompilerUnavailable(f"no C compiler (gcc) for {source.name}")
    subprocess.run([cc, "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


_CORES = len(os.sched_getaffinity(0))
"""Cores this run may use, read at import: the orchestrator later pins itself to one."""


def cpu_count() -> int:
    return _CORES


def pinned(core: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` under ``taskset -c core`` (taskset execs, so the pid stays the same)."""
    if core is None or shutil.which("taskset") is None or cpu_count() < 2:
        return list(argv)
    return ["taskset", "-c", core, *argv]


@dataclass
class Proc:
    """A started process and the log file that holds its output."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, within: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``within``; returns the exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), within)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return self.process.returncode


async def start_process(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
) -> Proc:
    """Start ``argv`` with stdout and stderr into ``log_dir/name.log``."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    return Proc(name, process, log_path)


async def wait_for_port(proc: Proc, port: int, within: float = 20.0) -> None:
    """Wait until ``port`` accepts a connection; fail early if ``proc`` exits."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.process.returncode is not None:
            raise StartupError(
                f"{proc.name} exited with {proc.process.returncode}:\n{proc.log_tail()}"
            )
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise StartupError(f"{proc.name} did not listen on {port} within {within}s:\n{proc.log_tail()}")


async def start_redis(
    log_dir: Path, *, name: str = "redis", core: str | None = CLIENT_CORE
) -> tuple[Proc, str]:
    """A throwaway redis-server (no persistence) on a free port; returns it and its URL."""
    port = free_port()
    argv = [
        REDIS_SERVER,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--maxclients", "20000",
        "--dir", str(log_dir),
    ]  # fmt: skip
    proc = await start_process(name, pinned(core, argv), log_dir=log_dir)
    await wait_for_port(proc, port)
    return proc, f"redis://127.0.0.1:{port}/0"


@contextlib.asynccontextmanager
async def running(proc: Proc) -> AsyncIterator[Proc]:
    """Stop ``proc`` when the block ends, however it ends."""
    try:
        yield proc
    finally:
        await proc.stop()
