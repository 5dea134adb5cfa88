"""The report's ratios: paired per round, per server CPU-second, and the RSS slope."""

from __future__ import annotations

import pytest
from bench import report
from bench.loadgen import Measured
from bench.memory import RssPoint
from bench.table import Rounds


def _run(rps: float, cpu: float) -> Measured:
    measured = Measured(rps=rps, requests=int(rps), p50_ms=1.0, p99_ms=2.0, errors=0)
    measured.cpu = {"server": cpu}
    return measured


def test_ratios_are_medians_of_per_round_ratios() -> None:
    rounds = Rounds(
        runs={
            "a": [_run(100, 1.0), _run(50, 0.5), _run(90, 1.0)],
            "b": [_run(200, 1.0), _run(100, 1.0), _run(100, 1.0)],
        },
        order=["a", "b"],
    )
    assert report.rps_ratio(rounds, "a", "b") == pytest.approx(0.5)  # 0.5, 0.5, 0.9
    # per CPU-second: a used 10 ms/req in round 1 vs b's 5 ms/req -> 0.5; round 2: 10 vs 10 -> 1.0; round 3: 0.9
    assert report.cpu_ratio(rounds, "a", "b") == pytest.approx(0.9)
    assert report.cost_ratio(rounds, "a", "b") == pytest.approx(1 / 0.9)


def test_rss_growth_scaled_to_100k_tokens_and_bytes_per_entry() -> None:
    points = [RssPoint(0, 100_000_000, 1), RssPoint(50_000, 120_000_000, 10_001)]
    per_100k, note = report.rss_per_100k(points)
    assert per_100k == pytest.approx(200.0)  # 20 MB for 10,000 cached entries
    assert "2,000 bytes of RSS per cached entry" in note


def test_rss_per_100k_is_nan_when_the_cache_kept_nothing_new() -> None:
    per_100k, note = report.rss_per_100k([RssPoint(0, 100, 10_000), RssPoint(10, 200, 10_000)])
    assert per_100k != per_100k and "the cache kept 0" in note


def test_target_verdicts() -> None:
    assert report.Target("x", 0.75, 0.70, True).verdict == "met"
    assert report.Target("x", 2.5, 2.0, False).verdict == "**missed**"
    assert report.Target("x", float("nan"), 2.0, False).verdict == "not measured"
