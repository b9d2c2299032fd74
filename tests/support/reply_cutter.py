"""A loopback TCP proxy in front of Redis that lets one command run, then loses its reply.

It forwards everything, until a client sends a chunk containing ``trigger`` (e.g.
``b"EVALSHA"``): that command reaches Redis and runs, but the connection is then cut
before the reply gets back. This is the failure a retrying client cannot tell from
"never arrived".
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self


class ReplyCutter:
    def __init__(self, upstream_port: int, trigger: bytes, cuts: int = 1) -> None:
        self.upstream_port = upstream_port
        self.trigger = trigger
        self.cuts_left = cuts
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        triggered = asyncio.Event()
        up = asyncio.create_task(self._client_to_redis(client_r, upstream_w, triggered))
        down = asyncio.create_task(self._redis_to_client(upstream_r, client_w, triggered))
        self._pipes |= {up, down}
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in (up, down):
                pipe.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            self._pipes -= {up, down}
            for writer in (client_w, upstream_w):
                writer.close()

    async def _client_to_redis(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, triggered: asyncio.Event
    ) -> None:
        while chunk := await reader.read(65536):
            if self.cuts_left and self.trigger in chunk:
                self.cuts_left -= 1
                triggered.set()
            writer.write(chunk)
            await writer.drain()

    async def _redis_to_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, triggered: asyncio.Event
    ) -> None:
        while chunk := await reader.read(65536):
            if triggered.is_set():
                return  # the command ran on Redis; its reply is lost with the connection
            writer.write(chunk)
            await writer.drain()
