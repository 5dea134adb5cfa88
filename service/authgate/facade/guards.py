"""Per-replica guards of the facade: rate limits per client address, and single use of
sealed values that must be used once (transactions, codes).

Both are in memory, bounded LRU maps (`caches.BoundedCache`). Single use across replicas cannot be enforced without
shared state; what bounds a replay there is the short lifetime (codes 60 s) and what
else it needs (the client's PKCE verifier, the browser's binding cookie).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from authgate.caches import BoundedCache


@dataclass(frozen=True)
class RateLimit:
    per_minute: float
    burst: int


# Defaults per endpoint group, per client address.
RATE_LIMITS: dict[str, RateLimit] = {
    "register": RateLimit(per_minute=20, burst=20),
    "authorize": RateLimit(per_minute=120, burst=60),
    "token": RateLimit(per_minute=300, burst=100),
    # client authentication happens here too: throttle secret guessing (OAuth 2.1 §2.4.1)
    "introspect": RateLimit(per_minute=300, burst=100),
    "revoke": RateLimit(per_minute=300, burst=100),
}


class RateLimiter:
    """Token buckets keyed by (group, address); the least recently used fall out first. A
    bucket is kept until it would be full again: after that a fresh one is the same."""

    def __init__(self, limits: dict[str, RateLimit] | None = None, max_keys: int = 50_000) -> None:
        self._limits = RATE_LIMITS if limits is None else limits
        self._buckets: BoundedCache[tuple[str, str], tuple[float, float]] = BoundedCache(max_keys)

    def allow(self, group: str, address: str, now: float | None = None) -> bool:
        limit = self._limits.get(group)
        if limit is None:
            return True
        now = time.monotonic() if now is None else now
        key = (group, address)
        tokens, last = self._buckets.get(key, now) or (float(limit.burst), now)
        tokens = min(float(limit.burst), tokens + (now - last) * limit.per_minute / 60.0)
        allowed = tokens >= 1.0
        left = tokens - 1.0 if allowed else tokens
        refill = (limit.burst - left) * 60.0 / limit.per_minute if limit.per_minute > 0 else float("inf")
        refilled = now + refill
        self._buckets.put(key, (left, now), refilled)
        return allowed


class UsedOnce:
    """Identifiers already used, remembered until they expire anyway (the sealed value they
    came in no longer opens then). When full, the least recently used identifier is
    forgotten first: its value could then be used once more on this replica, within its
    lifetime, as on any other replica."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: BoundedCache[str, bool] = BoundedCache(max_entries)

    def first_use(self, identifier: str, expires: float, now: float | None = None) -> bool:
        """True the first time `identifier` is presented (before `expires`, epoch seconds)."""
        now = time.time() if now is None else now
        if self._seen.get(identifier, now):
            return False
        self._seen.put(identifier, True, expires)
        return True

    def __len__(self) -> int:
        return len(self._seen)
