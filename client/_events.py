"""What a subscription yields: the contract's typed events, or a ``RawEvent``.

An SSE event name maps to its class through the contract's registry, so
``echo`` arrives as ``Echo``, ``history_gap`` as ``HistoryGap``, and a user's
own ``BaseEvent`` subclass as itself once its module is imported. A name no
class carries, or data its class does not accept, arrives as a ``RawEvent``:
a stream never fails because of one event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from pydantic import ValidationError

import contract.control  # noqa: F401 - registers the control events' names
from contract.events import BaseEvent, UnknownEvent, decode_event


@dataclass(frozen=True)
class RawEvent:
    """An event the client could not type: its name and data as the gateway sent them."""

    name: str
    data: str
    id: str | None
    """The cursor after this event (the subscription's ``last_event_id``)."""
    error: str | None = None
    """Why it could not be typed: no event class has this name, or the data is invalid."""


Event: TypeAlias = BaseEvent[Any] | RawEvent
"""What iterating a subscription yields."""


def decode(name: str, data: str, event_id: str | None) -> Event:
    """The typed event for an SSE (event name, data) pair, or a ``RawEvent`` saying why not."""
    try:
        return decode_event(name, data)
    except UnknownEvent as exc:
        return RawEvent(name, data, event_id, str(exc))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'data'}: {error['msg']}"
            for error in exc.errors()
        )
        return RawEvent(name, data, event_id, f"invalid {name!r} data: {problems}")
