"""A Redis per test: testcontainers when a Docker engine answers, else a local redis-server.

Both flavours can be stopped, started again on the same port (keeping their data: AOF is
on) and restarted empty, so tests can break Redis on purpose. 127.0.0.1:6379 is never used.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Protocol

from tests.support.ports import free_port, wait_for_port


class RedisServer(Protocol):
    port: int

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...

    def restart(self, *, empty: bool = False) -> None: ...

    def close(self) -> None: ...


class LocalRedisServer:
    """``redis-server`` on a free port with its own directory, AOF on (fsync always).

    ``port``, ``options`` (more ``--name value`` arguments) and ``appendfsync`` let a
    variant (a cluster node) reuse the rest.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        options: Sequence[str] = (),
        appendfsync: str = "always",
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        self.binary = binary
        self.port = port or free_port()
        self.options = tuple(options)
        self.appendfsync = appendfsync
        self.directory = Path(tempfile.mkdtemp(prefix=f"sse-test-redis-{self.port}-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", self.appendfsync,
                "--daemonize", "no",
                "--loglevel", "warning",
                "--logfile", str(self.directory / "redis.log"),
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if not wait_for_port(self.port, timeout=10):
            log = self.log()[-2000:]
            self.kill()
            raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits; a later start() has the data back."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def restart(self, *, empty: bool = False) -> None:
        self.stop()
        if empty:
            for child in self.directory.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                elif child.name != "redis.log":
                    child.unlink()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


class ContainerRedisServer:
    """testcontainers' RedisContainer bound to a fixed host port, so restarts keep the URL."""

    def __init__(self) -> None:
        self.port = free_port()
        self.container: object | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from testcontainers.redis import RedisContainer

        if self.container is not None:
            self.container.get_wrapped_container().start()  # type: ignore[attr-defined]
        else:
            container = RedisContainer("redis:7-alpine").with_bind_ports(6379, self.port)
            container.with_command("redis-server --appendonly yes --appendfsync always")
            container.start()
            self.container = container
        if not wait_for_port(self.port, timeout=30):
            raise RuntimeError("the Redis container did not answer")
        time.sleep(0.2)

    def stop(self) -> None:
        if self.container is not None:
            self.container.get_wrapped_container().stop(timeout=10)  # type: ignore[attr-defined]

    def kill(self) -> None:
        if self.container is not None:
            self.container.get_wrapped_container().kill()  # type: ignore[attr-defined]

    def restart(self, *, empty: bool = False) -> None:
        if empty:
            self.close()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        if self.container is not None:
            self.container.stop()  # type: ignore[attr-defined]
            self.container = None


@cache
def docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


def new_redis_server(*, prefer_container: bool = True) -> RedisServer:
    """A started Redis. Container when Docker answers (and wanted), else a local process."""
    server: RedisServer
    if prefer_container and docker_engine_answers():
        server = ContainerRedisServer()
    else:
        server = LocalRedisServer()
    server.start()
    return server
