"""The README's fenced blocks, read by the conventions that make them testable.

- ```` ```console ````: a terminal session. ``$ `` starts a command (a line ending in
  ``\\`` continues it on the next line); the lines after it are its expected output,
  compared after ``normalise``; a last line ``...`` means that more lines follow.
- ```` ```python ````: must be preceded by ``<!-- readme-file: docs/examples/x.py -->``
  and equal that file.
- ```` ```js ````: must be preceded by ``<!-- readme-browser -->``: a snippet run in
  Chromium, followed by a ```` ```text ```` block of lines its console shows.
- ```` ```sh ````: commands that cannot run inside a test (they start servers for good
  or need Docker); tests/test_readme.py checks each one as far as it can.
- ```` ```text ````, ```` ```json ````: not code (a diagram, a log line).

``<!-- readme-gateway: VAR=value VAR2 -->`` before a block names the gateway settings
it needs (a name alone: the value the session gives it). Any other block, untagged
included, is an error: nothing in the README escapes the test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

KINDS = frozenset({"console", "python", "js", "sh", "text", "json"})
MORE = "..."

_FENCE = re.compile(r"^```(.*)$")
_MARKER = re.compile(r"^<!--\s*readme-([a-z]+)(?::\s*(.*?))?\s*-->$")

_ID = re.compile(r"\b(?:\d{10,}-\d+|0-0)\b")
"""A stream id, or ``0-0``: a channel's position before its first entry, which a README
session shows when an earlier session (in another order, on another worker) has not
published to that channel yet."""
_TIME = re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
_JWT = re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]+")
_HEX_SECRET = re.compile(r"\b[0-9a-f]{64}\b")
_PID = re.compile(r"\bpid=\d+")


class ReadmeError(ValueError):
    """A block that breaks the conventions; the message names its line."""


@dataclass(frozen=True)
class Command:
    """One ``$`` command of a console block and the output it must print."""

    text: str
    expected: tuple[str, ...]
    more: bool
    line: int


@dataclass(frozen=True)
class Block:
    kind: str
    line: int
    """The line of the opening fence (1-based)."""
    body: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def file(self) -> str | None:
        return self.markers.get("file")

    @property
    def browser(self) -> bool:
        return "browser" in self.markers

    @property
    def gateway(self) -> dict[str, str | None] | None:
        """Settings from ``readme-gateway``: ``{"VAR": "value", "VAR2": None}``."""
        spec = self.markers.get("gateway")
        if spec is None:
            return None
        settings: dict[str, str | None] = {}
        for word in spec.split():
            name, sep, value = word.partition("=")
            settings[name] = value if sep else None
        return settings

    def commands(self) -> list[Command]:
        """The commands of a console block, with their expected output; of a sh block,
        one per line (no prompt, no output)."""
        if self.kind == "sh":
            return [
                Command(line, (), False, number)
                for number, line in enumerate(self.body.splitlines(), start=self.line + 1)
                if line.strip()
            ]
        commands: list[Command] = []
        text: list[str] = []
        expected: list[str] = []
        start = 0
        continued = False

        def flush() -> None:
            if not text:
                return
            more = bool(expected) and expected[-1] == MORE
            lines = expected[:-1] if more else expected
            if MORE in lines:
                raise ReadmeError(f"line {start}: '...' may only end a command's output")
            while lines and not lines[-1].strip():
                lines.pop()
            commands.append(Command("\n".join(text), tuple(lines), more, start))

        for number, line in enumerate(self.body.splitlines(), start=self.line + 1):
            if continued:
                text.append(line)
            elif line.startswith("$ "):
                flush()
                text, expected, start = [line[2:]], [], number
            elif not text:
                raise ReadmeError(f"line {number}: a {self.kind} block must start with '$ '")
            else:
                expected.append(line)
            continued = line.endswith("\\") and not expected
        flush()
        return commands


def parse(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file; ReadmeError for one of no known kind."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    markers: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = _MARKER.match(line.strip())
        fence = _FENCE.match(line)
        if marker is not None:
            markers[marker.group(1)] = marker.group(2) or ""
        elif fence is not None:
            kind = fence.group(1).strip()
            start = index + 1
            index += 1
            body: list[str] = []
            while index < len(lines) and not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            if index == len(lines):
                raise ReadmeError(f"line {start}: a fence that is never closed")
            if kind not in KINDS:
                raise ReadmeError(
                    f"line {start}: a block of kind {kind or '(none)'!r}; use one of "
                    f"{', '.join(sorted(KINDS))}"
                )
            blocks.append(Block(kind, start, "\n".join(body) + "\n", markers))
            markers = {}
        elif line.strip():
            markers = {}  # a marker applies to the block right after it
        index += 1
    _check(blocks)
    return blocks


def _check(blocks: list[Block]) -> None:
    for number, block in enumerate(blocks):
        if block.kind == "python" and block.file is None:
            raise ReadmeError(
                f"line {block.line}: a python block needs <!-- readme-file: docs/examples/x.py -->"
            )
        if block.kind == "js":
            if not block.browser:
                raise ReadmeError(f"line {block.line}: a js block needs <!-- readme-browser -->")
            following = blocks[number + 1] if number + 1 < len(blocks) else None
            if following is None or following.kind != "text":
                raise ReadmeError(
                    f"line {block.line}: a readme-browser block is followed by a text block "
                    "of the lines its console shows"
                )
        if block.kind in ("console", "sh"):
            block.commands()  # raises for a malformed session


def normalise(text: str) -> str:
    """What may differ between two runs, replaced by a placeholder."""
    text = _TIME.sub("<time>", text)
    text = _ID.sub("<id>", text)
    text = _JWT.sub("<token>", text)
    text = _HEX_SECRET.sub("<token>", text)
    return _PID.sub("pid=<pid>", text)


def output_matches(expected: tuple[str, ...], more: bool, actual: str) -> bool:
    """Whether ``actual`` (a command's output) is what the README shows, normalised."""
    want = [normalise(line).rstrip() for line in expected]
    got = [normalise(line).rstrip() for line in actual.splitlines()]
    while got and not got[-1]:
        got.pop()
    if more:
        return got[: len(want)] == want
    return got == want
