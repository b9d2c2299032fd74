"""The benchmark's quick mode runs end to end: every system, every scenario, nothing lost.

Timings are the benchmark's business (they depend on the machine); this checks
behaviour: the run finishes, writes its results, and every stream of every system
received every event exactly once. nginx+nchan is installed by the bench when
missing; where that is impossible it is reported as skipped, which passes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("idle_memory", "reconnect_storm", "fanout", "moderate", "multiplex", "resume_storm")
"""Scenarios every system runs (wide_fanout: ours and nchan; many_browsers: ours), but the
floor: a server that only opens streams, measured in the reconnect storm alone."""


def run_bench(out: Path, *args: str, timeout: float = 240.0) -> dict[str, Any]:
    """``python -m bench --quick <args>`` to completion; its results.json."""
    # Its own process group: on a timeout the servers it started go with it, instead of
    # staying behind (a callgrind gateway and its redis-server, found hours later).
    run = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", *args, "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        raise
    assert run.returncode == 0, f"bench failed ({run.returncode}):\n{stderr[-4000:]}"
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


@pytest.mark.timeout(250)
def test_quick_benchmark_delivers_every_event_and_writes_its_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    results = run_bench(out)
    markdown = (out / "results.md").read_text()
    assert results["nothing_lost"], results["lost_in"]
    assert results["errors"] == []
    assert "## Targets of issue 6" in markdown

    systems = results["systems"]
    assert set(systems) == {"ours", "seed", "nchan", "floor"}
    assert_floor_stormed_alone(systems.pop("floor"), markdown)
    if "skipped" in systems["nchan"]:
        warnings.warn(f"nchan was skipped: {systems['nchan']['skipped']}", stacklevel=1)
        del systems["nchan"]
    for name, data in systems.items():
        assert "error" not in data, (name, data.get("error"))
        measured = {s for s in SCENARIOS if s in data}
        assert {"idle_memory", "reconnect_storm", "fanout", "moderate"} <= measured, (
            name,
            sorted(data),
        )
        assert data["idle_memory"]["failed"] == 0
        storm = data["reconnect_storm"]
        assert storm["failed"] == 0, (name, storm)
        assert all(r["answered"] == r["clients"] for r in storm["rounds"]), (name, storm)
        assert data["moderate"]["nothing_lost"], (name, data["moderate"])
        assert data["moderate"]["delivered"] == data["moderate"]["expected"]
        assert data["fanout"]["nothing_lost_while_sustained"]
        if name != "seed":
            wide = data["wide_fanout"]
            assert "error" not in wide, (name, wide.get("traceback"))
            assert wide["steps"], (name, wide)
            assert all(s["lost"] == 0 and s["duplicated"] == 0 for s in wide["steps"]), wide

    ours = systems["ours"]
    assert ours["resume_storm"]["nothing_lost"], ours["resume_storm"]
    assert ours["resume_storm"]["complete"] == ours["resume_storm"]["clients"]
    assert ours["multiplex"]["nothing_lost"]
    assert ours["multiplex"]["cpu_ratio"] is not None
    browsers = ours["many_browsers"]
    assert "error" not in browsers, browsers.get("traceback")
    assert browsers["nothing_lost"], browsers
    assert browsers["opened"] == browsers["streams"]
    assert browsers["received"] == browsers["expected"] > 0
    assert browsers["streams_complete"] == browsers["streams"]
    assert browsers["latency_ms"]["p99"] is not None
    assert len(browsers["clients"]) >= 2, "streams from more than one source address"
    assert "## Many browsers" in markdown


def assert_floor_stormed_alone(floor: dict[str, Any], markdown: str) -> None:
    """The floor ran the reconnect storm, answered every client, ran nothing else, and has
    rows in the storm table of results.md."""
    assert "error" not in floor, floor.get("traceback")
    assert set(floor) == {"label", "reconnect_storm"}, sorted(floor)
    storm = floor["reconnect_storm"]
    assert storm["failed"] == 0, storm
    assert all(r["answered"] == r["clients"] for r in storm["rounds"]), storm
    assert storm["cpu_us_per_new_stream"] is not None
    storm_table = markdown.split("## Reconnect storm", 1)[1].split("\n## ", 1)[0]
    assert floor["label"] in storm_table


@pytest.mark.timeout(90)
def test_quick_floor_runs_the_reconnect_storm_only(tmp_path: Path) -> None:
    out = tmp_path / "results"
    results = run_bench(out, "--only", "floor", timeout=80)
    assert results["errors"] == []
    assert set(results["systems"]) == {"floor"}
    assert_floor_stormed_alone(results["systems"]["floor"], (out / "results.md").read_text())


@pytest.mark.timeout(90)
def test_floor_table_has_a_row_per_burn() -> None:
    small = ["--clients", "500", "--in-flight", "50", "--rounds", "1"]
    run = subprocess.run(
        [sys.executable, "-m", "bench.floor", "--burn-us", "0,50", *small],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| 0", "| 50"], run.stdout


# Under callgrind the gateway starts and runs tens of times slower, more so on a busy
# machine (48 s quiet, over 160 s at a load average of 9).
@pytest.mark.timeout(620)
def test_quick_metrics_cost_runs_the_gateway_with_metrics_on_and_off(tmp_path: Path) -> None:
    out = tmp_path / "results"
    results = run_bench(
        out, "--only", "ours", "--scenarios", "moderate", "--metrics-cost", timeout=600
    )
    cost = results["systems"]["ours"]["metrics_cost"]
    assert "error" not in cost, cost.get("traceback")
    assert cost["nothing_lost"], cost
    cpu = cost["runs"]["cpu"]
    for name in ("on", "off"):
        moderate = cpu[name]["moderate"]
        assert moderate["delivered"] == moderate["expected"], (name, moderate)
        assert cpu[name]["fanout"]["max_sustained_deliveries_per_s"] > 0, cpu[name]["fanout"]
    assert cost["cpu"]["moderate"]["cpu_us_per_delivery_on"] is not None
    assert cost["cpu"]["fanout"]["top_common_step"] is not None
    counted = cost["runs"]["instructions"]
    for name in ("on", "off"):
        assert counted[name]["delivered"] > 0, counted
        assert counted[name]["instructions"] > 0, counted
        assert counted[name]["nothing_lost"], counted[name]
    assert counted["on"]["scrapes"]["ok"] == counted["on"]["scrapes"]["count"] > 0
    assert cost["met"] is not None
    assert "## Metrics cost (SSE_METRICS on vs off)" in (out / "results.md").read_text()
