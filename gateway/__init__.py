"""The SSE gateway: fans out Redis channels to many Server-Sent Events clients.

Layout: ``hub`` (one pub/sub connection per process, fan-out to ``sink``s),
``history`` (paged, shared reads of channel history), ``channel_stream``
(one channel for one client: replay, then live), ``subscription`` (merges a
client's channels, keeps its ``cursor``, renders ``frames``), ``routes`` and
``app`` (HTTP), ``settings`` and ``cli`` (configuration and start-up).
"""
