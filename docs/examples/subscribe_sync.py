"""The same without asyncio: replay what "echo" retains, stop after three events."""

from client import subscribe_sync

with subscribe_sync("http://127.0.0.1:8000", ["echo"], last_event_id="earliest") as events:
    for received, event in enumerate(events, start=1):
        print(type(event).__name__, event.data)
        if received == 3:
            break
    print("resume from", events.last_event_id)
