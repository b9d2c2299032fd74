"""Publish three Echo events to the channel "echo" from Python, then exit."""

import asyncio
import os

from contract.events import Echo, EchoPayload
from producers.publisher import Publisher

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def main() -> None:
    async with Publisher.from_url(REDIS_URL) as publisher:
        for message in ["one", "two", "three"]:
            entry_id = await publisher.publish("echo", Echo(data=EchoPayload(message=message)))
            print("published", message, entry_id)


asyncio.run(main())
