"""A typed Python client for redis-sse-gateway.

```python
from client import subscribe

async with subscribe("http://127.0.0.1:8000", ["echo", "reverse_echo"]) as events:
    async for event in events:  # Echo, ReverseEcho, HistoryGap, ... or a RawEvent
        ...
        events.last_event_id  # the cursor to store and resume from
```

``subscribe_sync`` does the same for synchronous code (a ``with`` block and a
plain iterator). Both reconnect by themselves and resume exactly where they
left off; only what retrying cannot fix is raised, as a ``ClientError``.

Imports ``contract`` (pydantic), httpx and httpx-sse only: none of the
gateway's server dependencies.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from client._errors import (
    ClientError,
    Forbidden,
    GatewayUnreachable,
    NotAnEventStream,
    SubscriptionRefused,
    Unauthorized,
)
from client._events import Event, RawEvent
from client._subscription import DEFAULT_PING_INTERVAL, Subscription, TokenProvider
from client._sync import SyncSubscription, synchronous

__all__ = [
    "ClientError",
    "Event",
    "Forbidden",
    "GatewayUnreachable",
    "NotAnEventStream",
    "RawEvent",
    "Subscription",
    "SubscriptionRefused",
    "SyncSubscription",
    "TokenProvider",
    "Unauthorized",
    "subscribe",
    "subscribe_sync",
]


def subscribe(
    base_url: str,
    channels: Sequence[str],
    *,
    last_event_id: str | None = None,
    token: str | TokenProvider | None = None,
    ping_interval: float = DEFAULT_PING_INTERVAL,
    silence_timeout: float | None = None,
    connect_timeout: float = 10.0,
    max_delay: float = 30.0,
    give_up_after: float | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> Subscription:
    """Subscribe to ``channels`` of the gateway at ``base_url``; use with ``async with``.

    Iterating yields each event as its contract class (``Echo``, ``ReverseEcho``, a
    registered ``BaseEvent`` subclass of your own), the gateway's control events
    (``HistoryGap``, ``CursorInvalid``, ``Reconnect``), or a ``RawEvent`` for a name no
    class carries or data its class rejects.

    - ``last_event_id``: where to start: a cursor stored from ``events.last_event_id``,
      ``"earliest"`` (all retained history) or ``None``/``"live"``.
    - ``token``: a subscriber JWT, or a callable (sync or async) returning one, called
      before every connection so that a refreshed token is used after expiry.
    - ``ping_interval``: the gateway's ``SSE_PING_INTERVAL``. A connection silent for
      ``silence_timeout`` (default 2.5 pings: the gateway may leave just under two
      intervals between bytes) is dropped and resumed.
    - Reconnects wait the gateway's ``retry:``, doubling per failed attempt up to
      ``max_delay`` (a 503's ``Retry-After`` is honoured), with jitter. ``give_up_after``
      seconds of failed attempts raise ``GatewayUnreachable``; None retries forever.
    - 4xx answers raise ``SubscriptionRefused`` (``Unauthorized`` for 401, ``Forbidden``
      for 403) with the gateway's code, message and hint; they are not retried.
    - ``http_client``: an ``httpx.AsyncClient`` of your own (proxies, TLS settings); it
      is left open. Without it the subscription makes and closes its own.
    """
    return Subscription(
        base_url,
        channels,
        last_event_id=last_event_id,
        token=token,
        ping_interval=ping_interval,
        silence_timeout=silence_timeout,
        connect_timeout=connect_timeout,
        max_delay=max_delay,
        give_up_after=give_up_after,
        http_client=http_client,
    )


subscribe_sync = synchronous(subscribe)
subscribe_sync.__doc__ = """``subscribe`` for synchronous code: a ``with`` block around an iterator.

```python
from client import subscribe_sync

with subscribe_sync("http://127.0.0.1:8000", ["echo"]) as events:
    for event in events:
        print(event, events.last_event_id)
```

Same parameters and behaviour as ``subscribe`` (one implementation runs on an event
loop in a background thread). Ctrl-C ends the iteration and closes the connection.
"""
