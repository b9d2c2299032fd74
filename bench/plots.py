"""PNG plots of a run (matplotlib): fan-out, latency CDF, RSS vs streams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench.systems import LABELS

COLORS = {"ours": "tab:blue", "nchan": "tab:green", "seed": "tab:red"}


def _systems(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    systems: dict[str, dict[str, Any]] = results["systems"]
    return systems


def fanout(results: dict[str, Any], path: Path) -> Path:
    """Left: delivered vs offered at the fan-out subscriber count. Right: the maximum
    sustained deliveries/s at each subscriber count measured (``--sweep`` adds points)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, data in _systems(results).items():
        fan = data.get("fanout")
        if not isinstance(fan, dict) or "steps" not in fan:
            continue
        color, label = COLORS.get(name), LABELS.get(name, name)
        steps = fan["steps"]
        left.plot(
            [s["deliveries_offered_per_s"] for s in steps],
            [s["deliveries_per_s"] for s in steps],
            marker="o",
            color=color,
            label=label,
        )
        for s in steps:
            if not s["sustained"]:
                left.plot(s["deliveries_offered_per_s"], s["deliveries_per_s"], "x", color="k")
        points = [(fan["subscribers"], fan["max_sustained_deliveries_per_s"])]
        for key, value in data.items():
            if key.startswith("sweep_") and isinstance(value, dict) and "subscribers" in value:
                points.append((value["subscribers"], value["max_sustained_deliveries_per_s"]))
        points.sort()
        right.plot(
            [p[0] for p in points], [p[1] for p in points], marker="o", color=color, label=label
        )
    top = left.get_xlim()[1]
    left.plot([0, top], [0, top], ":", color="grey", label="offered")
    left.set(
        xlabel="offered deliveries/s",
        ylabel="delivered deliveries/s",
        title="Fan-out on one core (x: p99 > 50 ms or loss)",
    )
    right.set(
        xlabel="subscribers on one channel",
        ylabel="max sustained deliveries/s",
        title="Max sustained (p99 <= 50 ms, nothing lost)",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_cdf(results: dict[str, Any], path: Path) -> Path:
    """Publish-to-delivery latency at the moderate load, sampled streams."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, data in _systems(results).items():
        cdf = (data.get("moderate") or {}).get("latency_cdf_ms")
        if not cdf:
            continue
        n = len(cdf)
        ax.plot(
            cdf, [(i + 1) / n for i in range(n)], color=COLORS.get(name), label=LABELS.get(name)
        )
    profile = results["profile"]
    offered = profile["moderate_subscribers"] * profile["moderate_rate"]
    ax.set_xscale("log")
    ax.set(
        xlabel="publish-to-delivery latency (ms, log)",
        ylabel="fraction of events",
        title=f"Latency CDF at {offered:,.0f} deliveries/s offered",
    )
    ax.axvline(50, color="grey", linestyle=":", label="50 ms")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rss(results: dict[str, Any], path: Path) -> Path:
    """Server RSS as idle streams are added (the seed app's Redis RSS dashed)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, data in _systems(results).items():
        points = (data.get("idle_memory") or {}).get("points")
        if not points:
            continue
        streams = [p["streams"] for p in points]
        color, label = COLORS.get(name), LABELS.get(name, name)
        ax.plot(streams, [p["rss_mb"] for p in points], marker="o", color=color, label=label)
        if name == "seed" and points[0].get("redis_rss_mb") is not None:
            ax.plot(
                streams,
                [p["redis_rss_mb"] for p in points],
                linestyle="--",
                color=color,
                label=f"{label}: redis-server",
            )
    ax.set(xlabel="idle SSE streams", ylabel="RSS (MB)", title="Memory of idle streams")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(results: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        fanout(results, out_dir / "bench-fanout.png"),
        latency_cdf(results, out_dir / "bench-latency-cdf.png"),
        rss(results, out_dir / "bench-rss.png"),
    ]
