"""Awaiting the rest of a coroutine that was started by hand, outside any task."""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any


class Continuation:
    """Awaits the rest of a coroutine that was started outside any task and suspended.

    The stream machinery steps ASGI ``send`` and ``receive`` coroutines by hand so
    that most of them finish without a task; the few that suspend are finished
    by awaiting a ``Continuation`` from a task.
    """

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self._coro, self._pending
        while True:
            try:
                value = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation (the send timeout) goes into it
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(value)
                except StopIteration as stop:
                    return stop.value
