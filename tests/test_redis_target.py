"""REDIS_URL as one node or a seed list, and SSE_REDIS_MODE, read the same way everywhere."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from contract.redis_target import RedisConfigError, RedisMode, RedisTarget
from tests.support.processes import run_cli
from tests.support.redis_server import RedisServer


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


async def test_a_server_that_will_not_say_its_mode_needs_it_set(redis_server: RedisServer) -> None:
    async with Redis.from_url(redis_server.url) as admin:
        await admin.execute_command(
            "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-info"
        )
    url = f"redis://app:pw@127.0.0.1:{redis_server.port}/0"
    with pytest.raises(RedisConfigError, match="set SSE_REDIS_MODE=standalone"):
        await RedisTarget.parse(url).detect_mode()
    # Once it is set, it is trusted, and producers publish.
    assert await RedisTarget.parse(url, "standalone").detect_mode() is RedisMode.STANDALONE
    env = {"REDIS_URL": url, "SSE_REDIS_MODE": "standalone"}
    assert run_cli("producers", "echo", "--count", "1", env=env).returncode == 0
