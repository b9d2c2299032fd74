"""Read five events of "echo" and "reverse_echo", then print the cursor to resume from."""

import asyncio

from client import subscribe


async def main() -> None:
    async with subscribe("http://127.0.0.1:8000", ["echo", "reverse_echo"]) as events:
        received = 0
        async for event in events:
            print(type(event).__name__, event.data)
            received += 1
            if received == 5:
                break
        print("resume from", events.last_event_id)


asyncio.run(main())
