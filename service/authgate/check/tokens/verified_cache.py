"""A bounded cache of tokens that passed verification.

Keyed by (the issuer entry that verified the token, SHA-256 of the token), so a token
verified for one policy's audience is never accepted for another. An entry never
outlives the token's `exp`, nor `max_ttl` (which bounds how long a revoked signing key
keeps verifying cached tokens).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from authgate import metrics
from authgate.caches import BoundedCache

T = TypeVar("T")

_COUNTS = metrics.cache_counts("verified_token")


class VerifiedTokenCache(Generic[T]):
    def __init__(self, max_entries: int = 10_000, max_ttl: float = 300.0) -> None:
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self._entries: BoundedCache[tuple[bytes, bytes], T] = BoundedCache(max_entries)

    def get(self, issuer_key: bytes, token_digest: bytes, now: float) -> T | None:
        entries = self._entries
        expired = entries.expired
        value = entries.get((issuer_key, token_digest), now)  # one lookup on the hot path
        if value is not None:
            _COUNTS[metrics.HIT] += 1
        else:
            _COUNTS[metrics.EXPIRED if entries.expired != expired else metrics.MISS] += 1
        return value

    def put(self, issuer_key: bytes, token_digest: bytes, value: T, expires_at: float, now: float) -> None:
        deadline = min(expires_at, now + self.max_ttl)
        if deadline <= now:
            return
        self._entries.put((issuer_key, token_digest), value, deadline)
        metrics.TOKEN_CACHE_SIZE.set(len(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        metrics.TOKEN_CACHE_SIZE.set(0)
