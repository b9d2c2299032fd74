"""REDIS_URL as one node or a seed list, and SSE_REDIS_MODE, read the same way everywhere."""

from __future__ import annotations

import pytest

from contract.redis_target import RedisConfigError, RedisMode, RedisTarget


def test_seeds_without_a_scheme_borrow_the_first_ones_scheme_and_credentials() -> None:
    target = RedisTarget.parse("rediss://app:s3cret@a.example:7000, b.example:7001,redis://c:7002")
    assert target.urls == (
        "rediss://app:s3cret@a.example:7000",
        "rediss://app:s3cret@b.example:7001",
        "redis://c:7002",
    )
    assert target.is_seed_list
    assert target.forced_mode is None
    assert "s3cret" not in target.describe()


@pytest.mark.parametrize(
    ("mode", "forced"),
    [
        (None, None),
        ("auto", None),
        ("cluster", RedisMode.CLUSTER),
        ("standalone", RedisMode.STANDALONE),
    ],
)
def test_one_url_takes_any_mode(mode: str | None, forced: RedisMode | None) -> None:
    target = RedisTarget.parse("redis://127.0.0.1:6379/0", mode)
    assert target.urls == ("redis://127.0.0.1:6379/0",)
    assert target.forced_mode is forced


@pytest.mark.parametrize(
    ("url", "mode", "expected"),
    [
        ("redis://a:1,redis://b:2", "standalone", "takes one REDIS_URL"),
        ("redis://a:1/3", "cluster", "only database 0"),
        ("unix:///run/redis.sock", "cluster", "unix socket"),
        ("redis://a:1,", None, "seed nodes separated by commas"),
        ("redis://a:x,b:2", None, "could not be cast"),
        ("redis://a:1", "sentinel", "use auto, standalone or cluster"),
    ],
)
def test_urls_that_cannot_work_say_why(url: str, mode: str | None, expected: str) -> None:
    with pytest.raises(RedisConfigError, match=expected):
        RedisTarget.parse(url, mode)
