"""Prometheus metrics of the auth service, served on the metrics port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CHECKS = Counter(
    "authgate_checks_total",
    "External-auth checks by decision and reason.",
    ["dialect", "decision", "reason"],
)
CHECK_LATENCY = Histogram(
    "authgate_check_duration_seconds",
    "Time to decide one check, from request parsed to decision rendered.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
)
JWKS_FETCHES = Counter("authgate_jwks_fetches_total", "JWKS fetches per issuer and result.", ["issuer", "result"])
JWKS_KEY_AGE = Gauge("authgate_jwks_key_age_seconds", "Age of the signing keys in use per issuer.", ["issuer"])
TOKEN_CACHE = Counter("authgate_verified_token_cache_total", "Verified-token cache lookups.", ["result"])
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


_check_counters: dict[tuple[str, bool, str], object] = {}


def count_check(dialect: str, allowed: bool, reason: str) -> None:
    """CHECKS.labels(...).inc(), with each labelled child looked up once."""
    key = (dialect, allowed, reason)
    child = _check_counters.get(key)
    if child is None:
        child = _check_counters[key] = CHECKS.labels(dialect, "allow" if allowed else "deny", reason)
    child.inc()
