"""The contract shared by producers, the gateway and clients.

- ``contract.events``: typed events (``BaseEvent[T]``, ``Echo``, ``ReverseEcho``).
- ``contract.control``: the gateway's own control events (``HistoryGap``, ...).
- ``contract.channels``: the channel-name policy.
- ``contract.wire``: every Redis key, field and script; nothing else spells one.
"""
