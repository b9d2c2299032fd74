"""One benchmark run: every selected system through every selected scenario."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import browsers, metrics_cost, profiler, scenarios
from bench.baselines.nchan import NchanUnavailable
from bench.profiles import Profile
from bench.systems import STORM_ONLY, Server, started

log = logging.getLogger("bench")

SCENARIOS = (
    "idle_memory",
    "reconnect_storm",
    "fanout",
    "moderate",
    "multiplex",
    "resume_storm",
    "wide_fanout",
    "many_browsers",
)

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
    if system in STORM_ONLY and name != "reconnect_storm":
        return None
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
    if name == "wide_fanout":
        if system == "seed":
            return None
        return lambda s: browsers.wide_fanout(
            s, p, run_dir, subscribers=p.wide_subscribers, step_seconds=p.sweep_step_seconds
        )
    if name == "many_browsers":
        return None  # a server of its own with several workers: run after the others
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
            if opts.sweep and system not in STORM_ONLY:
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
    if "many_browsers" in opts.scenarios and system == "ours":
        results["many_browsers"] = await _measure(
            f"{opts.profile.browsers_streams:,} browsers", system,
            lambda: browsers.many_browsers(opts.profile, opts.run_dir),
            limit=opts.profile.browsers_seconds + SCENARIO_LIMIT,
        )  # fmt: skip
    if opts.metrics_cost and system == "ours":
        results["metrics_cost"] = await _measure(
            "moderate and fan-out with metrics on and off",
            system,
            lambda: metrics_cost.run(opts.profile, opts.run_dir),
            limit=4 * SCENARIO_LIMIT,
        )
    if opts.scaling and system in ("ours", "seed"):
        results["scaling"] = await _measure(
            "fan-out and storm with --workers 2", system, lambda: _scaling(system, opts)
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
    """The fan-out search and the reconnect storm again with two worker processes spread
    over both cores: per worker, what a second process adds (issue 14, target 5)."""
    workers = 2
    async with started(system, opts.run_dir, workers=workers) as server:
        result = await scenarios.fanout(server, opts.profile, opts.run_dir, tag="scaling")
        storm = await scenarios.reconnect_storm(server, opts.profile, opts.run_dir)
    result["reconnect_storm"] = storm
    result["workers"] = workers
    result["per_worker"] = {
        "deliveries_per_s": round(result["max_sustained_deliveries_per_s"] / workers),
        "new_streams_per_s": round(storm["new_streams_per_s"] / workers),
    }
    result["note"] = "workers on cores 0-1; the load generator and storm client share core 1"
    return result


async def run(opts: Options) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    for system in opts.systems:
        systems[system] = await run_system(system, opts)
    return {
        "profile": asdict(opts.profile),
        "systems": systems,
    }
