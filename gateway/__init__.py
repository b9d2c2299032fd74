"""The SSE gateway: fans out Redis channels to many Server-Sent Events clients.

The public surface is ``create_app(settings)`` (the ASGI app, for uvicorn or any
ASGI server), ``GatewaySettings`` (every knob, read from the environment) and
``main`` (``python -m gateway``). Inside, one package per concept, each layer
importing only those below it (pyproject.toml's import-linter contracts):

- ``http``: the app, its routes, ``GET /sse`` turned into a stream, errors as JSON,
  CORS and the stream limit;
- ``resume``: cursors, each channel's replay-then-live feed, SSE frames, and a
  client's subscription (its feeds merged with aiostream);
- ``fanout``: the hub (live entries batched per flush), groups of streams in step
  written in one loop, and each stream's bounded sinks;
- ``sse``: the response on the wire, one task per stream, ordered writes, pings;
- ``broker``: everything that speaks Redis (the live flow, history reads, entries),
  behind the ``Broker`` seam;
- ``_fastpath``: every use of uvicorn's and sse-starlette's insides, behind one
  switch, with a stock path when they are not what it expects.

docs/architecture.md draws the layout and the path of one event.
"""

from gateway.cli import main
from gateway.http.app import create_app
from gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_app", "main"]
