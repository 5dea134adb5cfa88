"""The report's PNG figures (matplotlib, the optional `bench` extra): requests/s per
configuration, latency CDFs, RSS against cached tokens. Each function writes one file and
returns its path; without matplotlib they return None and the report says so."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.loadgen import Measured
from bench.memory import RssPoint


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def throughput(path: Path, runs: dict[str, list[Measured]], order: list[str]) -> Path | None:
    plt = _pyplot()
    if plt is None:
        return None
    names = [name for name in order if runs.get(name)]
    medians = [statistics.median(m.rps for m in runs[name]) for name in names]
    low = [min(m.rps for m in runs[name]) for name in names]
    high = [max(m.rps for m in runs[name]) for name in names]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(names) + 1.2))
    positions = range(len(names))
    errors = [
        [m - lo for m, lo in zip(medians, low, strict=True)],
        [hi - m for m, hi in zip(medians, high, strict=True)],
    ]
    ax.barh(positions, medians, xerr=errors, color="#4878a8", capsize=3)
    ax.set_yticks(list(positions), names)
    ax.invert_yaxis()
    ax.set_xlabel("requests/s (median of rounds; bars: min-max)")
    for y, value in zip(positions, medians, strict=True):
        ax.text(value, y, f" {value:,.0f}", va="center", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency_cdf(path: Path, runs: dict[str, list[Measured]], order: list[str]) -> Path | None:
    """One curve per configuration, from its median-throughput round."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(9, 5.5))
    colors = plt.get_cmap("tab20").colors
    for index, name in enumerate(order):
        measured = runs.get(name)
        if not measured:
            continue
        ranked = sorted(measured, key=lambda m: m.rps)
        cdf = ranked[len(ranked) // 2].cdf
        if cdf:
            ax.plot(
                [ms for _, ms in cdf],
                [p for p, _ in cdf],
                marker=".",
                label=name,
                linewidth=1,
                color=colors[index % len(colors)],
                linestyle="-" if index < len(colors) else "--",
            )
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale) under closed-loop load (wrk 32 connections, ghz 32 calls)")
    ax.set_ylabel("percentile")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rss(path: Path, points: list[RssPoint]) -> Path | None:
    plt = _pyplot()
    if plt is None or not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = [p.tokens for p in points]
    ax.plot(xs, [p.rss_bytes / 2**20 for p in points], marker="o", label="RSS (MiB)")
    ax.set_xlabel("distinct valid tokens presented")
    ax.set_ylabel("authgate RSS (MiB)")
    ax.grid(alpha=0.3)
    other = ax.twinx()
    other.plot(xs, [p.cached_entries for p in points], marker="s", color="#c05030", label="cache entries")
    other.set_ylabel("verified-token cache entries")
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.9), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
