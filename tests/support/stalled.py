"""Hostile clients on raw sockets: stalled resumers, and what a gateway process holds for them.

A stalled client sends its request with a tiny receive buffer and never reads; the
gateway's side of the connection fills and stays full. ``GatewayFootprint`` reads the
gateway process's RSS and open descriptors, to show what such clients cost it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import psutil

from tests.support.raw_sse import request_bytes


def stalled_resumers(
    port: int, channels: Sequence[str], count: int, *, last_event_id: str, rcvbuf: int = 4096
) -> list[socket.socket]:
    """``count`` sockets that asked for ``channels`` from ``last_event_id`` and never read."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", port))
            sock.sendall(request_bytes(port, channels, last_event_id))
    except BaseException:
        close_all(sockets)
        raise
    return sockets


def close_all(sockets: Sequence[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


@dataclass
class GatewayFootprint:
    """RSS and open descriptors of a gateway process."""

    process: psutil.Process

    @classmethod
    def of(cls, pid: int) -> GatewayFootprint:
        return cls(psutil.Process(pid))

    @property
    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    @property
    def fds(self) -> int:
        return int(self.process.num_fds())

    async def settle(self, *, quiet: float = 1.0, timeout: float = 60) -> int:
        """The RSS once it has grown by less than 1 MiB during ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        last = self.rss
        while True:
            await asyncio.sleep(quiet)
            now = self.rss
            if abs(now - last) < 2**20 or time.monotonic() > deadline:
                return now
            last = now


async def healthz_seconds(base_url: str, timeout: float = 30) -> float:
    """How long ``GET /healthz`` takes to answer (raises if it does not answer 200)."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=timeout) as client:
        response = await client.get(f"{base_url}/healthz")
    assert response.status_code == 200, response.text
    return time.monotonic() - started
