"""Debian's nginx in front of test gateways, configured by the shipped deploy/nginx/nginx.conf.

``render_config`` turns the compose configuration into a local one: the
``server gateway-N:8000`` lines point at the test's gateways, both ``listen`` lines
(plain HTTP and HTTPS + HTTP/2) at free loopback ports, the certificate at one made by
the shipped ``deploy/nginx/make_cert.py``, and every path nginx writes goes under a
temporary prefix. Nothing else changes, so the proxy settings under test are the ones
that ship.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ROOT, ManagedProcess

NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
UPSTREAM_SERVER = re.compile(r"^(\s*server\s+)gateway-\d+:8000\b", re.MULTILINE)
LISTEN = re.compile(r"^(\s*listen\s+)8080;", re.MULTILINE)
TLS_LISTEN = re.compile(r"^(\s*listen\s+)8443( ssl http2;)", re.MULTILINE)
TLS_FILES = re.compile(r"^(\s*ssl_certificate(?:_key)?\s+)/etc/nginx/tls/", re.MULTILINE)
MAKE_CERT = ROOT / "deploy" / "nginx" / "make_cert.py"


def nginx_binary() -> str:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise RuntimeError("nginx is not installed: apt-get install nginx (scripts/test does)")
    return binary


def make_certificate(directory: Path) -> None:
    """A self-signed certificate in ``directory``, made by the script that ships."""
    subprocess.run(
        [sys.executable, str(MAKE_CERT), str(directory)], check=True, capture_output=True
    )


def render_config(
    upstreams: Sequence[str],
    listen: str,
    prefix: Path,
    source: Path = NGINX_CONF,
    *,
    tls_listen: str | None = None,
) -> str:
    """The shipped config with local upstreams (``host:port``), listen addresses (the TLS
    one on a free port unless given), paths, and the certificate in ``prefix/tls``."""
    text = source.read_text()
    servers = UPSTREAM_SERVER.findall(text)
    if len(servers) != len(upstreams):
        raise ValueError(
            f"{source} names {len(servers)} gateway servers, {len(upstreams)} were given"
        )
    addresses = iter(upstreams)
    text = UPSTREAM_SERVER.sub(lambda m: m.group(1) + next(addresses), text)
    text, listens = LISTEN.subn(lambda m: f"{m.group(1)}{listen};", text)
    if listens != 1:
        raise ValueError(f"{source} must have exactly one `listen 8080;` line, has {listens}")
    tls_listen = tls_listen or f"127.0.0.1:{free_port()}"
    text, tls_listens = TLS_LISTEN.subn(lambda m: f"{m.group(1)}{tls_listen}{m.group(2)}", text)
    if tls_listens != 1:
        raise ValueError(f"{source} must have one `listen 8443 ssl http2;` line, has {tls_listens}")
    text = TLS_FILES.sub(lambda m: f"{m.group(1)}{prefix / 'tls'}/", text)
    local = "\n".join(
        f"    {name}_temp_path {prefix / 'tmp' / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text, https = re.subn(r"^http \{$", f"http {{\n{local}", text, flags=re.MULTILINE)
    if https != 1:
        raise ValueError(f"{source} must have one top-level `http {{` block")
    # A foreground nginx (ended by its PID) whose pid file lives under the prefix; its
    # error log goes to stderr as shipped, which the process log captures.
    return f"daemon off;\npid {prefix / 'nginx.pid'};\n" + text


def check_config(config: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on a config file, with nothing read from or written to /etc or /var."""
    return subprocess.run(
        [nginx_binary(), "-t", "-p", str(prefix), "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )


class NginxProcess(ManagedProcess):
    """nginx in the foreground on a free loopback port, proxying to ``upstreams``."""

    def __init__(self, upstreams: Sequence[str]) -> None:
        self.prefix = Path(tempfile.mkdtemp(prefix="sse-test-nginx-"))
        (self.prefix / "tmp").mkdir()
        make_certificate(self.prefix / "tls")
        self.port = free_port()
        self.tls_port = free_port()
        self.config = self.prefix / "nginx.conf"
        self.config.write_text(
            render_config(
                upstreams,
                f"127.0.0.1:{self.port}",
                self.prefix,
                tls_listen=f"127.0.0.1:{self.tls_port}",
            )
        )
        checked = check_config(self.config, self.prefix)
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{checked.stderr}")
        args = [nginx_binary(), "-p", str(self.prefix), "-c", str(self.config), "-e", "stderr"]
        super().__init__(args, {}, name="nginx")
        if not (wait_for_port(self.port, timeout=10) and wait_for_port(self.tls_port, timeout=10)):
            log = self.log()
            self.close()
            raise RuntimeError(f"nginx did not listen on {self.port}:\n{log}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_url(self) -> str:
        """The HTTPS + HTTP/2 listener (self-signed certificate)."""
        return f"https://127.0.0.1:{self.tls_port}"

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.prefix, ignore_errors=True)
