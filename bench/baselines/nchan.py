"""nginx + nchan (Debian's ``libnginx-mod-nchan``): install when missing, configure, run.

Everything nginx writes (pid, logs, temp files) stays in a run directory; the
service that the Debian package would start is kept from starting.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bench.procs import SERVER_CORE, Proc, free_port, start_process, wait_for_port

NGINX = "/usr/sbin/nginx"
PACKAGES = ("nginx", "libnginx-mod-nchan")
TEMPLATE = Path(__file__).with_name("nchan.conf")
POLICY_RC = Path("/usr/sbin/policy-rc.d")


class NchanUnavailable(RuntimeError):
    """nginx with the nchan module is not installed and could not be installed."""


def module_path() -> str | None:
    """The nchan module's ``.so`` as installed by the Debian package, if it is."""
    try:
        listing = subprocess.run(
            ["dpkg", "-L", "libnginx-mod-nchan"], capture_output=True, text=True, check=False
        ).stdout
    except FileNotFoundError:
        return None
    for line in listing.splitlines():
        if line.endswith(".so") and "nchan" in line and Path(line).exists():
            return line
    return None


def installed() -> bool:
    return Path(NGINX).exists() and module_path() is not None


def version() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return f"nchan {out.strip()}" if out else "nchan (unknown version)"


def ensure_installed() -> None:
    """``apt-get install`` nginx and nchan when missing, without starting nginx's service."""
    if installed():
        return
    if shutil.which("apt-get") is None:
        raise NchanUnavailable("nginx+nchan missing and apt-get is not available")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    created = False
    if not POLICY_RC.exists():
        # invoke-rc.d asks this script whether services may start; 101 means "no".
        subprocess.run(
            [
                *sudo,
                "sh",
                "-c",
                f"printf '#!/bin/sh\\nexit 101\\n' > {POLICY_RC} && chmod +x {POLICY_RC}",
            ],
            check=True,
        )
        created = True
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        result = subprocess.run(
            [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    finally:
        if created:
            subprocess.run([*sudo, "rm", "-f", str(POLICY_RC)], check=False)
    if result.returncode != 0 or not installed():
        raise NchanUnavailable(
            f"apt-get install {' '.join(PACKAGES)} failed:\n{result.stderr[-2000:]}"
        )


def render_conf(prefix: Path, port: int, core: str = SERVER_CORE) -> Path:
    module = module_path()
    if module is None:
        raise NchanUnavailable("the nchan module is not installed")
    mask = format(1 << int(core), "b")
    text = (
        TEMPLATE.read_text()
        .replace("@MODULE@", module)
        .replace("@PREFIX@", str(prefix))
        .replace("@PORT@", str(port))
        .replace("@CPU_MASK@", mask)
    )
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


async def start_nchan(run_dir: Path) -> tuple[Proc, int]:
    """nginx+nchan on a free port with everything under ``run_dir/nginx``."""
    ensure_installed()
    prefix = run_dir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = render_conf(prefix, port)
    argv = [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    proc = await start_process("nginx", argv, log_dir=run_dir)
    await wait_for_port(proc, port)
    return proc, port
