"""Read five events of "echo" and "reverse_echo" as they are published, then print the
cursor to resume from."""

import asyncio
import os

from client import subscribe
from contract.events import Echo, ReverseEcho

GATEWAY_URL = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000")


async def main() -> None:
    async with subscribe(GATEWAY_URL, ["echo", "reverse_echo"]) as events:
        received = 0
        async for event in events:
            if isinstance(event, Echo | ReverseEcho):
                print(type(event).__name__, event.data.message, events.last_event_id)
            else:
                print("control event:", event)  # HistoryGap, CursorInvalid, Reconnect, RawEvent
            received += 1
            if received == 5:
                break
        print("resume from", events.last_event_id)


asyncio.run(main())
