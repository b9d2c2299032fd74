"""Whether the installed uvicorn and sse-starlette are what the fast path was written for.

Checked once, at import: the versions must lie in the ranges below (the ones
the test suite ran against), and the private attributes the fast path touches
must still be set where it expects them. The attributes are read off the
compiled code of the methods that set or use them (``co_names``), so the check
costs nothing per request and needs no server running. Any mismatch turns the
fast path off for the process, with the reason, and streams take the stock
path; pyproject.toml bounds the same versions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

TESTED_VERSIONS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    # package: (lowest tested, first untested); keep in step with pyproject.toml.
    "uvicorn": ((0, 37), (0, 55)),
    "sse-starlette": ((3, 0), (3, 8)),
}

_VERSION_RE = re.compile(r"(\d+)\.(\d+)")


def _version(package: str) -> tuple[int, int] | None:
    try:
        text = metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
    match = _VERSION_RE.match(text)
    return (int(match[1]), int(match[2])) if match else None


def version_problem(
    package: str, installed: tuple[int, int] | None, tested: tuple[tuple[int, int], ...]
) -> str | None:
    """Why ``installed`` is not a version of ``package`` the fast path was written for."""
    lowest, untested = tested
    if installed is None:
        return f"{package} is not installed"
    if not lowest <= installed < untested:
        shown = ".".join(map(str, installed))
        return (
            f"{package} {shown} is outside the tested range "
            f">={lowest[0]}.{lowest[1]},<{untested[0]}.{untested[1]}"
        )
    return None


def missing_names(function: Callable[..., Any], names: Iterable[str]) -> list[str]:
    """The ``names`` that ``function``'s code no longer sets or reads."""
    code = getattr(function, "__code__", None)
    present = set(code.co_names) if code is not None else set()
    return sorted(set(names) - present)


def _internals_problem() -> str | None:
    try:
        from sse_starlette.sse import EventSourceResponse
        from uvicorn.protocols.http.flow_control import FlowControl
        from uvicorn.protocols.http.httptools_impl import (
            HttpToolsProtocol,
            RequestResponseCycle,
        )
    except ImportError as exc:  # httptools missing, or uvicorn's modules moved
        return f"cannot import what the fast path uses ({exc})"
    expected: list[tuple[str, Callable[..., Any], tuple[str, ...]]] = [
        ("HttpToolsProtocol.__init__", HttpToolsProtocol.__init__, ("pipeline", "parser")),
        (
            "HttpToolsProtocol.on_headers_complete",
            HttpToolsProtocol.on_headers_complete,
            ("cycle", "pipeline", "flow"),
        ),
        (
            "RequestResponseCycle.__init__",
            RequestResponseCycle.__init__,
            (
                "message_event",
                "flow",
                "transport",
                "disconnected",
                "keep_alive",
                "on_response",
                "response_started",
                "response_complete",
                "waiting_for_100_continue",
                "body",
            ),
        ),
        (
            "RequestResponseCycle.send",
            RequestResponseCycle.send,
            (
                "chunked_encoding",
                "write",
                "expected_content_length",
                "keep_alive",
                "waiting_for_100_continue",
                "default_headers",
                "access_log",
            ),
        ),
        (
            # What OpeningProtocol does in uvicorn's place for a stream's request.
            "HttpToolsProtocol.on_headers_complete",
            HttpToolsProtocol.on_headers_complete,
            ("root_path", "limit_concurrency", "tasks", "default_headers", "on_response_complete"),
        ),
        (
            "HttpToolsProtocol.on_response_complete",
            HttpToolsProtocol.on_response_complete,
            ("total_requests", "timeout_keep_alive_task"),
        ),
        ("FlowControl.__init__", FlowControl.__init__, ("_is_writable_event", "write_paused")),
        (
            "EventSourceResponse.__init__",
            EventSourceResponse.__init__,
            ("_send_lock", "send_timeout", "ping_interval", "background"),
        ),
    ]
    for where, function, names in expected:
        missing = missing_names(function, names)
        if missing:
            return f"{where} no longer uses {', '.join(missing)}"
    return None


def unusable_reason() -> str | None:
    """Why the fast path cannot be used with what is installed; None when it can."""
    for package, tested in TESTED_VERSIONS.items():
        problem = version_problem(package, _version(package), tested)
        if problem is not None:
            return problem
    return _internals_problem()


UNUSABLE_REASON: str | None = unusable_reason()
"""Computed once, at import."""
