"""An event type of your own: name this module in SSE_EVENT_MODULES (here: price_events,
importable with PYTHONPATH=docs/examples) and the gateway, the producers and the client
all know it."""

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from contract.events import BaseEvent


class PricePayload(BaseModel):
    """What a PriceTick carries: the JSON of its SSE data: line."""

    model_config = ConfigDict(frozen=True)

    symbol: str = Field(pattern=r"^[A-Z]{1,8}$")
    price: Decimal = Field(gt=0, decimal_places=4)
    currency: str = "USD"


class PriceTick(BaseEvent[PricePayload]):
    """A new price for a symbol; its SSE event name is price_tick."""
