"""The lighter pieces ``LeanHttpProtocol`` gives uvicorn, and the disconnect watch on them.

(The integration tests run every stream through them: ``python -m gateway`` uses
``LeanHttpProtocol``. These pin the event semantics uvicorn relies on.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from starlette.types import Message

from gateway.http_protocol import LightEvent, _Pipeline
from gateway.response import DisconnectWatch


async def test_light_event_wakes_every_waiter_and_can_be_cleared() -> None:
    event = LightEvent()
    waiters = [asyncio.ensure_future(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    event.set()
    assert event.is_set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert await event.wait() is True  # already set: no wait
    event.clear()
    again = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    assert not again.done()
    again.cancel()
    await asyncio.sleep(0)
    assert event._waiters is None  # a cancelled waiter leaves nothing behind


async def test_light_event_calls_back_once_on_the_next_turn() -> None:
    event = LightEvent()
    calls: list[int] = []
    event.call_when_set(lambda: calls.append(1))
    event.set()
    assert calls == []  # like a waiter, it runs on the next turn, not inside set()
    await asyncio.sleep(0)
    assert calls == [1]
    event.clear()
    event.set()
    await asyncio.sleep(0)
    assert calls == [1]  # once
    event.clear()
    event.call_when_set(lambda: calls.append(2))
    event.call_when_set(None)
    event.set()
    await asyncio.sleep(0)
    assert calls == [1]


def test_pipeline_keeps_deque_order() -> None:
    pipeline, reference = _Pipeline(), deque[int]()
    for item in (1, 2, 3):
        pipeline.appendleft(item)
        reference.appendleft(item)
    assert [pipeline.pop() for _ in range(3)] == [reference.pop() for _ in range(3)]
    assert not pipeline


class _Flow:
    def __init__(self) -> None:
        self.resumed = 0

    def resume_reading(self) -> None:
        self.resumed += 1


class _Cycle:
    """The attributes of uvicorn's ``RequestResponseCycle`` that ``receive()`` uses."""

    def __init__(self) -> None:
        self.message_event = LightEvent()
        self.message_event.set()  # the GET request is complete
        self.flow = _Flow()
        self.disconnected = False
        self.response_complete = False
        self.waiting_for_100_continue = False
        self.body = bytearray()

    async def receive(self) -> Message:  # pragma: no cover - the watch does its work itself
        raise AssertionError("not called on the fast path")


async def test_disconnect_watch_on_a_light_event_needs_no_receive_coroutine() -> None:
    cycle = _Cycle()
    left: list[bool] = []
    watch = DisconnectWatch(cycle.receive, lambda: left.append(True))
    watch.start()
    assert not cycle.message_event.is_set()  # the request was taken, as receive() does
    assert cycle.flow.resumed == 2
    assert not left
    cycle.message_event.set()  # more request data, not a disconnect: watch on
    await asyncio.sleep(0)
    assert not left
    cycle.disconnected = True  # what uvicorn's connection_lost does
    cycle.message_event.set()
    await asyncio.sleep(0)
    assert left == [True]


async def test_a_stopped_disconnect_watch_stays_quiet() -> None:
    cycle = _Cycle()
    left: list[Any] = []
    watch = DisconnectWatch(cycle.receive, lambda: left.append(True))
    watch.start()
    watch.stop()
    cycle.disconnected = True
    cycle.message_event.set()
    await asyncio.sleep(0)
    assert left == []
