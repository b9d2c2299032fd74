"""Typed events, channel names and cursors: the pure parts of the contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from contract.channels import MAX_CHANNEL_LENGTH, InvalidChannelName, validate_channel
from contract.control import HistoryGap
from contract.events import (
    BaseEvent,
    Echo,
    EchoPayload,
    ReverseEcho,
    UnknownEvent,
    decode_event,
    event_class,
    event_schemas,
    snake_case,
)
from contract.wire import InvalidPrefix, Keyspace
from gateway.broker import Entry
from gateway.resume.cursor import (
    EARLIEST,
    LIVE,
    CursorError,
    StreamPositions,
    format_cursor,
    parse_cursor,
    parse_stream_id,
)
from gateway.resume.frames import render, solo_frame


def test_event_name_is_the_class_name_in_snake_case() -> None:
    assert Echo.event_name == "echo"
    assert ReverseEcho.event_name == "reverse_echo"
    assert HistoryGap.event_name == "history_gap"
    assert snake_case("HTTPPing") == "http_ping"


def test_subclasses_register_and_map_back_from_their_name() -> None:
    class PriceTick(BaseEvent[int]):
        pass

    assert event_class("price_tick") is PriceTick
    assert decode_event("price_tick", b"42") == PriceTick(data=42)
    with pytest.raises(UnknownEvent, match="no event type named 'nope'"):
        event_class("nope")


def test_data_line_is_the_payload_json_exactly() -> None:
    created = datetime(2023, 11, 4, 13, 2, 10, 760797, tzinfo=UTC)
    event = Echo(data=EchoPayload(message="hello", created_at=created))
    assert event.encode_data() == (
        b'{"message":"hello","created_at":"2023-11-04T13:02:10.760797Z"}'
    )
    assert Echo.decode_data(event.encode_data()) == event


def test_every_registered_event_has_a_json_schema() -> None:
    schemas = event_schemas()
    assert {"echo", "reverse_echo", "history_gap", "cursor_invalid", "reconnect"} <= set(schemas)
    assert schemas["echo"]["required"] == ["message"]
    assert schemas["echo"]["properties"]["created_at"]["format"] == "date-time"
    json.dumps(schemas)


@pytest.mark.parametrize("name", ["echo", "reverse_echo", "a", "room-1.chat:main", "x" * 64])
def test_valid_channel_names(name: str) -> None:
    assert validate_channel(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("x" * (MAX_CHANNEL_LENGTH + 1), "at most 64"),
        ("a b", "only letters"),
        ("{echo}", "only letters"),
        ("a=b", "only letters"),
        ("a,b", "only letters"),
        ("line\nbreak", "only letters"),
    ],
)
def test_invalid_channel_names_say_why(name: str, reason: str) -> None:
    with pytest.raises(InvalidChannelName, match=reason):
        validate_channel(name)


def test_keys_share_a_hash_tag_and_stay_under_the_prefix() -> None:
    keys = Keyspace("app")
    assert keys.history_key("echo") == "app:{echo}:history"
    assert keys.live_channel("echo") == "app:{echo}:live"
    assert keys.channel_of_live(b"app:{echo}:live") == "echo"
    with pytest.raises(InvalidChannelName):
        keys.history_key("x}:other:{y")
    with pytest.raises(InvalidPrefix):
        Keyspace("bad prefix")


def test_cursor_round_trip_and_special_positions() -> None:
    text = format_cursor([("echo", b"1732480000123-0"), ("reverse_echo", b"1732480000100-7")])
    assert text == "echo=1732480000123-0,reverse_echo=1732480000100-7"
    cursor = parse_cursor(text, max_length=4096)
    assert cursor.position("echo") == (1732480000123, 0)
    assert cursor.position("reverse_echo") == (1732480000100, 7)
    assert cursor.position("other") == LIVE
    assert parse_cursor(None, max_length=10).position("echo") == LIVE
    assert parse_cursor("", max_length=10).position("echo") == LIVE
    assert parse_cursor("earliest", max_length=10).position("echo") == EARLIEST
    assert parse_cursor("echo=earliest", max_length=100).position("echo") == EARLIEST
    assert parse_cursor("echo=17", max_length=100).position("echo") == (17, 0)


@pytest.mark.parametrize(
    "text",
    ["garbage", "echo=abc", "echo=1-2-3", "a b=1-0", "echo=1-0,echo=2-0", "=1-0", "echo=-1"],
)
def test_malformed_cursors_are_rejected(text: str) -> None:
    with pytest.raises(CursorError):
        parse_cursor(text, max_length=4096)


def test_overlong_cursor_is_rejected() -> None:
    with pytest.raises(CursorError, match="limit is 32"):
        parse_cursor("echo=1-0," * 10, max_length=32)


def test_stream_ids_compare_numerically() -> None:
    assert parse_stream_id("9-0") < parse_stream_id("10-0")
    with pytest.raises(ValueError, match="out of range"):
        parse_stream_id(str(2**64) + "-0")


def test_entry_frames_are_built_once_and_split_multiline_data() -> None:
    entry = Entry("echo", b"5-0", b"4-0", b"echo", b'{"a":1}')
    assert solo_frame(entry) == b'id: echo=5-0\nevent: echo\ndata: {"a":1}\n\n'
    assert solo_frame(entry) is solo_frame(entry)
    positions = StreamPositions(["echo", "x"])
    positions.move(1, b"1-0")
    assert render(positions, 0, [entry]) == b'id: echo=5-0,x=1-0\nevent: echo\ndata: {"a":1}\n\n'
    assert positions.text() == b"echo=5-0,x=1-0"
    multi = Entry("echo", b"6-0", b"5-0", b"echo", b"one\r\ntwo\nthree")
    assert solo_frame(multi).endswith(b"data: one\ndata: two\ndata: three\n\n")
