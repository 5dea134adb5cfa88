"""A bounded cache of tokens that passed verification.

Keyed by (the issuer entry that verified the token, SHA-256 of the token), so a token
verified for one policy's audience is never accepted for another. An entry never
outlives the token's `exp`, nor `max_ttl` (which bounds how long a revoked signing key
keeps verifying cached tokens).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from authgate import metrics

T = TypeVar("T")

_HIT = metrics.TOKEN_CACHE.labels(result="hit")
_MISS = metrics.TOKEN_CACHE.labels(result="miss")
_EXPIRED = metrics.TOKEN_CACHE.labels(result="expired")


class VerifiedTokenCache(Generic[T]):
    def __init__(self, max_entries: int = 10_000, max_ttl: float = 300.0) -> None:
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self._entries: OrderedDict[tuple[bytes, bytes], tuple[float, T]] = OrderedDict()

    def get(self, issuer_key: bytes, token_digest: bytes, now: float) -> T | None:
        key = (issuer_key, token_digest)
        entry = self._entries.get(key)
        if entry is None:
            _MISS.inc()
            return None
        if now >= entry[0]:
            del self._entries[key]
            _EXPIRED.inc()
            return None
        self._entries.move_to_end(key)
        _HIT.inc()
        return entry[1]

    def put(self, issuer_key: bytes, token_digest: bytes, value: T, expires_at: float, now: float) -> None:
        deadline = min(expires_at, now + self.max_ttl)
        if deadline <= now:
            return
        self._entries[(issuer_key, token_digest)] = (deadline, value)
        self._entries.move_to_end((issuer_key, token_digest))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        metrics.TOKEN_CACHE_SIZE.set(len(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        metrics.TOKEN_CACHE_SIZE.set(0)
