"""Noticing that a stream's client left, from uvicorn's request cycle, with no coroutine.

The stock way is to await ASGI ``receive()`` until it says ``http.disconnect``
(``gateway.sse.disconnect``). Under ``LeanHttpProtocol`` the cycle's message
event is a ``LightEvent`` that can call back instead of waking a waiter, so the
watch does what uvicorn's ``receive()`` does, from that callback: no coroutine
frame per idle stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import Receive

from gateway._fastpath.protocol import LightEvent


class CycleWatch:
    """Calls ``on_disconnect`` once the cycle behind ``receive`` says the client left."""

    __slots__ = ("_cycle", "_on_disconnect")

    def __init__(self, cycle: Any, on_disconnect: Callable[[], None]) -> None:
        self._cycle: Any = cycle
        self._on_disconnect = on_disconnect

    @classmethod
    def of(cls, receive: Receive, on_disconnect: Callable[[], None]) -> CycleWatch | None:
        """A watch on ``receive``'s cycle if it is one of ``LeanHttpProtocol``'s, else None."""
        cycle = getattr(receive, "__self__", None)
        if (
            type(getattr(cycle, "message_event", None)) is LightEvent
            and getattr(cycle, "waiting_for_100_continue", True) is False
        ):
            return cls(cycle, on_disconnect)
        return None

    def start(self) -> None:
        self._watch()

    def _watch(self) -> None:
        """uvicorn's ``receive()`` in a loop, until it would say ``http.disconnect``."""
        cycle = self._cycle
        if cycle is None:
            return  # stopped
        try:
            while not (cycle.disconnected or cycle.response_complete):
                cycle.flow.resume_reading()
                event: LightEvent = cycle.message_event
                if not event.is_set():
                    event.call_when_set(self._watch)
                    return
                event.clear()
                if cycle.disconnected or cycle.response_complete:
                    break
                cycle.body = bytearray()  # the request body receive() would hand over
        except Exception:
            pass  # as when receive() raises: take it as a disconnect
        self._cycle = None
        self._on_disconnect()

    def stop(self) -> None:
        if self._cycle is not None:
            self._cycle.message_event.call_when_set(None)
            self._cycle = None
