"""Resource use of a process tree, read from /proc: CPU seconds, RSS, fds, threads.

A server may fork (nginx's worker, uvicorn's ``--workers``), so every figure
covers the whole tree below the pid we started. CPU also counts children that
already exited and were reaped (``cutime``/``cstime`` of the root).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class TreeUsage:
    """One reading of a process tree."""

    pids: tuple[int, ...]
    cpu_seconds: float
    system_seconds: float
    """The kernel's share of ``cpu_seconds`` (socket writes, loopback delivery)."""
    rss_bytes: int
    fds: int
    threads: int


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (which may hold spaces)."""
    raw = (PROC / str(pid) / "stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all of its descendants that are alive now."""
    children = _children_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _cpu_ticks(pid: int, *, with_reaped: bool) -> tuple[int, int]:
    """(user, system) clock ticks."""
    fields = _stat_fields(pid)
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    user, system = int(fields[11]), int(fields[12])
    if with_reaped:
        user, system = user + int(fields[13]), system + int(fields[14])
    return user, system


def _rss_bytes(pid: int) -> int:
    resident = int((PROC / str(pid) / "statm").read_text().split()[1])
    return resident * PAGE_SIZE


def _threads(pid: int) -> int:
    return int(_stat_fields(pid)[17])


def _fds(pid: int) -> int:
    return len(os.listdir(PROC / str(pid) / "fd"))


def tree_usage(root: int) -> TreeUsage:
    """CPU seconds, RSS, fds and threads summed over ``root``'s process tree."""
    pids = process_tree(root)
    user = system = rss = fds = threads = 0
    alive = []
    for pid in pids:
        try:
            pid_user, pid_system = _cpu_ticks(pid, with_reaped=pid == root)
            user += pid_user
            system += pid_system
            rss += _rss_bytes(pid)
            fds += _fds(pid)
            threads += _threads(pid)
        except (OSError, ValueError, IndexError):
            continue  # exited between listing and reading
        alive.append(pid)
    return TreeUsage(
        tuple(alive), (user + system) / CLOCK_TICKS, system / CLOCK_TICKS, rss, fds, threads
    )


def cpu_seconds(root: int) -> float:
    return tree_usage(root).cpu_seconds


def core_busy_seconds(core: int) -> float:
    """CPU seconds core ``core`` has spent on anything but idle and iowait since boot."""
    for line in (PROC / "stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(x) for x in line.split()[1:]]
            return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
    return 0.0


def load_average() -> list[float]:
    return [float(x) for x in (PROC / "loadavg").read_text().split()[:3]]
