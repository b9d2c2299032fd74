"""``subscribe_sync``: the async subscription, driven from synchronous code.

The subscription runs on an event loop in a thread of its own; the caller's
thread asks it for one event at a time. No protocol code lives here: this is
only the bridge between the two threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar

from client._events import Event
from client._subscription import Subscription

P = ParamSpec("P")
T = TypeVar("T")


class _LoopThread:
    """An event loop running in a daemon thread, for coroutines of a synchronous caller."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sse-client", daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.run(self._loop.shutdown_asyncgens())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its outcome.

        Interrupted (Ctrl-C), it cancels the coroutine and waits until it has ended
        before re-raising, so that nothing else of the subscription runs meanwhile.
        """
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:
            task = self._loop.create_task(coro)
            tasks.append(task)
            task.add_done_callback(functools.partial(_settle, outcome))

        self._loop.call_soon_threadsafe(start)
        try:
            return outcome.result()
        except BaseException:
            if not outcome.done():
                # Callbacks run in order: start() has created the task by then.
                self._loop.call_soon_threadsafe(lambda: tasks[0].cancel())
                with contextlib.suppress(concurrent.futures.CancelledError):
                    outcome.exception()  # returns once the task has ended
            raise


def _settle(outcome: concurrent.futures.Future[T], task: asyncio.Task[T]) -> None:
    if task.cancelled():
        outcome.cancel()
    elif (error := task.exception()) is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(task.result())


class SyncSubscription:
    """A subscription for synchronous code: an iterator of events (see ``subscribe_sync``)."""

    def __init__(self, subscription: Subscription, runner: _LoopThread) -> None:
        self._subscription = subscription
        self._runner = runner
        self.closed = False

    @property
    def last_event_id(self) -> str | None:
        """The cursor after the last event handed out: store it, resume from it."""
        return self._subscription.last_event_id

    @property
    def reconnects(self) -> int:
        """Streams opened after the first one."""
        return self._subscription.reconnects

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Event:
        if self.closed:
            raise RuntimeError("iterate a subscription inside its with block; this one is closed")
        try:
            return self._runner.run(self._subscription.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None


def synchronous(
    subscribe: Callable[P, Subscription],
) -> Callable[P, contextlib.AbstractContextManager[SyncSubscription]]:
    """The synchronous twin of ``subscribe``: same parameters, a ``with`` block."""

    @contextlib.contextmanager
    def subscribe_sync(*args: P.args, **kwargs: P.kwargs) -> Iterator[SyncSubscription]:
        subscription = subscribe(*args, **kwargs)  # bad arguments raise here, in this thread
        with _LoopThread() as runner:
            runner.run(subscription.__aenter__())
            events = SyncSubscription(subscription, runner)
            try:
                yield events
            finally:
                events.closed = True
                runner.run(subscription.aclose())

    # help() and IDEs show subscribe's parameters, not (*args, **kwargs).
    subscribe_sync.__signature__ = inspect.signature(subscribe).replace(  # type: ignore[attr-defined]
        return_annotation="ContextManager[SyncSubscription]"
    )
    return subscribe_sync
