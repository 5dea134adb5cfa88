"""Prometheus metrics of the auth service, served on the metrics port.

What changes on every check (checks by decision, their latency, verified-token and
decision cache lookups) is counted in plain integers, and turned into metric families
only when scraped (`HotPathCollector`): prometheus_client's Counter and Histogram take a
lock per update and per label lookup, which costs more than many of the checks they
count. The check counts take one plain lock (the gRPC port counts from its threads); the
cache counts are kept under their cache's own lock or on the event loop. Everything else
uses prometheus_client's types as is.
"""

from __future__ import annotations

import bisect
import gc
import threading
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)
JWKS_FETCHES = Counter("authgate_jwks_fetches_total", "JWKS fetches per issuer and result.", ["issuer", "result"])
JWKS_KEY_AGE = Gauge("authgate_jwks_key_age_seconds", "Age of the signing keys in use per issuer.", ["issuer"])
TOKEN_CACHE_SIZE = Gauge("authgate_verified_token_cache_size", "Entries in the verified-token cache.")
SNAPSHOT_GENERATION = Gauge("authgate_snapshot_generation", "Generation of the enforced policy snapshot.")
SNAPSHOT_PUSHES = Counter(
    "authgate_snapshot_pushes_total",
    "Snapshot pushes to the admin API by result: accepted, unchanged, stale, invalid, malformed, too_large, "
    "unauthorized, disabled (every refused one keeps the enforced snapshot).",
    ["result"],
)
SNAPSHOT_POLICIES = Gauge("authgate_snapshot_policies", "Policies in the enforced snapshot.")
FACADE_REQUESTS = Counter(
    "authgate_facade_requests_total",
    "Requests to the OAuth facade by endpoint and HTTP status.",
    ["endpoint", "status"],
)
ERRORS = Counter("authgate_internal_errors_total", "Unexpected errors (each one failed closed).", ["where"])


_CACHE_FAMILIES = {
    "verified_token": (
        "authgate_verified_token_cache_total",
        "authgate_verified_token_cache_hit_ratio",
        "Verified-token",
    ),
    "decision": ("authgate_decision_cache_total", "authgate_decision_cache_hit_ratio", "Decision"),
}


class HotPathCollector(Collector):
    """authgate_checks_total, authgate_check_duration_seconds, and the cache lookups
    (authgate_verified_token_cache_total, authgate_decision_cache_total and their hit
    ratios), from counts kept without locks by `count_check` and `count_cache`."""

    def __init__(self) -> None:
        self.checks: dict[tuple[str, bool, str], int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: above every bound
        self.latency_sum = 0.0
        self.caches: dict[str, list[int]] = {name: [0, 0, 0] for name in _CACHE_FAMILIES}  # hit, miss, expired

    def collect(self) -> Iterator[object]:
        checks = CounterMetricFamily(
            "authgate_checks_total",
            "External-auth checks by decision and reason.",
            labels=["dialect", "decision", "reason"],
        )
        for (dialect, allowed, reason), count in list(self.checks.items()):
            checks.add_metric([dialect, "allow" if allowed else "deny", reason], count)
        yield checks
        cumulative, buckets = 0, []
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), list(self.buckets), strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        latency = HistogramMetricFamily(
            "authgate_check_duration_seconds", "Time to decide one check, from request parsed to decision rendered."
        )
        latency.add_metric([], buckets, self.latency_sum)
        yield latency
        for name, (total, hit_ratio, what) in _CACHE_FAMILIES.items():
            hit, miss, expired = self.caches[name]
            lookups = CounterMetricFamily(total, f"{what} cache lookups.", labels=["result"])
            for result, count in (("hit", hit), ("miss", miss), ("expired", expired)):
                lookups.add_metric([result], count)
            yield lookups
            ratio = GaugeMetricFamily(hit_ratio, f"{what} cache hits per lookup since the start (0 before any).")
            ratio.add_metric([], hit / (hit + miss + expired) if hit + miss + expired else 0.0)
            yield ratio


HOT_PATH = HotPathCollector()
REGISTRY.register(HOT_PATH)
_checks = HOT_PATH.checks
_buckets = HOT_PATH.buckets
HIT, MISS, EXPIRED = 0, 1, 2


GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GcPauses(Collector):
    """authgate_gc_pause_seconds: how long each pass of the cyclic garbage collector held
    the process (checks wait meanwhile), by generation; from `gc.callbacks`, counted
    without locks like the hot path. A full (generation 2) pass walks every object the
    process tracks, so its pauses grow with the caches: what the p99 of a process with a
    large verified-token cache is made of."""

    def __init__(self) -> None:
        self.buckets = [[0] * (len(GC_PAUSE_BUCKETS) + 1) for _ in range(3)]
        self.sums = [0.0, 0.0, 0.0]
        self._started = 0.0

    def install(self) -> None:
        if self.on_collection not in gc.callbacks:
            gc.callbacks.append(self.on_collection)

    def on_collection(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        elapsed = time.perf_counter() - self._started
        generation = min(info.get("generation", 2), 2)
        self.buckets[generation][bisect.bisect_left(GC_PAUSE_BUCKETS, elapsed)] += 1
        self.sums[generation] += elapsed

    def collect(self) -> Iterator[object]:
        pauses = HistogramMetricFamily(
            "authgate_gc_pause_seconds",
            "Pauses of the cyclic garbage collector by generation (2: a full pass over every tracked object).",
            labels=["generation"],
        )
        for generation in range(3):
            cumulative, buckets = 0, []
            for bound, count in zip((*GC_PAUSE_BUCKETS, float("inf")), list(self.buckets[generation]), strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            pauses.add_metric([str(generation)], buckets, self.sums[generation])
        yield pauses


GC_PAUSES = GcPauses()
REGISTRY.register(GC_PAUSES)


_COUNT_LOCK = threading.Lock()  # the event loop and the gRPC port's worker threads count checks


def count_check(dialect: str, allowed: bool, reason: str, elapsed: float) -> None:
    key = (dialect, allowed, reason)
    bucket = bisect.bisect_left(LATENCY_BUCKETS, elapsed)
    with _COUNT_LOCK:
        _checks[key] = _checks.get(key, 0) + 1
        _buckets[bucket] += 1
        HOT_PATH.latency_sum += elapsed


def cache_counts(name: str) -> list[int]:
    """The [hit, miss, expired] counts of one cache, for it to increment in place."""
    return HOT_PATH.caches[name]
