"""The directory where ``--workers N`` keep their metrics (prometheus-client multiprocess mode).

prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` once, when it is first
imported, to decide where values live: in memory, or in per-process files that a
scrape merges. So ``python -m gateway`` sets it before any worker starts: the
directory the operator gave (emptied of an earlier run's files, which would
otherwise be added to this run's counters), or else, with several workers, a
private one removed on exit. One worker with no directory given keeps its values
in memory. Nothing here imports prometheus-client.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def clear(path: Path) -> None:
    """Make ``path`` an empty metrics directory (its ``*.db`` files removed)."""
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        # Else every worker would fail its start on its first metric, each with a traceback.
        raise PermissionError(errno.EACCES, "not writable", str(path))
    for file in path.glob("*.db"):
        file.unlink(missing_ok=True)


@contextlib.contextmanager
def metrics_dir(workers: int) -> Iterator[Path | None]:
    """The multiprocess directory for this run, set in the environment; None: in memory."""
    given = os.environ.get(ENV)
    if given:
        path = Path(given)
        clear(path)
        yield path
        return
    if workers == 1:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="sse-gateway-metrics-"))
    os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        del os.environ[ENV]
        shutil.rmtree(path, ignore_errors=True)
