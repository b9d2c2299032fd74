"""Fan-out inside a process: the hub, its topics, groups of streams in step, and sinks."""

from gateway.fanout.batch import LiveBatch
from gateway.fanout.group import Channels, Group, Member, Renderer, Snapshot
from gateway.fanout.hub import Hub, HubStats, LiveMark
from gateway.fanout.sink import ChannelSink, SinkClosed, SlowConsumer
from gateway.fanout.topic import Topic

__all__ = [
    "ChannelSink",
    "Channels",
    "Group",
    "Hub",
    "HubStats",
    "LiveBatch",
    "LiveMark",
    "Member",
    "Renderer",
    "SinkClosed",
    "SlowConsumer",
    "Snapshot",
    "Topic",
]
