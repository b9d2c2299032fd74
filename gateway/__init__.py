"""The SSE gateway: fans out Redis channels to many Server-Sent Events clients.

Layout: ``hub`` (one pub/sub connection per process, fan-out to ``sink``s),
``history`` (paged, shared reads of channel history), ``channel_stream``
(one channel for one client: replay, then live), ``subscription`` (merges a
client's channels, keeps its ``cursor``, renders ``frames``), ``routes`` and
``app`` (HTTP), ``settings`` and ``cli`` (configuration and start-up).

A stream on the wire: ``stream_route`` (``GET /sse`` without FastAPI's
per-request machinery), ``response`` (the SSE response, one task per stream),
``output`` and ``transport`` (its writes, straight from the hub's flush while the
client keeps up), ``streams`` (every open stream: keep-alive pings, shutdown).
docs/performance.md says why each exists.
"""
