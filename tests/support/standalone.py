"""A gateway with its own Redis for a whole test module, for tests that only send requests.

Starting a gateway costs seconds; tests that neither publish nor change settings share one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.support.processes import GatewayProcess
from tests.support.redis_server import RedisServer, new_redis_server


@contextlib.contextmanager
def standalone_gateway(
    env: dict[str, str] | None = None,
) -> Iterator[tuple[GatewayProcess, RedisServer]]:
    """A running gateway and its Redis; both stopped on exit (the log is printed if it died)."""
    redis = new_redis_server()
    try:
        gateway = GatewayProcess(redis.url, env=env)
        try:
            yield gateway, redis
        finally:
            if gateway.process.poll() is not None:
                print(f"\n----- gateway (pid {gateway.pid}) log -----\n{gateway.log()[-4000:]}")
            gateway.close()
    finally:
        redis.close()
