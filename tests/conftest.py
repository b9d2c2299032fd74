"""Fixtures: a clean Redis (or Redis Cluster) per test, real gateway and producer processes
on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support.nginx import NginxProcess
from tests.support.paths import FAST, StreamPath
from tests.support.processes import GatewayProcess, ManagedProcess, ProducerProcess
from tests.support.redis_cluster import LocalRedisCluster
from tests.support.redis_server import RedisServer, new_redis_server

# Modules whose few tests take the longest (minutes in all), handed out first when the tests
# run on several processes (./scripts/test: -n 2 --dist loadfile --no-loadscope-reorder), so
# that none of them starts last and runs on alone while the other process is idle. Only the
# order changes: every test runs, as in a run on one process.
LONGEST_MODULES = ("test_bench_smoke.py", "test_chaos.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # one process: the order tests/ has
        return
    # xdist hands out tests by node id, and schemathesis gives every API operation of a test
    # the same one (the operation is in its name only): of such tests one would run, the
    # others silently not at all. ./scripts/test runs those (tests/test_api_fuzz.py) on one
    # process; any other module that has them must be run so too.
    ids = [item.nodeid for item in items]
    repeated = sorted({nodeid for nodeid in ids if ids.count(nodeid) > 1})
    if repeated:
        raise pytest.UsageError(
            "tests sharing a node id would not all run on several processes; run them on one "
            "(see scripts/test):\n  " + "\n  ".join(repeated)
        )
    # The longest first, then the rest by their number of tests, most first (what xdist's own
    # reordering does; sorted() is stable, so each module keeps its tests' order).
    per_module: dict[str, int] = {}
    for item in items:
        per_module[item.path.name] = per_module.get(item.path.name, 0) + 1

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        name = item.path.name
        if name in LONGEST_MODULES:
            return (LONGEST_MODULES.index(name), 0, name)
        return (len(LONGEST_MODULES), -per_module[name], name)

    items.sort(key=rank)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is None or report.failed


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = new_redis_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest) -> Iterator[LocalRedisCluster]:
    """A fresh Redis Cluster on loopback: 3 masters, a replica each, every slot served."""
    cluster = LocalRedisCluster()
    try:
        cluster.start()
        yield cluster
        if _failed(request):
            for node in cluster.nodes:
                print(f"\n----- cluster node {node.port} log -----\n{node.log()[-2000:]}")
    finally:
        cluster.close()


@pytest.fixture
def _processes(request: pytest.FixtureRequest) -> Iterator[list[ManagedProcess]]:
    processes: list[ManagedProcess] = []
    yield processes
    failed = _failed(request)
    for process in processes:
        if failed:
            print(f"\n----- {process.name} (pid {process.pid}) log -----\n{process.log()[-4000:]}")
        process.close()


@pytest.fixture
def stream_path() -> StreamPath:
    """How gateways started by ``gateway_factory`` serve streams; test modules that must
    hold on every path override it with ``tests.support.paths.ALL_PATHS``."""
    return FAST


@pytest.fixture
def gateway_factory(
    redis_url: str, _processes: list[ManagedProcess], stream_path: StreamPath
) -> Callable[..., GatewayProcess]:
    def start(
        env: dict[str, str] | None = None,
        workers: int = 1,
        redis_url: str = redis_url,
        port: int | None = None,
        args: list[str] | None = None,
        open_files: int | None = None,
        ready_timeout: float = 30,
    ) -> GatewayProcess:
        gateway = GatewayProcess(
            redis_url,
            env={**stream_path.env, **(env or {})},
            workers=workers,
            port=port,
            args=[*stream_path.args, *(args or [])],
            open_files=open_files,
            ready_timeout=ready_timeout,
        )
        _processes.append(gateway)
        if not stream_path.fast:
            fast_path = gateway.stats()["fast_path"]
            assert fast_path == {"active": False, "reason": "turned off by SSE_FAST_PATH=false"}
        return gateway

    return start


@pytest.fixture
def gateway(gateway_factory: Callable[..., GatewayProcess]) -> GatewayProcess:
    return gateway_factory()


@pytest.fixture
def producer_factory(
    redis_url: str, _processes: list[ManagedProcess]
) -> Callable[..., ProducerProcess]:
    def start(kind: str, **options: Any) -> ProducerProcess:
        producer = ProducerProcess(redis_url, kind, **options)
        _processes.append(producer)
        return producer

    return start


@pytest.fixture
def nginx_factory(_processes: list[ManagedProcess]) -> Callable[[list[str]], NginxProcess]:
    """Debian's nginx with the shipped deploy/nginx/nginx.conf, in front of ``host:port``s."""

    def start(upstreams: list[str]) -> NginxProcess:
        nginx = NginxProcess(upstreams)
        _processes.append(nginx)
        return nginx

    return start


@pytest.fixture
def cluster_gateway_factory(
    redis_cluster: LocalRedisCluster, _processes: list[ManagedProcess]
) -> Callable[..., GatewayProcess]:
    """``python -m gateway`` against the cluster (REDIS_URL: every node, unless given)."""

    def start(env: dict[str, str] | None = None, redis_url: str | None = None) -> GatewayProcess:
        gateway = GatewayProcess(redis_url or redis_cluster.url, env=env)
        _processes.append(gateway)
        return gateway

    return start


@pytest.fixture
def cluster_producer_factory(
    redis_cluster: LocalRedisCluster, _processes: list[ManagedProcess]
) -> Callable[..., ProducerProcess]:
    """``python -m producers`` against the cluster (REDIS_URL: every node, unless given)."""

    def start(kind: str, redis_url: str | None = None, **options: Any) -> ProducerProcess:
        producer = ProducerProcess(redis_url or redis_cluster.url, kind, **options)
        _processes.append(producer)
        return producer

    return start
