"""The Redis wire contract: every key, field and script the system uses.

Per channel ``c`` under prefix ``p``:

- ``p:{c}:history``: a Redis Stream, the channel's bounded history. Entry
  fields: ``e`` (SSE event name), ``d`` (payload JSON), ``p`` (the id of the
  entry before it, ``0-0`` for the first), ``i`` (the publisher's token for the
  event: random, or ``key:<Idempotency-Key>`` from HTTP publish; a retry whose first
  reply was lost, or a repeat with the same key, finds it, not appends twice).
- ``p:{c}:live``: a pub/sub channel carrying each entry once it is appended,
  encoded as ``id\\nprev\\nevent\\ndata``. On one server it is a classic channel
  (``PUBLISH``); on a Redis Cluster a sharded one (``SPUBLISH``/``SSUBSCRIBE``).

Both names share the hash tag ``{c}`` so they live in one Redis Cluster slot: the
script's key and its live channel are on one node, and ``SPUBLISH`` from inside the
script is allowed.

Producers write only through ``publish.lua``; gateways read only through
``read.lua`` and the live channel. Nothing else spells a key.

Live notifications: when no replica has to confirm a publish, ``publish.lua`` appends
and notifies in one atomic step, so a live message always names an entry the stream
holds. When replicas must confirm it (``WAIT``, which Redis refuses inside scripts),
the script only appends; the publisher sends ``WAIT`` on the same connection, then the
notification (``encode_live``), so nobody sees live an event that a failover could
take back. That notification may then arrive twice (a retry after the entry was
confirmed sends it again) or after the notification of a later entry (publishes that
overlap). Readers already cope: they drop an id they have delivered, and an entry
whose ``prev`` is not the last id they delivered sends them to history first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

from contract.channels import validate_channel

FIELD_EVENT: Final = b"e"
FIELD_DATA: Final = b"d"
FIELD_PREV: Final = b"p"
NO_ENTRY_ID: Final = b"0-0"

NOTIFY_PUBLISH: Final = "PUBLISH"
"""``publish.lua`` notifies with ``PUBLISH`` (one server)."""
NOTIFY_SPUBLISH: Final = "SPUBLISH"
"""``publish.lua`` notifies with ``SPUBLISH`` (Redis Cluster, sharded pub/sub)."""
NOTIFY_LATER: Final = ""
"""``publish.lua`` only appends: the caller notifies once replicas hold the entry."""
_NOTIFY_MODES = (NOTIFY_PUBLISH, NOTIFY_SPUBLISH, NOTIFY_LATER)

_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,32}")
_LIVE_SUFFIX = b":live"


class InvalidPrefix(ValueError):
    """A key prefix outside the allowed alphabet."""


@dataclass(frozen=True)
class Keyspace:
    """Builds every key and pub/sub channel name for one key prefix."""

    prefix: str = "sse"

    def __post_init__(self) -> None:
        if _PREFIX_RE.fullmatch(self.prefix) is None:
            raise InvalidPrefix(
                f"invalid key prefix {self.prefix!r}: use 1-32 letters, digits, '_', '-', '.', ':'"
            )

    def history_key(self, channel: str) -> str:
        return f"{self.prefix}:{{{validate_channel(channel)}}}:history"

    def live_channel(self, channel: str) -> str:
        return f"{self.prefix}:{{{validate_channel(channel)}}}:live"

    def channel_of_live(self, live: bytes) -> str:
        """Invert ``live_channel``: ``b"sse:{echo}:live"`` -> ``"echo"``."""
        start = len(self.prefix) + 2
        return live[start : -len(_LIVE_SUFFIX) - 1].decode()


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """One entry as carried on a live pub/sub channel."""

    id: bytes
    prev: bytes
    event: bytes
    data: bytes


def encode_live(entry_id: bytes, prev: bytes, event: bytes, data: bytes) -> bytes:
    """A live pub/sub payload, byte for byte what ``publish.lua`` sends."""
    return b"\n".join((entry_id, prev, event, data))


def decode_live(payload: bytes) -> LiveMessage:
    """Split a live pub/sub payload; the data part may contain anything."""
    entry_id, prev, event, data = payload.split(b"\n", 3)
    return LiveMessage(entry_id, prev, event, data)


def decode_fields(fields: dict[bytes, bytes] | list[bytes]) -> tuple[bytes, bytes, bytes]:
    """(event, data, prev) of a history entry's fields (dict or flat list reply)."""
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    return fields[FIELD_EVENT], fields[FIELD_DATA], fields.get(FIELD_PREV, NO_ENTRY_ID)


@cache
def script_source(name: str) -> str:
    """The text of a bundled Lua script (``publish`` or ``read``)."""
    return resources.files("contract").joinpath("scripts", f"{name}.lua").read_text()


def publish_args(
    *,
    live_channel: str,
    event: str,
    data: bytes,
    maxlen: int,
    exact_trim: bool,
    max_age_ms: int,
    token: str,
    lookback_ms: int = 0,
    notify: str = NOTIFY_PUBLISH,
    wait_follows: bool = False,
) -> list[Any]:
    """ARGV for ``publish.lua``, in its order.

    ``token`` is unique per event and the same on every attempt to publish it;
    ``lookback_ms`` (0 on a first attempt) is how far back a retry looks for it, or how
    long a caller's idempotency key (the token) is honoured.
    ``notify`` is ``NOTIFY_PUBLISH``, ``NOTIFY_SPUBLISH`` or ``NOTIFY_LATER``;
    ``wait_follows`` says that ``WAIT`` follows on the same connection, so that a retry
    which finds its entry still writes something for ``WAIT`` to wait for.
    The script replies ``[id, prev]`` (see ``decode_publish_reply``).
    """
    if notify not in _NOTIFY_MODES:
        raise ValueError(f"notify must be one of {_NOTIFY_MODES}, not {notify!r}")
    trim = "=" if exact_trim else "~"
    return [
        live_channel,
        event,
        data,
        maxlen,
        trim,
        max_age_ms,
        token,
        lookback_ms,
        notify,
        "1" if wait_follows else "0",
    ]


def decode_publish_reply(reply: Any) -> tuple[bytes, bytes]:
    """``publish.lua``'s reply as (entry id, predecessor id)."""
    entry_id, prev = reply
    return _as_bytes(entry_id), _as_bytes(prev)


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def read_args(after: bytes | None, count: int) -> list[Any]:
    """ARGV for ``read.lua``: entries after ``after`` (``None``: from the earliest)."""
    return [b"-" if after is None else b"(" + after, count]


def read_before_args(before: bytes | None, count: int) -> list[Any]:
    """ARGV for ``read.lua``: the entries just before ``before`` (``None``: the newest),
    newest first."""
    return [b"+" if before is None else b"(" + before, count, b"before"]
