"""Publish one PriceTick to the channel "prices" (run with PYTHONPATH=docs/examples)."""

import asyncio
import os
from decimal import Decimal

from price_events import PricePayload, PriceTick

from producers.publisher import Publisher

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def main() -> None:
    tick = PriceTick(data=PricePayload(symbol="ACME", price=Decimal("101.25")))
    async with Publisher.from_url(REDIS_URL) as publisher:
        entry_id = await publisher.publish("prices", tick)
    print("published", tick.event_name, entry_id)


asyncio.run(main())
