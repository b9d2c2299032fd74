"""Noticing that a stream's client left, from ASGI ``receive``, without a task.

A task per stream only to await ``receive()`` costs about a kilobyte per idle
stream. Driving the ``receive()`` coroutine from the callbacks of the futures it
waits on does the same job. A ``receive`` whose coroutine waits on something
other than an asyncio future (another server's) is finished by a task instead.
On the fast path the watch is not needed at all (``gateway._fastpath``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from starlette.types import Message, Receive

from gateway.sse._continuation import Continuation


class Watch(Protocol):
    """A watch on a stream's client, stopped when the stream ends."""

    def stop(self) -> asyncio.Future[None] | None:
        """Stop watching; a task the watch needed, for the caller to await."""
        ...


class DisconnectWatch:
    """Calls ``on_disconnect`` when ``receive()`` says the client left; needs no task."""

    __slots__ = ("_coro", "_on_disconnect", "_pending", "_receive", "_task")

    def __init__(self, receive: Receive, on_disconnect: Callable[[], None]) -> None:
        self._receive = receive
        self._on_disconnect = on_disconnect
        self._coro: Any = None
        self._pending: asyncio.Future[Any] | None = None
        self._task: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._step(None)

    def _step(self, _: object) -> None:
        self._pending = None
        while True:
            if self._coro is None:
                self._coro = self._receive()
            try:
                pending = self._coro.send(None)
            except StopIteration as stop:
                self._coro = None
                message: Message = stop.value
                if message["type"] == "http.disconnect":
                    self._on_disconnect()
                    return
                continue  # the (empty) request body: wait on
            except Exception:
                self._coro = None
                self._on_disconnect()
                return
            if not isinstance(pending, asyncio.Future):
                # Not an asyncio future (another server's receive): let a task drive it.
                self._task = asyncio.ensure_future(self._in_task(pending))
                return
            self._pending = pending
            pending.add_done_callback(self._step)
            return

    async def _in_task(self, pending: Any) -> None:
        # Finish the receive() already started, then keep watching from this task.
        coro, self._coro = self._coro, None
        message: Message = await Continuation(coro, pending)
        while message["type"] != "http.disconnect":
            message = await self._receive()
        self._on_disconnect()

    def stop(self) -> asyncio.Future[None] | None:
        """Stop watching; returns the watch's task, if it needed one, for the caller to await."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        if self._pending is not None:
            self._pending.remove_done_callback(self._step)
            self._pending = None
        if self._coro is not None:
            self._coro.close()
            self._coro = None
        return task
