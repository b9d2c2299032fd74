"""The same without asyncio: replay "echo" from the oldest event it retains, stop after
three events."""

import os

from client import subscribe_sync
from contract.events import Echo

GATEWAY_URL = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000")

with subscribe_sync(GATEWAY_URL, ["echo"], last_event_id="earliest") as events:
    for received, event in enumerate(events, start=1):
        if isinstance(event, Echo):
            print(event.data.message, event.data.created_at.isoformat(), events.last_event_id)
        if received == 3:
            break
    print("resume from", events.last_event_id)
