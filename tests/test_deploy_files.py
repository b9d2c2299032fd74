"""The deployment files: docker-compose.yml, Dockerfile, nginx, Prometheus and Grafana.

No Docker engine runs here, so the containers are not started. What can be checked
without one is: the compose file names the services, images, ports and healthchecks
the design asks for; its commands are accepted by our own command lines; the
healthcheck one-liner works against a real gateway; the Dockerfile runs as a non-root
user; Debian's nginx accepts the shipped configuration (``nginx -t``) and keeps
/metrics to itself; Prometheus scrapes every gateway of the compose file; and every
query of the Grafana dashboard names metrics and labels that a real gateway exposes
(its /metrics read with prometheus-client's parser).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.cli import build_parser as gateway_parser
from producers.cli import build_parser as producer_parser
from producers.publisher import Publisher
from tests.support.assertions import publish_numbered
from tests.support.metrics import Exposition, parse, scrape, wait_for_metrics
from tests.support.nginx import (
    MAKE_CERT,
    NGINX_CONF,
    UPSTREAM_SERVER,
    NginxProcess,
    check_config,
    make_certificate,
    render_config,
)
from tests.support.ports import free_port
from tests.support.processes import ROOT, GatewayProcess
from tests.support.sse import sse_connect

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_CONF = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "redis-sse-gateway.json"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text())
    services: dict[str, Any] = compose["services"]
    return services


def gateway_names(services: dict[str, Any]) -> list[str]:
    return sorted(name for name in services if re.fullmatch(r"gateway-\d+", name))


def env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def depends_on_healthy(service: dict[str, Any], other: str) -> bool:
    depends = service.get("depends_on", {})
    return isinstance(depends, dict) and depends.get(other, {}).get("condition") == (
        "service_healthy"
    )


def healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    assert test[0] in ("CMD", "CMD-SHELL"), test
    return test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert match, f"unexpected duration {duration!r}"
    return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60}[match[2]]


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> the repository path mounted there."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = (ROOT / source).resolve()
    return found


def test_compose_names_every_service(services: dict[str, Any]) -> None:
    assert {
        "redis",
        "producer-echo",
        "producer-reverse-echo",
        "nginx",
        "prometheus",
        "grafana",
    } <= set(services)
    assert len(gateway_names(services)) >= 2, "at least two gateway replicas"


def test_compose_redis_keeps_history_with_aof_and_has_a_healthcheck(
    services: dict[str, Any],
) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    command = shlex.split(command) if isinstance(command, str) else command
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"]), "AOF on a volume"
    assert healthcheck_argv(redis) == ["redis-cli", "ping"]


def test_compose_app_services_share_one_image_and_wait_for_redis(
    services: dict[str, Any],
) -> None:
    app_services = ["producer-echo", "producer-reverse-echo", *gateway_names(services)]
    images = {services[name]["image"] for name in app_services}
    builds = {services[name]["build"] for name in app_services}
    assert len(images) == 1, f"one image for gateway and producers, found {images}"
    assert builds == {"."}
    for name in app_services:
        service = services[name]
        assert env(service)["REDIS_URL"] == "redis://redis:6379/0", name
        assert depends_on_healthy(service, "redis"), name


def test_compose_producer_commands_are_accepted_by_the_producer_cli(
    services: dict[str, Any],
) -> None:
    for name, kind in (("producer-echo", "echo"), ("producer-reverse-echo", "reverse-echo")):
        command = services[name]["command"]
        assert command[:3] == ["python", "-m", "producers"], command
        assert producer_parser().parse_args(command[3:]).kind == kind


def test_compose_gateways_check_readiness_and_get_time_to_drain(
    services: dict[str, Any],
) -> None:
    for name in gateway_names(services):
        gateway = services[name]
        command = gateway["command"]
        assert command[:3] == ["python", "-m", "gateway"], command
        args = gateway_parser().parse_args(command[3:])
        assert (args.host, args.port) == ("0.0.0.0", 8000)
        assert "ports" not in gateway, "only nginx is published"
        assert "/readyz" in " ".join(healthcheck_argv(gateway))
        grace = float(env(gateway).get("SSE_SHUTDOWN_GRACE_PERIOD", "5"))
        # uvicorn waits for the drain up to grace + 2s (gateway/cli.py) before it gives up.
        assert seconds(gateway["stop_grace_period"]) > grace + 2, name


def test_compose_nginx_is_published_on_one_port_with_the_shipped_config(
    services: dict[str, Any],
) -> None:
    nginx = services["nginx"]
    assert nginx["image"].startswith("nginx:")
    assert nginx["ports"] == ["8080:8080", "8443:8443"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in nginx["volumes"]}
    assert (ROOT / mounts["/etc/nginx/nginx.conf"]).resolve() == NGINX_CONF
    for name in gateway_names(services):
        assert depends_on_healthy(nginx, name), name
    published = [name for name, service in services.items() if service.get("ports")]
    assert published == ["nginx", "grafana"]  # the gateways and Prometheus stay inside


def test_compose_makes_the_certificate_nginx_reads_before_nginx_starts(
    services: dict[str, Any], tmp_path: Path
) -> None:
    maker, nginx = services["tls-cert"], services["nginx"]
    script, directory = maker["command"][1], maker["command"][2]
    assert maker["command"][0] == "python"
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in maker["volumes"]}
    assert (ROOT / mounts[script]).resolve() == MAKE_CERT
    nginx_mounts = {v.split(":")[1]: v.split(":")[0] for v in nginx["volumes"]}
    assert nginx_mounts["/etc/nginx/tls"] == mounts[directory], "one volume, both sides"
    assert nginx["depends_on"]["tls-cert"]["condition"] == "service_completed_successfully"
    assert maker["restart"] == "no"
    # The paths nginx.conf reads are the files the script writes.
    assert directives(NGINX_CONF.read_text(), "ssl_certificate") == ["/etc/nginx/tls/gateway.crt"]
    assert directives(NGINX_CONF.read_text(), "ssl_certificate_key") == [
        "/etc/nginx/tls/gateway.key"
    ]
    first = subprocess.run(
        [sys.executable, str(MAKE_CERT), str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert first.returncode == 0, first.stderr
    made = (tmp_path / "gateway.crt").read_bytes()
    assert (tmp_path / "gateway.key").stat().st_mode & 0o077 == 0, "the key is private"
    again = subprocess.run(
        [sys.executable, str(MAKE_CERT), str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert again.returncode == 0
    assert (tmp_path / "gateway.crt").read_bytes() == made, "an existing certificate is kept"


def test_nginx_upstream_lists_exactly_the_compose_gateways(services: dict[str, Any]) -> None:
    servers = re.findall(r"^\s*server\s+(gateway-\d+):8000\b", NGINX_CONF.read_text(), re.M)
    assert sorted(servers) == gateway_names(services)
    assert len(UPSTREAM_SERVER.findall(NGINX_CONF.read_text())) == len(servers)


def directives(text: str, name: str) -> list[str]:
    """Arguments of every ``name ...;`` directive, comments stripped."""
    code = re.sub(r"#[^\n]*", "", text)
    return [args.strip() for args in re.findall(rf"(?<![\w$]){name}\s+([^;{{]*);", code)]


def sse_location(text: str) -> str:
    match = re.search(r"location /sse \{(.*?)\}", re.sub(r"#[^\n]*", "", text), re.S)
    assert match, "no `location /sse` block"
    return match[1]


def test_nginx_config_is_ready_for_server_sent_events() -> None:
    text = NGINX_CONF.read_text()
    location = sse_location(text)
    assert directives(location, "proxy_buffering") == ["off"]
    assert directives(location, "proxy_cache") == ["off"]
    assert directives(text, "proxy_http_version") == ["1.1"]
    assert 'Connection ""' in directives(text, "proxy_set_header")
    assert "Last-Event-ID $http_last_event_id" in directives(text, "proxy_set_header")
    # A location with its own proxy_set_header would silently drop the server-level ones.
    assert directives(location, "proxy_set_header") == []
    (read_timeout,) = directives(location, "proxy_read_timeout")
    assert read_timeout.endswith("h") or seconds(read_timeout) >= 60
    assert "error" in directives(text, "proxy_next_upstream")[0].split()
    # Browsers get HTTP/2 (over TLS) as well as HTTP/1.1; the gateways HTTP/1.1 only.
    assert sorted(directives(text, "listen")) == ["8080", "8443 ssl http2"]
    for sticky in ("ip_hash", "hash", "sticky"):
        assert not directives(text, sticky), f"{sticky}: replicas need no stickiness"


def test_nginx_accepts_the_shipped_config(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    make_certificate(tmp_path / "tls")
    config = tmp_path / "nginx.conf"
    upstreams = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    config.write_text(render_config(upstreams, f"127.0.0.1:{free_port()}", tmp_path))
    result = check_config(config, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a config nginx does not understand is reported."""
    (tmp_path / "tmp").mkdir()
    make_certificate(tmp_path / "tls")
    broken = tmp_path / "source.conf"
    broken.write_text(NGINX_CONF.read_text().replace("proxy_buffering off;", "proxy_buffering;"))
    config = tmp_path / "nginx.conf"
    upstreams = ["127.0.0.1:1", "127.0.0.1:2"]
    config.write_text(render_config(upstreams, "127.0.0.1:3", tmp_path, source=broken))
    result = check_config(config, tmp_path)
    assert result.returncode != 0
    assert "proxy_buffering" in result.stderr


def test_compose_gateway_healthcheck_passes_on_a_ready_gateway_and_fails_without_one(
    services: dict[str, Any], gateway: GatewayProcess
) -> None:
    argv = healthcheck_argv(services["gateway-1"])
    assert argv[0] == "python"
    ready = [sys.executable, *(arg.replace(":8000/", f":{gateway.port}/") for arg in argv[1:])]
    assert subprocess.run(ready, capture_output=True, timeout=20).returncode == 0
    nothing = [sys.executable, *(arg.replace(":8000/", f":{free_port()}/") for arg in argv[1:])]
    assert subprocess.run(nothing, capture_output=True, timeout=20).returncode != 0


def test_dockerfile_builds_one_slim_non_root_image() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    froms = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    assert froms, "no FROM"
    assert all(image.startswith("python:3.11-slim") for image in froms), froms
    installs = [line for line in lines if line.startswith("RUN uv sync")]
    assert installs, "installs with uv"
    assert all("--locked" in line for line in installs), "the versions in uv.lock"
    assert "--no-editable" in installs[-1], "the project itself, not a link to /src"
    uv_pin = re.search(r'pip install "uv==([^"]+)"', DOCKERFILE.read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert uv_pin, "uv pinned"
    assert f"=={uv_pin[1]}" == pyproject["tool"]["uv"]["required-version"]
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    (cmd,) = [line for line in lines if line.upper().startswith("CMD ")]
    assert cmd.startswith('CMD ["python", "-m", "gateway"'), "exec form, the gateway by default"
    ignored = DOCKERIGNORE.read_text().split()
    assert {".git", ".venv"} <= set(ignored)


def test_compose_prometheus_scrapes_every_gateway_directly(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert mounts(prometheus)["/etc/prometheus/prometheus.yml"] == PROMETHEUS_CONF
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    for name in gateway_names(services):
        assert depends_on_healthy(prometheus, name), name
    config = yaml.safe_load(PROMETHEUS_CONF.read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    assert sorted(targets) == [f"{name}:8000" for name in gateway_names(services)]


def test_compose_grafana_provisions_prometheus_and_the_dashboard(
    services: dict[str, Any],
) -> None:
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert grafana["ports"] == ["3000:3000"]
    assert depends_on_healthy(grafana, "prometheus")
    mounted = mounts(grafana)
    assert mounted["/etc/grafana/provisioning"] == (GRAFANA / "provisioning").resolve()
    assert mounted["/var/lib/grafana/dashboards"] == DASHBOARD.parent.resolve()
    (source,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    (provider,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "redis-sse-gateway.yml").read_text()
    )["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    home = env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"/var/lib/grafana/dashboards/{DASHBOARD.name}"


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [
        panel
        for top in dashboard["panels"]
        for panel in [top, *top.get("panels", [])]
        if panel.get("type") != "row"
    ]
    return [target["expr"] for panel in panels for target in panel["targets"]]


# Label names Prometheus adds to every scraped series, and histogram bucket bounds.
TARGET_LABELS = {"instance", "job", "le"}


def test_the_dashboard_covers_what_operators_watch() -> None:
    queries = " ".join(dashboard_queries())
    for metric in (
        "sse_gateway_streams_open",
        "sse_gateway_deliveries_total",
        "sse_gateway_publish_latency_seconds_bucket",
        "sse_gateway_history_gaps_total",
        "sse_gateway_redis_reconnects_total",
    ):
        assert metric in queries, metric
    assert "histogram_quantile(0.99" in queries
    assert "by (instance, pid)" in queries  # per worker


def query_problems(queries: list[str], exposition: Exposition) -> list[str]:
    """Metric and grouping-label names in ``queries`` that ``exposition`` does not have."""
    labels = TARGET_LABELS | {label for s in exposition.samples for label in s.labels}
    problems = []
    for query in queries:
        names = set(re.findall(r"\bsse_gateway_\w+", query))
        if not names:
            problems.append(f"{query}: reads no gateway metric")
        for name in sorted(names - exposition.names):
            problems.append(f"{query}: no metric {name}")
        for grouped in re.findall(r"\bby \(([^)]*)\)", query):
            for label in sorted({label.strip() for label in grouped.split(",")} - labels):
                problems.append(f"{query}: no label {label}")
    return problems


async def test_the_dashboards_queries_name_metrics_and_labels_a_gateway_exposes(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    # Two workers: the per-worker panels' pid label exists only in multiprocess mode.
    gateway = gateway_factory(workers=2)
    async with sse_connect(gateway.base_url, ["echo"]) as stream:
        async with Publisher.from_url(redis_url) as publisher:
            await publish_numbered(publisher, "echo", range(3))
        await stream.take(3, timeout=10)
    exposition = await wait_for_metrics(
        gateway, lambda m: m.value("sse_gateway_deliveries_total") == 3
    )
    queries = dashboard_queries()
    assert len(queries) > 20
    assert query_problems(queries, exposition) == []


def test_the_query_check_reports_a_misspelt_metric_or_label() -> None:
    exposition = parse(
        '# TYPE sse_gateway_streams_open gauge\nsse_gateway_streams_open{pid="1"} 3\n'
    )
    assert query_problems(["sum by (pid) (sse_gateway_streams_open)"], exposition) == []
    assert query_problems(["sum(sse_gateway_streams_opne)"], exposition) == [
        "sum(sse_gateway_streams_opne): no metric sse_gateway_streams_opne"
    ]
    assert query_problems(["sum by (node) (sse_gateway_streams_open)"], exposition) == [
        "sum by (node) (sse_gateway_streams_open): no label node"
    ]


def test_nginx_keeps_metrics_to_itself_and_answers_in_json(
    gateway: GatewayProcess, nginx_factory: Callable[[list[str]], NginxProcess]
) -> None:
    nginx = nginx_factory([f"127.0.0.1:{gateway.port}", f"127.0.0.1:{gateway.port}"])
    response = httpx.get(f"http://127.0.0.1:{nginx.port}/metrics", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert httpx.get(f"http://127.0.0.1:{nginx.port}/healthz", timeout=10).status_code == 200
    assert scrape(gateway).value("sse_gateway_streams_open") == 0  # the gateway itself serves it
