"""One benchmark run: every selected system through every selected scenario."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import profiler, scenarios
from bench.baselines.nchan import NchanUnavailable
from bench.profiles import Profile
from bench.systems import Server, http_get, started

log = logging.getLogger("bench")

SCENARIOS = (
    "idle_memory",
    "reconnect_storm",
    "fanout",
    "moderate",
    "multiplex",
    "resume_storm",
)

METRICS_SCRAPE_SECONDS = 5.0
"""How often the metrics-cost runs scrape /metrics while metrics are on: more often than
Prometheus usually does (10-15 s), so the figure errs on the costly side."""

METRICS_COST_TARGET_PCT = 3.0
"""Issue 12: metrics may cost at most this much more CPU per delivery."""

SCENARIO_LIMIT = 600.0
"""A scenario that runs longer is stuck: record an error and go on (the run is unattended)."""
"""In run order: idle memory first, while the server's heap is fresh."""


@dataclass(frozen=True)
class Options:
    profile: Profile
    systems: Sequence[str]
    scenarios: Sequence[str]
    run_dir: Path
    soak: bool = False
    scaling: bool = False
    sweep: bool = False
    py_spy: Sequence[str] = ()
    """Scenarios during which the (Python) server is sampled with py-spy."""
    profile_dir: Path | None = None
    metrics_cost: bool = False
    """Run moderate and fan-out again with SSE_METRICS on and off (ours only)."""


Scenario = Callable[[Server], Awaitable[dict[str, Any]]]


async def _measure(
    name: str,
    system: str,
    run: Callable[[], Awaitable[dict[str, Any]]],
    limit: float = SCENARIO_LIMIT,
) -> dict[str, Any]:
    log.info("%s: %s ...", system, name)
    begun = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            result = await run()
    except TimeoutError:
        log.error("%s: %s did not finish within %.0fs", system, name, limit)
        return {"error": f"did not finish within {limit:.0f}s", "traceback": ""}
    except Exception as exc:
        log.error("%s: %s failed: %s", system, name, exc)
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    result["elapsed_s"] = round(time.monotonic() - begun, 1)
    log.info("%s: %s done in %.1fs", system, name, result["elapsed_s"])
    return result


def _scenario(
    name: str, opts: Options, system: str
) -> Callable[[Server], Awaitable[dict[str, Any]]] | None:
    p, run_dir = opts.profile, opts.run_dir
    if name == "idle_memory":
        stages = p.idle_stages_seed if system == "seed" else p.idle_stages
        return lambda s: scenarios.idle_memory(s, stages, run_dir)
    if name == "fanout":
        return lambda s: scenarios.fanout(s, p, run_dir)
    if name == "moderate":
        return lambda s: scenarios.moderate(s, p, run_dir)
    if name == "multiplex":
        return None if system == "seed" else (lambda s: scenarios.multiplex(s, p, run_dir))
    if name == "reconnect_storm":
        return lambda s: scenarios.reconnect_storm(s, p, run_dir)
    if name == "resume_storm":
        return (lambda s: scenarios.resume_storm(s, p, run_dir)) if system == "ours" else None
    raise ValueError(f"unknown scenario {name!r}")


async def run_system(system: str, opts: Options) -> dict[str, Any]:
    results: dict[str, Any] = {}
    try:
        async with started(system, opts.run_dir) as server:
            results["label"] = server.label
            if "version" in server.extra:
                results["version"] = server.extra["version"]
            for name in SCENARIOS:
                if name not in opts.scenarios:
                    continue
                scenario = _scenario(name, opts, system)
                if scenario is None:
                    continue
                if name in opts.py_spy and system != "nchan":
                    results[name] = await _profiled(name, system, server, scenario, opts)
                else:
                    results[name] = await _measure(name, system, _bound(scenario, server))
            if opts.sweep:
                for n in opts.profile.sweep_subscribers:
                    sweep = functools.partial(
                        scenarios.fanout,
                        server,
                        opts.profile,
                        opts.run_dir,
                        subscribers=n,
                        tag=f"sweep{n}",
                        step_seconds=opts.profile.sweep_step_seconds,
                    )
                    results[f"sweep_{n}"] = await _measure(
                        f"fan-out with {n} subscribers", system, sweep
                    )
            if opts.soak and system == "ours":  # target 6 is ours; 10 minutes per system
                results["soak"] = await _measure(
                    "soak",
                    system,
                    lambda: _soak(server, opts, results),
                    limit=opts.profile.soak_seconds + SCENARIO_LIMIT,
                )
    except NchanUnavailable as exc:
        results["skipped"] = str(exc)
    except Exception as exc:
        log.error("%s could not run: %s", system, exc)
        results["error"] = f"{type(exc).__name__}: {exc}"
        results["traceback"] = traceback.format_exc()
    if opts.metrics_cost and system == "ours":
        results["metrics_cost"] = await _measure(
            "moderate and fan-out with metrics on and off",
            system,
            lambda: _metrics_cost(opts),
            limit=4 * SCENARIO_LIMIT,
        )
    if opts.scaling and system in ("ours", "seed"):
        results["scaling"] = await _measure(
            "fan-out with --workers 2", system, lambda: _scaling(system, opts)
        )
    return results


def _bound(scenario: Scenario, server: Server) -> Callable[[], Awaitable[dict[str, Any]]]:
    return functools.partial(scenario, server)


async def _profiled(
    name: str, system: str, server: Server, scenario: Scenario, opts: Options
) -> dict[str, Any]:
    """The scenario with py-spy attached; the summary goes into the result."""
    if not profiler.available():
        log.warning("py-spy not found: %s/%s runs without a profile", system, name)
        return await _measure(name, system, lambda: scenario(server))
    out_dir = opts.profile_dir or opts.run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    folded = out_dir / f"{system}-{name}.folded"
    async with profiler.sampling(server.proc.pid, folded):
        result = await _measure(name, system, lambda: scenario(server))
    result["profile"] = {"folded": str(folded), **profiler.summarize(folded)}
    return result


async def _soak(server: Server, opts: Options, results: dict[str, Any]) -> dict[str, Any]:
    """Half of the measured maximum (or of the moderate rate when no maximum is known)."""
    p = opts.profile
    best = (results.get("fanout") or {}).get("max_sustained_offered_per_s") or (
        p.moderate_rate * p.moderate_subscribers
    )
    rate = best / 2 / p.fanout_subscribers
    return await scenarios.soak(
        server, p, opts.run_dir, rate=rate, subscribers=p.fanout_subscribers
    )


async def _scaling(system: str, opts: Options) -> dict[str, Any]:
    """The fan-out search again with two worker processes spread over both cores."""
    async with started(system, opts.run_dir, workers=2) as server:
        result = await scenarios.fanout(server, opts.profile, opts.run_dir, tag="scaling")
    result["workers"] = 2
    result["note"] = "workers on cores 0-1; the load generator shares core 1"
    return result


@contextlib.asynccontextmanager
async def _scraping(server: Server, every: float | None) -> AsyncIterator[list[int]]:
    """GET /metrics every ``every`` seconds while the block runs (None: never); yields the
    statuses."""
    statuses: list[int] = []
    if every is None:
        yield statuses
        return

    async def scrape() -> None:
        while True:
            await asyncio.sleep(every)
            statuses.append((await http_get(server.port, "/metrics"))[0])

    task = asyncio.create_task(scrape())
    try:
        yield statuses
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _metrics_cost(opts: Options) -> dict[str, Any]:
    """Issue 12's cost: CPU per delivery with SSE_METRICS on (and scraped) vs off, at the
    moderate load and along the fan-out steps, each on a gateway of its own."""
    runs: dict[str, dict[str, Any]] = {}
    for name, setting in (("on", "true"), ("off", "false")):
        env = {"SSE_METRICS": setting}
        every = METRICS_SCRAPE_SECONDS if name == "on" else None
        async with (
            started("ours", opts.run_dir, env=env, label=f"ours-metrics-{name}") as server,
            _scraping(server, every) as got,
        ):
            moderate = await scenarios.moderate(server, opts.profile, opts.run_dir)
            fanout = await scenarios.fanout(
                server, opts.profile, opts.run_dir, tag=f"fanout-metrics-{name}"
            )
        moderate.pop("latency_cdf_ms", None)
        runs[name] = {"moderate": moderate, "fanout": fanout, "scrapes": got}
    return metrics_cost_summary(runs)


def _overhead_pct(on: float | None, off: float | None) -> float | None:
    return round((on / off - 1) * 100, 2) if on and off else None


def metrics_cost_summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-delivery CPU on vs off: at the moderate load, and at the highest fan-out step
    both runs sustained (the fan-out maximum that both reach)."""
    on, off = runs["on"], runs["off"]
    moderate = {
        "cpu_us_per_delivery_on": on["moderate"]["cpu_us_per_delivery"],
        "cpu_us_per_delivery_off": off["moderate"]["cpu_us_per_delivery"],
        "nothing_lost": on["moderate"]["nothing_lost"] and off["moderate"]["nothing_lost"],
    }
    moderate["overhead_pct"] = _overhead_pct(
        moderate["cpu_us_per_delivery_on"], moderate["cpu_us_per_delivery_off"]
    )
    sustained_off = {
        s["deliveries_offered_per_s"]: s for s in off["fanout"]["steps"] if s["sustained"]
    }
    common = [
        (s["deliveries_offered_per_s"], s, sustained_off[s["deliveries_offered_per_s"]])
        for s in on["fanout"]["steps"]
        if s["sustained"] and s["deliveries_offered_per_s"] in sustained_off
    ]
    fanout: dict[str, Any] = {
        "max_sustained_on": on["fanout"]["max_sustained_deliveries_per_s"],
        "max_sustained_off": off["fanout"]["max_sustained_deliveries_per_s"],
        "top_common_step": None,
    }
    if common:
        offered, step_on, step_off = max(common, key=lambda item: item[0])
        fanout.update(
            top_common_step=offered,
            cpu_us_per_delivery_on=step_on["cpu_us_per_delivery"],
            cpu_us_per_delivery_off=step_off["cpu_us_per_delivery"],
            overhead_pct=_overhead_pct(
                step_on["cpu_us_per_delivery"], step_off["cpu_us_per_delivery"]
            ),
        )
    overheads = [moderate["overhead_pct"], fanout.get("overhead_pct")]
    return {
        "moderate": moderate,
        "fanout": fanout,
        "scrapes": {"count": len(on["scrapes"]), "ok": on["scrapes"].count(200)},
        "nothing_lost": all(
            run["moderate"]["nothing_lost"] and run["fanout"]["nothing_lost_while_sustained"]
            for run in (on, off)
        ),
        "target_pct": METRICS_COST_TARGET_PCT,
        "met": None
        if None in overheads
        else all(o is not None and o <= METRICS_COST_TARGET_PCT for o in overheads),
        "runs": runs,
    }


async def run(opts: Options) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    for system in opts.systems:
        systems[system] = await run_system(system, opts)
    return {
        "profile": asdict(opts.profile),
        "systems": systems,
    }
