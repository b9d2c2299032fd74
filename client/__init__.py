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

from client._errors import (
    ClientError,
    Forbidden,
    GatewayUnreachable,
    NotAnEventStream,
    SubscriptionRefused,
    Unauthorized,
)
from client._events import Event, RawEvent
from client._subscription import Subscription, TokenProvider
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


subscribe = Subscription
"""``subscribe(base_url, channels, ...)``: see ``Subscription``."""

subscribe_sync = synchronous(Subscription)
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
