"""``python -m bench.http_publish --quick`` runs end to end and loses nothing.

Rates depend on the machine and are the benchmark's business; this checks that every
scenario publishes, nothing is refused, and the streams receive every acknowledged event
exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT


@pytest.mark.timeout(120)
def test_the_quick_http_publish_bench_delivers_every_acknowledged_event_once(
    tmp_path: Path,
) -> None:
    out = tmp_path / "http_publish.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.http_publish", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert run.returncode == 0, f"bench failed ({run.returncode}):\n{run.stderr[-4000:]}"
    results = json.loads(out.read_text())
    names = [scenario["name"] for scenario in results["scenarios"]]
    assert names == ["http", "http + Idempotency-Key", "Publisher (no HTTP)"]
    for scenario in results["scenarios"]:
        assert scenario["published"] > 0, scenario
        assert scenario["errors"] == 0, scenario
    check = results["check"]
    assert check["delivered"] == check["acknowledged"]
    assert check["duplicates"] == 0
    assert "| http + Idempotency-Key |" in run.stdout
