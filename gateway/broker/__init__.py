"""Everything that speaks Redis: the live flow, history reads, entries decoded once.

The rest of the gateway sees Redis only through the ``Broker`` seam.
"""

from gateway.broker.cluster import ClusterBroker
from gateway.broker.entry import BEFORE_ALL, Entry, StreamKey, format_stream_id, stream_key
from gateway.broker.history import HistoryReader
from gateway.broker.interface import (
    Broker,
    BrokerListener,
    BrokerStats,
    HistoryRefused,
    NodeStats,
    Page,
)
from gateway.broker.standalone import RedisBroker

__all__ = [
    "BEFORE_ALL",
    "Broker",
    "BrokerListener",
    "BrokerStats",
    "ClusterBroker",
    "Entry",
    "HistoryReader",
    "HistoryRefused",
    "NodeStats",
    "Page",
    "RedisBroker",
    "StreamKey",
    "format_stream_id",
    "stream_key",
]
