"""results.json and results.md: the figures of one run, and the targets of issue 6 checked."""

from __future__ import annotations

import json
import math
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.procs import REDIS_SERVER, cpu_count
from bench.systems import LABELS, STORM_ONLY


def machine() -> dict[str, Any]:
    """What the numbers ran on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    redis_version = subprocess.run(
        [REDIS_SERVER, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    versions: dict[str, str | None] = {}
    for package in ("uvicorn", "sse-starlette", "starlette", "fastapi", "redis", "uvloop"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": model,
        "cores": cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": redis_version,
        "packages": versions,
    }


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _num(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float | int) and digits == 0:
        return f"{value:,.0f}{unit}"
    return f"{value:,.{digits}f}{unit}"


def lost_anywhere(systems: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Per system, the scenarios in which an event was lost or duplicated."""
    found: dict[str, list[str]] = {}
    for system, scenarios in systems.items():
        for name, result in scenarios.items():
            if not isinstance(result, dict):
                continue
            if name in ("fanout", "scaling", "wide_fanout") or name.startswith("sweep"):
                bad = not result.get("nothing_lost_while_sustained", True)
                storm = result.get("reconnect_storm")
                bad = bad or (isinstance(storm, dict) and storm.get("nothing_lost") is False)
            elif name == "idle_memory":
                bad = bool(result.get("failed"))
            else:
                bad = result.get("nothing_lost") is False
            if bad:
                found.setdefault(system, []).append(name)
    return found


def _ratio(a: Any, b: Any) -> float | None:
    """a / b; infinite when b sustained nothing at all (0) but a did."""
    if a is None or b is None or not a:
        return None
    return float(a) / float(b) if b else math.inf


def targets(systems: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 6's targets for our gateway, each with the measured figure and whether it is met."""
    ours, nchan, seed = systems.get("ours", {}), systems.get("nchan", {}), systems.get("seed", {})
    rows: list[dict[str, Any]] = []

    def row(name: str, measured: str, target: str, met: bool | None) -> None:
        rows.append({"target": name, "measured": measured, "goal": target, "met": met})

    if not ours:
        return rows
    fan = _get(ours, "fanout", "max_sustained_deliveries_per_s")
    nchan_fan = _get(nchan, "fanout", "max_sustained_deliveries_per_s")
    seed_fan = _get(seed, "fanout", "max_sustained_deliveries_per_s")
    vs_nchan, vs_seed = _ratio(fan, nchan_fan), _ratio(fan, seed_fan)
    row(
        "1. fan-out vs nchan",
        f"{_num(fan)}/s = {_num(vs_nchan, 2)}x nchan ({_num(nchan_fan)}/s)",
        ">= 2x nchan, p99 <= 50 ms, nothing lost",
        None if vs_nchan is None else vs_nchan >= 2.0,
    )
    row(
        "1. fan-out vs seed",
        (
            f"{_num(vs_seed, 1)}x seed ({_num(seed_fan)}/s)"
            if vs_seed != math.inf
            else "seed sustains no step (p99 > 50 ms already at the lowest)"
        ),
        ">= 10x seed",
        None if vs_seed is None else vs_seed >= 10.0,
    )
    cpu = _get(ours, "moderate", "cpu_us_per_delivery")
    nchan_cpu = _get(nchan, "moderate", "cpu_us_per_delivery")
    cpu_ratio = _ratio(cpu, nchan_cpu)
    p99 = _get(ours, "moderate", "latency_ms", "p99")
    clean = _get(ours, "moderate", "nothing_lost")
    row(
        "2. CPU per delivery at moderate load",
        f"{_num(cpu, 2)} µs = {_num(cpu_ratio, 2)}x nchan ({_num(nchan_cpu, 2)} µs); "
        f"p99 {_num(p99, 1)} ms; nothing lost: {clean}",
        "<= 1.2x nchan, p99 <= 50 ms, nothing lost",
        None
        if cpu_ratio is None or p99 is None
        else cpu_ratio <= 1.2 and p99 <= 50 and bool(clean),
    )
    kb = _get(ours, "idle_memory", "kb_per_stream")
    streams = _get(ours, "idle_memory", "streams")
    row(
        "3. RSS per idle stream",
        f"{_num(kb, 2)} KB at {_num(streams)} streams",
        "<= 10 KB at 15,000 streams",
        None if kb is None else kb <= 10.0,
    )
    rate = _get(ours, "idle_memory", "new_streams_per_s")
    row("4. new streams/s", f"{_num(rate)}/s", ">= 5,000/s", None if rate is None else rate >= 5000)
    resume = ours.get("resume_storm")
    if isinstance(resume, dict) and "clients" in resume:
        row(
            "4. resume storm",
            f"{_num(resume['clients'])} clients x {resume['behind']} events caught up in "
            f"{_num(resume['caught_up_s'], 2)} s; nothing lost: {resume['nothing_lost']}",
            f"<= {resume['target_s']:.0f} s, nothing lost",
            bool(resume["met"]),
        )
    mux = _get(ours, "multiplex", "cpu_ratio")
    row("5. multiplexing", f"{_num(mux, 2)}x", "<= 1.3x", None if mux is None else mux <= 1.3)
    soak = ours.get("soak")
    if isinstance(soak, dict) and "rss_growth_pct" in soak:
        row(
            "6. soak",
            f"{soak['seconds']:.0f} s: RSS {soak['rss_growth_pct']:+.1f}%, "
            f"fds flat {soak['fds_flat']}, tasks flat {soak['tasks_flat']}, "
            f"nothing lost {soak['nothing_lost']}",
            "RSS within 5%, fds and tasks flat, nothing lost",
            bool(soak["met"] and soak["fds_flat"] and soak["tasks_flat"]),
        )
    cost = ours.get("metrics_cost")
    if isinstance(cost, dict) and "cpu" in cost:
        counted = cost.get("instructions")
        row(
            "issue 12: metrics cost",
            "instructions per delivery "
            + (
                f"+{_num(counted['counting_pct'], 2)}% counting, "
                + ", ".join(
                    f"{_num(point['total_pct'], 2)}% with scrapes every "
                    f"{point['scrape_every_s']:g} s at {_num(point['deliveries_per_s'])}/s"
                    for point in counted["at"].values()
                )
                if counted
                else f"not counted ({cost.get('instructions_unavailable')})"
            ),
            f"<= {cost['target_pct']:g}% per delivery",
            cost["met"],
        )
    return rows


def _metrics_cost_table(cost: dict[str, Any]) -> list[str]:
    out = ["## Metrics cost (SSE_METRICS on vs off)", ""]
    counted = cost.get("instructions")
    if counted:
        runs = cost["runs"]["instructions"]
        out += [
            f"Instructions under callgrind, {_num(runs['off']['subscribers'])} subscribers on "
            f"one channel, {_num(runs['off']['delivered'])} deliveries counted per setting: "
            f"{_num(counted['per_delivery_on'])} per delivery with metrics on, "
            f"{_num(counted['per_delivery_off'])} off (**{_num(counted['counting_pct'], 2)}%**); "
            f"one scrape of /metrics {_num(counted['per_scrape'])} instructions.",
            "",
        ]
        header = ["load", "scrape every", "scrapes' share", "total per delivery"]
        out += [_row(header), _row(["---"] * len(header))]
        for point in counted["at"].values():
            out.append(
                _row(
                    [
                        f"{_num(point['deliveries_per_s'])} deliveries/s",
                        f"{point['scrape_every_s']:g} s",
                        f"{_num(point['scrape_pct'], 3)}%",
                        f"**{_num(point['total_pct'], 2)}%**",
                    ]
                )
            )
        out.append("")
        if not any(name.startswith("fanout_max") for name in counted["at"]):
            out += [
                "The fan-out search stopped below the moderate load in this run (a busy "
                "machine), so the scrapes are charged at the moderate load only (their "
                "share falls as the load grows).",
                "",
            ]
    else:
        out += [f"Instructions not counted: {cost.get('instructions_unavailable')}.", ""]
    cpu = cost["cpu"]
    moderate, fanout = cpu["moderate"], cpu["fanout"]
    header = ["CPU time (context, ±10% run to run)", "µs/delivery, metrics on", "off", "difference"]
    out += [
        _row(header),
        _row(["---"] * len(header)),
        _row(
            [
                "moderate",
                _num(moderate["cpu_us_per_delivery_on"], 3),
                _num(moderate["cpu_us_per_delivery_off"], 3),
                f"{_num(moderate['overhead_pct'], 2)}%",
            ]
        ),
        _row(
            [
                f"fan-out, {_num(fanout['top_common_step'])}/s offered (top step both sustained)",
                _num(fanout.get("cpu_us_per_delivery_on"), 3),
                _num(fanout.get("cpu_us_per_delivery_off"), 3),
                f"{_num(fanout.get('overhead_pct'), 2)}%",
            ]
        ),
        "",
        f"Max sustained fan-out: {_num(fanout['max_sustained_on'])}/s on, "
        f"{_num(fanout['max_sustained_off'])}/s off. /metrics scraped "
        f"{cpu['scrapes']['count']} times while on ({cpu['scrapes']['ok']} answered 200).",
        "",
    ]
    return out


def _loads(machine: dict[str, Any]) -> str:
    loads = machine.get("load_average_before_after")
    if not loads:
        return "n/a"
    return " / ".join(", ".join(f"{x:.2f}" for x in load) for load in loads)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _latencies(lat: dict[str, Any] | None) -> str:
    if not lat:
        return "n/a"
    return " / ".join(_num(lat.get(q), 1) for q in ("p50", "p99", "max")) + " ms"


def _anchor_table(systems: dict[str, dict[str, Any]], moderate_label: str) -> list[str]:
    header = [
        "system",
        "max sustained deliveries/s per core (p99 <= 50 ms, none lost)",
        f"delivered/s at {moderate_label} offered",
        f"lost at {moderate_label}",
        f"p50 / p99 / max latency at {moderate_label}",
        f"server CPU per delivery at {moderate_label}",
        "RSS per idle stream",
        "new streams/s",
        "resume storm",
        "multiplex cost (2 channels / 1)",
    ]
    lines = [_row(header), _row(["---"] * len(header))]
    for name, data in systems.items():
        if name in STORM_ONLY:
            continue  # a reference for the storm table, with nothing to show here
        if "skipped" in data:
            lines.append(_row([LABELS.get(name, name), f"skipped: {data['skipped']}"] + [""] * 8))
            continue
        fan = data.get("fanout", {})
        mod = data.get("moderate", {})
        idle = data.get("idle_memory", {})
        fan_cell = _num(fan.get("max_sustained_deliveries_per_s"))
        if fan.get("saturated") is False:
            fan_cell = f">= {fan_cell} (not saturated)"
        kb = _num(idle.get("kb_per_stream"), 2, " KB")
        if idle.get("redis_kb_per_stream") and idle["redis_kb_per_stream"] > 5:
            kb += f" + {idle['redis_kb_per_stream']:.1f} KB in Redis"
        resume = data.get("resume_storm", {})
        resume_cell = "n/a"
        if "caught_up_s" in resume:
            resume_cell = (
                f"{_num(resume['clients'])} x {resume['behind']} in "
                f"{_num(resume['caught_up_s'], 2)} s"
            )
        mux = data.get("multiplex", {})
        cells = [
            LABELS.get(name, name),
            fan_cell,
            _num(mod.get("deliveries_per_s")),
            _num(mod.get("lost")),
            _latencies(mod.get("latency_ms")),
            _num(mod.get("cpu_us_per_delivery"), 2, " µs"),
            kb,
            _num(idle.get("new_streams_per_s")),
            resume_cell,
            _num(mux.get("cpu_ratio"), 2, "x"),
        ]
        lines.append(_row(cells))
    return lines


def _storm_table(systems: dict[str, dict[str, Any]]) -> list[str]:
    """Issue 14's reconnect storm: one row per round per system."""
    header = ["system", "clients", "in flight", "new streams/s", "CPU µs/new stream"]
    header += ["kernel µs", "answer p50 / p99 ms", "failed", "others on server core"]
    lines: list[str] = []
    for name, data in systems.items():
        result = data.get("reconnect_storm")
        if not isinstance(result, dict) or "rounds" not in result:
            continue
        for r in result["rounds"]:
            lat = r["answer_ms"]
            lines.append(
                _row(
                    [
                        LABELS.get(name, name),
                        f"{r['clients']:,}",
                        f"{r['in_flight']:,}",
                        _num(r["new_streams_per_s"]),
                        _num(r["cpu_us_per_new_stream"], 1),
                        _num(r["kernel_us_per_new_stream"], 1),
                        f"{_num(lat['p50'], 1)} / {_num(lat['p99'], 1)}",
                        f"{r['failed']:,}",
                        _num(r.get("server_core_others_pct"), 0, "%"),
                    ]
                )
            )
    if not lines:
        return []
    return ["## Reconnect storm", "", _row(header), _row(["---"] * len(header)), *lines, ""]


def _workers_table(systems: dict[str, dict[str, Any]]) -> list[str]:
    """Issue 14, target 5: fan-out and storm with one worker and with two, per worker."""
    header = ["system", "workers", "max sustained deliveries/s", "per worker"]
    header += ["storm new streams/s", "per worker", "CPU µs/new stream"]
    lines: list[str] = []
    for name, data in systems.items():
        scaling = data.get("scaling")
        if not isinstance(scaling, dict) or "per_worker" not in scaling:
            continue
        for workers, fan, storm in (
            (1, data.get("fanout") or {}, data.get("reconnect_storm") or {}),
            (scaling["workers"], scaling, scaling.get("reconnect_storm") or {}),
        ):
            fanned, opened = (
                fan.get("max_sustained_deliveries_per_s"),
                storm.get("new_streams_per_s"),
            )
            lines.append(
                _row(
                    [
                        LABELS.get(name, name),
                        str(workers),
                        _num(fanned),
                        _num(fanned / workers if fanned is not None else None),
                        _num(opened),
                        _num(opened / workers if opened is not None else None),
                        _num(storm.get("cpu_us_per_new_stream"), 1),
                    ]
                )
            )
    if not lines:
        return []
    return ["## Workers", "", _row(header), _row(["---"] * len(header)), *lines, ""]


def _browsers_table(result: dict[str, Any]) -> list[str]:
    """Issue 14's many browsers: streams held over several workers, every event checked."""
    lat = result["latency_ms"]
    spread = ", ".join(f"{w['fds']:,}" for w in result["server_processes"] if w["fds"] > 100)
    load = result["load_average_before"]
    header = ["", "measured"]
    rows = [
        ("streams held", f"{result['opened']:,} of {result['streams']:,}"),
        (
            "opened in",
            f"{_num(result['open_s'], 1)} s ({_num(result['new_streams_per_s'])}/s); "
            f"{result['refused_503']:,} refusals (503) retried",
        ),
        (
            "workers",
            f"{result['workers']} (SSE_MAX_STREAMS={result['max_streams_per_worker']:,}); "
            f"descriptors per worker: {spread}; restarts: {result.get('worker_restarts', 0)}",
        ),
        (
            "events",
            f"{result['events']} at {result['rate']:g}/s: {result['received']:,} received "
            f"of {result['expected']:,} expected; lost {result['lost']:,}, out of order or "
            f"duplicated {result['duplicated'] + result['ids_not_increasing']:,}, "
            f"streams closed {result['streams_closed']:,}",
        ),
        (
            "publish-to-receive",
            f"p50 {_num(lat['p50'], 1)} / p90 {_num(lat['p90'], 1)} / "
            f"p99 {_num(lat['p99'], 1)} / max {_num(lat['max'], 1)} ms",
        ),
        (
            "RSS per stream",
            f"{_num(result['kb_per_stream'], 2)} KB ({_num(result['rss_mb_before'], 1)} -> "
            f"{_num(result['rss_mb_held'], 1)} MB over every worker and the supervisor)",
        ),
        (
            "server CPU while publishing",
            f"{_num(result['server_cpu_pct'], 1)}% of one core "
            f"({_num(result['cpu_us_per_delivery'], 2)} µs per delivery); clients "
            f"{_num(result['clients_cpu_pct'], 1)}%; others on the machine "
            f"{_num(result['others_cpu_pct'], 0)}%; load average {load[0]:.2f} before",
        ),
    ]
    return [
        "## Many browsers",
        "",
        _row(header),
        _row(["---"] * len(header)),
        *(_row([name, value]) for name, value in rows),
        "",
    ]


def _steps_table(name: str, fan: dict[str, Any]) -> list[str]:
    header = ["offered/s", "delivered/s", "p50 ms", "p99 ms", "max ms", "lost", "dup"]
    header += ["CPU µs/delivery", "others on server core", "sustained"]
    lines = [
        f"#### {LABELS.get(name, name)}: {fan['subscribers']:,} subscribers",
        "",
        _row(header),
        _row(["---"] * len(header)),
    ]
    for s in fan["steps"]:
        lat = s["latency_ms"]
        cells = [
            f"{s['deliveries_offered_per_s']:,}",
            f"{s['deliveries_per_s']:,}",
            _num(lat["p50"], 1),
            _num(lat["p99"], 1),
            _num(lat["max"], 1),
            f"{s['lost']:,}",
            f"{s['duplicated']:,}",
            _num(s["cpu_us_per_delivery"], 2),
            _num(s.get("server_core_others_pct"), 0, "%"),
            "yes" if s["sustained"] else "no",
        ]
        lines.append(_row(cells))
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    systems: dict[str, dict[str, Any]] = results["systems"]
    profile = results["profile"]
    moderate_label = f"{profile['moderate_subscribers'] * profile['moderate_rate'] / 1000:g}k/s"
    m = results["machine"]
    out = [
        f"# Benchmark results ({profile['name']} run)",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, "
        f"{m['redis_server'].split(' sha=')[0]}.  ",
        f"Load average before/after: {_loads(m)}. "
        "Server pinned to core 0; load generator, publisher and redis-server on core 1. "
        f"Events are ~100-byte `Echo` payloads; fan-out uses {profile['fanout_subscribers']:,} "
        "subscribers on one channel.",
        "",
        *_anchor_table(systems, moderate_label),
        "",
    ]
    rows = targets(systems)
    if rows:
        out += [
            "## Targets of issue 6 (our gateway)",
            "",
            "| target | measured | goal | met |",
            "|---|---|---|---|",
        ]
        for r in rows:
            met = "n/a" if r["met"] is None else ("yes" if r["met"] else "**no**")
            out.append(f"| {r['target']} | {r['measured']} | {r['goal']} | {met} |")
        out.append("")
    lost = lost_anywhere(systems)
    out += ["## Loss check", ""]
    if lost:
        for system, names in lost.items():
            out.append(
                f"- {system}: events lost, duplicated or streams failed in {', '.join(names)}"
            )
    else:
        out.append(
            "- every stream received every event exactly once, in every scenario of every system."
        )
    out += ["", "## Fan-out steps", ""]
    for name, data in systems.items():
        fan = data.get("fanout")
        if isinstance(fan, dict) and "steps" in fan:
            out += [*_steps_table(name, fan), ""]
    wide = [
        (n, d["wide_fanout"]) for n, d in systems.items() if "steps" in d.get("wide_fanout", {})
    ]
    if wide:
        out += ["## Fan-out to many subscribers on one channel (C reader)", ""]
        for name, fan in wide:
            out += [*_steps_table(name, fan), ""]
    out += _storm_table(systems)
    out += _workers_table(systems)
    browsers = systems.get("ours", {}).get("many_browsers")
    if isinstance(browsers, dict) and "latency_ms" in browsers:
        out += _browsers_table(browsers)
    cost = systems.get("ours", {}).get("metrics_cost")
    if isinstance(cost, dict) and "cpu" in cost:
        out += _metrics_cost_table(cost)
    errors = [
        (s, n, r["error"])
        for s, d in systems.items()
        for n, r in d.items()
        if isinstance(r, dict) and "error" in r
    ]
    if errors:
        out += ["## Errors", ""]
        out += [f"- {s} / {n}: {e.splitlines()[0] if e else ''}" for s, n, e in errors]
        out.append("")
    return "\n".join(out)


def write(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(render_markdown(results) + "\n")
    return json_path, md_path
