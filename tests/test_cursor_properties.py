"""Property tests for cursors, the one piece of client text that reaches Redis key names.

Whatever a client sends as Last-Event-ID: parsing ends in a Cursor or a CursorError, never
anything else; every channel it yields is a valid name, so its keys stay inside the prefix
and their hash tag; what the gateway formats parses back to the same positions and fits in
the length limit; and what it quotes back in a notice cannot break an SSE frame.
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contract.channels import MAX_CHANNEL_LENGTH, is_valid_channel, validate_channel
from contract.wire import Keyspace
from gateway.broker import format_stream_id
from gateway.resume.cursor import (
    EARLIEST,
    LIVE,
    Cursor,
    CursorError,
    format_cursor,
    longest_cursor,
    parse_cursor,
    parse_stream_id,
    printable_prefix,
)

CURSOR_SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

CHANNEL_CHARS = string.ascii_letters + string.digits + "_-.:"
MAX_ID_PART = 2**64 - 1

channel_names = st.text(CHANNEL_CHARS, min_size=1, max_size=MAX_CHANNEL_LENGTH)
id_parts = st.integers(min_value=0, max_value=MAX_ID_PART)
stream_ids = st.tuples(id_parts, id_parts)
positions = st.one_of(stream_ids, st.sampled_from([EARLIEST, LIVE]))

# Text near the grammar finds more edge cases than uniform unicode: separators, digits,
# braces (hash tags), newlines (SSE framing), other scripts' digits and a NUL.
near_cursor_text = st.text(
    st.sampled_from([*"echo=,-0123456789{}: \n\r\t\x00.", "\u0663", "\uff11", "\u00e9"]),
    max_size=200,
)
any_text = st.one_of(st.text(max_size=300), near_cursor_text)


def position_text(position: tuple[int, int] | str) -> bytes | str:
    return format_stream_id(position) if isinstance(position, tuple) else position


@CURSOR_SETTINGS
@given(st.dictionaries(channel_names, positions, min_size=1, max_size=16))
def test_a_formatted_cursor_parses_back_to_the_same_positions(
    chosen: dict[str, tuple[int, int] | str],
) -> None:
    text = format_cursor((name, position_text(pos)) for name, pos in chosen.items())
    cursor = parse_cursor(text, max_length=longest_cursor(len(chosen)))
    assert dict(cursor.positions) == chosen
    assert cursor.default == LIVE


@CURSOR_SETTINGS
@given(st.dictionaries(channel_names, positions, min_size=1, max_size=16))
def test_a_formatted_cursor_is_one_short_printable_line(
    chosen: dict[str, tuple[int, int] | str],
) -> None:
    text = format_cursor((name, position_text(pos)) for name, pos in chosen.items())
    # A newline would end the SSE id field; a NUL makes EventSource drop the id.
    assert text.isascii()
    assert text.isprintable()
    assert " " not in text
    assert len(text) <= longest_cursor(len(chosen))


@CURSOR_SETTINGS
@given(st.integers(min_value=1, max_value=256))
def test_longest_cursor_is_the_length_of_the_longest_cursor(channels: int) -> None:
    longest = format_cursor(
        (f"{index:0{MAX_CHANNEL_LENGTH}d}", format_stream_id((MAX_ID_PART, MAX_ID_PART)))
        for index in range(channels)
    )
    assert len(longest) == longest_cursor(channels)
    assert parse_cursor(longest, max_length=longest_cursor(channels)).positions


@CURSOR_SETTINGS
@given(any_text, st.integers(min_value=16, max_value=8192))
@example("echo=1-0", 16)
@example("x" * 5000, 4096)
@example("{echo}=1-0", 4096)
@example("echo=\u0663-0", 4096)
@example("echo=18446744073709551616-0", 4096)
def test_any_text_parses_to_a_cursor_or_a_cursor_error(text: str, max_length: int) -> None:
    try:
        cursor = parse_cursor(text, max_length=max_length)
    except CursorError as exc:
        reason = exc.reason
        assert reason, "a CursorError says why"
        return
    assert isinstance(cursor, Cursor)
    assert cursor.default in (EARLIEST, LIVE)
    stripped = text.strip()
    if stripped not in ("", LIVE, EARLIEST):
        assert len(stripped) <= max_length
        assert stripped.isascii()  # no other script's digits sneak in as ids


@CURSOR_SETTINGS
@given(any_text, st.sampled_from(["sse", "app:prod", "t-1"]))
@example("a}:x{b=1-0", "sse")
@example("echo}=1-0,{other=2-0", "sse")
def test_a_parsed_cursor_only_names_keys_inside_the_prefix(text: str, prefix: str) -> None:
    try:
        cursor = parse_cursor(text, max_length=8192)
    except CursorError:
        return
    keyspace = Keyspace(prefix)
    for channel, position in cursor.positions.items():
        assert validate_channel(channel) == channel
        for key in (keyspace.history_key(channel), keyspace.live_channel(channel)):
            # Exactly one hash tag, holding the channel, right after the prefix.
            assert key.startswith(f"{prefix}:{{{channel}}}:")
            assert key.count("{") == 1
            assert key.count("}") == 1
        if isinstance(position, tuple):
            assert all(0 <= part <= MAX_ID_PART for part in position)
        else:
            assert position in (EARLIEST, LIVE)


@CURSOR_SETTINGS
@given(any_text)
def test_only_valid_names_pass_the_channel_check(text: str) -> None:
    valid = is_valid_channel(text)
    assert valid == (0 < len(text) <= MAX_CHANNEL_LENGTH and set(text) <= set(CHANNEL_CHARS))


@CURSOR_SETTINGS
@given(any_text)
def test_a_stream_id_parses_only_from_ascii_digits_and_round_trips(text: str) -> None:
    try:
        key = parse_stream_id(text)
    except ValueError:
        return
    assert text.isascii()
    assert parse_stream_id(format_stream_id(key).decode()) == key


@CURSOR_SETTINGS
@given(any_text, st.integers(min_value=0, max_value=200))
def test_the_quoted_excerpt_of_a_bad_cursor_cannot_break_a_frame(text: str, limit: int) -> None:
    excerpt = printable_prefix(text, limit)
    assert len(excerpt) <= limit
    assert "\n" not in excerpt
    assert "\r" not in excerpt
    assert "\x00" not in excerpt
