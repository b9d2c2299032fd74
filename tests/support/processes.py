"""Gateway and producer processes, started the way a user starts them (python -m ...)."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    module: str, *args: str, env: dict[str, str] | None = None, inherit_env: bool = True
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` to completion; ``inherit_env=False`` starts from a bare
    environment so that no SSE_* variable of the caller leaks in."""
    base = dict(os.environ) if inherit_env else {"PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**base, **(env or {})},
        check=False,
    )


def _limit_open_files(count: int) -> Callable[[], None]:
    """For ``preexec_fn``: the child may hold at most ``count`` descriptors."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))

    return limit


class ManagedProcess:
    """A child process whose output goes to a log file; ended by its own PID only."""

    def __init__(
        self, args: list[str], env: dict[str, str], name: str, *, open_files: int | None = None
    ) -> None:
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"sse-test-{name}-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if open_files is None else _limit_open_files(open_files),
            # A group of its own: what it starts (uvicorn's workers) can be ended with it.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then SIGKILL to its whole process group if it does not exit in time
        (a supervisor killed alone would leave its workers running)."""
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            return self.process.wait(timeout=10)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def close(self) -> None:
        if self.process.poll() is None:
            self.stop()
        self._kill_group()  # anything of it still left (a worker whose supervisor was killed)
        self._log.close()
        self.log_path.unlink(missing_ok=True)


PORT_ATTEMPTS = 3
"""Ports tried for a gateway whose free port another test's server took first."""


class PortTaken(RuntimeError):
    """The gateway's port answers, but from another process."""


class GatewayProcess(ManagedProcess):
    def __init__(
        self,
        redis_url: str,
        *,
        env: dict[str, str] | None = None,
        workers: int = 1,
        port: int | None = None,
        args: list[str] | None = None,
        open_files: int | None = None,
        ready_timeout: float = 30,
    ) -> None:
        env = {"REDIS_URL": redis_url, **(env or {})}
        for attempt in range(PORT_ATTEMPTS):
            self.port = port or free_port()
            argv = [sys.executable, "-m", "gateway", "--host", "127.0.0.1"]
            argv += ["--port", str(self.port)]
            if workers != 1:
                argv += ["--workers", str(workers)]
            argv += args or []
            super().__init__(argv, env, name="gateway", open_files=open_files)
            try:
                self.wait_ready(ready_timeout)
                return
            except PortTaken:
                self.close()
                if port is not None or attempt == PORT_ATTEMPTS - 1:
                    raise
            except BaseException:
                self.close()  # never handed to a fixture: nobody else would stop it
                raise

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    if not self._listens():
                        # Another test's server took the port between free_port() and
                        # this one's bind: what answered is not this gateway.
                        raise PortTaken(f"port {self.port} answers, but not from this gateway")
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.log()}")

    def _listens(self) -> bool:
        """Whether this gateway's process (or a worker of it) listens on its port."""
        try:
            root = psutil.Process(self.process.pid)
            for proc in [root, *root.children(recursive=True)]:
                for conn in proc.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr.port == self.port:
                        return True
        except psutil.Error:
            pass
        return False

    def stats(self) -> dict[str, object]:
        data: dict[str, object] = httpx.get(f"{self.base_url}/stats", timeout=10).json()
        return data

    def open_streams(self) -> int:
        streams = self.stats()["streams"]
        assert isinstance(streams, dict)
        count: int = streams["open"]
        return count


class ProducerProcess(ManagedProcess):
    def __init__(
        self,
        redis_url: str,
        kind: str,
        *,
        message: str = "hello",
        interval: float = 1.0,
        count: int | None = None,
        channel: str | None = None,
        log_level: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        args = [sys.executable, "-m", "producers", kind, "--message", message]
        if log_level is not None:
            args += ["--log-level", log_level]
        args += ["--interval", str(interval)]
        if count is not None:
            args += ["--count", str(count)]
        if channel is not None:
            args += ["--channel", channel]
        super().__init__(args, {"REDIS_URL": redis_url, **(env or {})}, name=f"producer-{kind}")
