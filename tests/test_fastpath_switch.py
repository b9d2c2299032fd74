"""The fast path's switch: on only for the tested versions of uvicorn and sse-starlette.

The end-to-end tests run on both paths (tests/support/paths.py); these check the
decision itself: the version ranges, the private names the fast path relies on, and
that a switched-off fast path hands out none of its pieces.
"""

from __future__ import annotations

from typing import Any

from gateway._fastpath import TESTED_VERSIONS, UNUSABLE_REASON, FastPath
from gateway._fastpath.compat import missing_names, version_problem
from gateway._fastpath.switch import OFF_BY_SETTING


def test_the_installed_versions_are_the_tested_ones() -> None:
    # Fails when a dependency moves past the range pyproject.toml allows: re-test the fast
    # path against it, then widen both.
    assert UNUSABLE_REASON is None


def test_a_version_outside_the_tested_range_is_refused_with_the_range() -> None:
    tested = TESTED_VERSIONS["uvicorn"]
    assert version_problem("uvicorn", tested[0], tested) is None
    problem = version_problem("uvicorn", tested[1], tested)
    assert problem is not None
    assert "outside the tested range" in problem
    assert f"<{tested[1][0]}.{tested[1][1]}" in problem
    assert version_problem("uvicorn", None, tested) == "uvicorn is not installed"


def test_a_private_name_that_disappeared_is_named() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.message_event = None
            self.flow = None

    assert missing_names(Cycle.__init__, ["message_event", "flow"]) == []
    assert missing_names(Cycle.__init__, ["message_event", "transport"]) == ["transport"]


def test_a_fast_path_turned_off_hands_out_nothing() -> None:
    fast_path = FastPath(False, trusted_proxies="127.0.0.1")
    assert not fast_path.active
    assert fast_path.reason == OFF_BY_SETTING
    assert fast_path.forwarded is None
    assert fast_path.http_protocol is None

    async def send(message: Any) -> None:  # pragma: no cover - never called
        raise AssertionError

    assert fast_path.direct_writes(send, coalesce=True) is None
    assert fast_path.response_template(object()) is None  # type: ignore[arg-type]


def test_the_fast_path_on_offers_its_protocol() -> None:
    fast_path = FastPath(True, trusted_proxies="127.0.0.1")
    assert fast_path.active
    assert fast_path.http_protocol is not None
    # Streams open in it; every other request goes on to LeanHttpProtocol.
    assert fast_path.http_protocol.__name__ == "OpeningProtocol"
    assert fast_path.forwarded is not None
