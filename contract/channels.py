"""Channel names: one policy, checked wherever a name enters the system.

A name becomes part of Redis keys (inside a ``{hash tag}``) and of SSE cursors
(``name=id,...``), so its alphabet excludes every character that is special in
either place: braces, ``=``, ``,``, whitespace and control characters.
"""

from __future__ import annotations

import re

MAX_CHANNEL_LENGTH = 64
CHANNEL_ALPHABET = "letters, digits, '_', '-', '.' and ':'"
_CHANNEL_CHARS = r"A-Za-z0-9_.:\-"
_CHANNEL_RE = re.compile(f"[{_CHANNEL_CHARS}]+")
CHANNEL_NAME_PATTERN = f"^[{_CHANNEL_CHARS}]{{1,{MAX_CHANNEL_LENGTH}}}$"
"""The policy as one anchored regular expression, for API documents (JSON Schema)."""


class InvalidChannelName(ValueError):
    """A channel name outside the policy; the message says what is wrong."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"invalid channel name {name[:80]!r}: {reason}")


def validate_channel(name: str) -> str:
    """Return ``name`` if it is an allowed channel name, else raise InvalidChannelName."""
    if not name:
        raise InvalidChannelName(name, "it is empty")
    if len(name) > MAX_CHANNEL_LENGTH:
        raise InvalidChannelName(
            name, f"it has {len(name)} characters, at most {MAX_CHANNEL_LENGTH} are allowed"
        )
    if _CHANNEL_RE.fullmatch(name) is None:
        raise InvalidChannelName(name, f"only {CHANNEL_ALPHABET} are allowed")
    return name


def is_valid_channel(name: str) -> bool:
    """True when ``name`` passes ``validate_channel``."""
    return 0 < len(name) <= MAX_CHANNEL_LENGTH and _CHANNEL_RE.fullmatch(name) is not None
