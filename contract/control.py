"""Control events: what the gateway itself tells a client, typed like any event.

They travel on the same SSE stream as channel events, under their own event
names (``history_gap``, ``cursor_invalid``, ``reconnect``), so an EventSource
client listens for them with ``addEventListener(name, ...)``.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from contract.events import BaseEvent


class HistoryGapPayload(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: str
    reason: Literal["trimmed", "lost"]
    """``trimmed``: retention dropped events after the cursor; ``lost``: the
    channel's history was reset (for example Redis restarted empty)."""
    requested: str
    """The position the client asked to resume after."""
    resumed_after: str
    """The position the stream continues after; events in between are gone."""


class HistoryGap(BaseEvent[HistoryGapPayload]):
    """Events the client asked for are no longer in history."""


class CursorInvalidPayload(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str
    value: str
    """The rejected cursor, cut to a printable prefix."""
    starting_from: Literal["live"]


class CursorInvalid(BaseEvent[CursorInvalidPayload]):
    """The Last-Event-ID could not be used; the stream starts live instead."""


ReconnectReason = Literal["shutdown", "slow_consumer", "token_expired"]
RECONNECT_REASONS: frozenset[str] = frozenset(get_args(ReconnectReason))


class ReconnectPayload(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str
    """Why the stream ends: ``shutdown`` (the gateway is stopping), ``slow_consumer`` (the
    client fell too far behind), ``token_expired`` (the token's ``exp``, or the gateway's cap
    on a stream's lifetime, has come: reconnect with a fresh token and the last id). A
    plain string, not a closed set (``RECONNECT_REASONS`` are today's): a client built
    against this contract must still read the reasons a newer gateway adds."""
    retry_ms: int


class Reconnect(BaseEvent[ReconnectPayload]):
    """The gateway is about to close this stream; reconnect with the last id."""


CONTROL_EVENT_NAMES: frozenset[str] = frozenset(
    cls.event_name for cls in (HistoryGap, CursorInvalid, Reconnect)
)
"""The names only a gateway sends: a client trusts them to describe its own stream, so
nobody may publish an event under one of them."""
