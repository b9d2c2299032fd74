"""Producers: publish typed events to Redis channels.

``Publisher`` is the library API; ``python -m producers`` runs the Echo and
ReverseEcho producer processes.
"""

from producers.publisher import Publisher, PublishError, Retention

__all__ = ["PublishError", "Publisher", "Retention"]
