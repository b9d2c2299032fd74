"""docker-compose.cluster.yml, checked without a Docker engine: six cluster nodes with AOF
made into 3 masters + 3 replicas once, and producers and gateways that our own command
lines and ``REDIS_URL`` parsing accept as pointed at that cluster."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml

from contract.redis_target import RedisMode, RedisTarget
from gateway.cli import build_parser as gateway_parser
from producers.cli import build_parser as producer_parser
from tests.support.processes import ROOT

COMPOSE = ROOT / "docker-compose.cluster.yml"
NODES = [f"redis-{number}" for number in range(1, 7)]
APPS = ["producer-echo", "producer-reverse-echo", "gateway-1", "gateway-2"]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def shell_words(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    assert command[:2] == ["sh", "-c"], command
    return shlex.split(command[2])


def test_six_cluster_nodes_keep_history_with_aof(services: dict[str, Any]) -> None:
    for name in NODES:
        node = services[name]
        assert node["image"].startswith("redis:7"), "sharded pub/sub needs Redis 7"
        words = shell_words(node)
        assert words[words.index("--cluster-enabled") + 1] == "yes", name
        assert words[words.index("--appendonly") + 1] == "yes", name
        assert node["environment"]["NODE_NAME"] == name, "announces the name others resolve"
        assert any(volume.endswith(":/data") for volume in node["volumes"]), name


def test_the_cluster_is_created_once_with_a_replica_per_master(services: dict[str, Any]) -> None:
    init = services["cluster-init"]
    words = shell_words(init)
    create = words.index("create")
    assert words[create - 1] == "--cluster"
    assert words[create + 1 : create + 7] == [f"{name}:6379" for name in NODES]
    assert words[words.index("--cluster-replicas") + 1] == "1"
    assert "cluster_state:ok" in init["command"][2], "a restart keeps the existing cluster"
    assert set(init["depends_on"]) == set(NODES)
    assert init["restart"] == "no"


def test_apps_are_given_cluster_seeds_and_wait_for_the_cluster(services: dict[str, Any]) -> None:
    for name in APPS:
        service = services[name]
        environment = service["environment"]
        target = RedisTarget.parse(environment["REDIS_URL"], environment["SSE_REDIS_MODE"])
        assert target.forced_mode is RedisMode.CLUSTER
        assert {url.split("//")[1] for url in target.urls} <= {f"{n}:6379" for n in NODES}
        depends = service["depends_on"]["cluster-init"]
        assert depends["condition"] == "service_completed_successfully", name


def test_app_commands_are_accepted_by_our_command_lines(services: dict[str, Any]) -> None:
    for name, kind in (("producer-echo", "echo"), ("producer-reverse-echo", "reverse-echo")):
        command = services[name]["command"]
        assert command[:3] == ["python", "-m", "producers"]
        assert producer_parser().parse_args(command[3:]).kind == kind
    for name in ("gateway-1", "gateway-2"):
        gateway = services[name]
        command = gateway["command"]
        assert command[:3] == ["python", "-m", "gateway"]
        assert gateway_parser().parse_args(command[3:]).port == 8000
        assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
