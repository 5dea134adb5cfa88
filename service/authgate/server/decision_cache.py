"""Rendered check answers, reused while nothing they were decided from has changed.

The key is every input the check read: the dialect, the path and method of the check
request itself, and the value of every header the dialect reads (dialects.headers
`collect`), except `X-Request-Id`, which only names the request. So two requests with
one key are the same request to the pipeline, and get the same answer, by construction.

Never cached: a request carrying a DPoP proof or a client certificate (a proof is per
request by design; a certificate is checked per connection), an answer that carries a
fresh DPoP nonce, denials whose cause an attacker varies at will or that may heal
(invalid tokens, 400s, no policy, 503s), and allows that sent an exchanged token
upstream. An entry dies at the earliest of: the snapshot generation it was decided
under being replaced, the token's `exp` (or the introspection bound) and the
verified-token cache's TTL; on a hit, an entry whose issuer's keys failed closed is
dropped and decided again (it gets the 503). Bounded (LRU), separately from the
verified-token cache; `max_entries` 0 turns it off.

An answer is kept the second time its key is decided, not the first (`admit`: the
"doorkeeper" of TinyLFU, Einziger et al. 2017): a request seen once (a token presented
once, a client that never comes back) costs no entry, encodes nothing for one and evicts
no entry in use. The doorkeeper is a set of key hashes, as bounded as the cache and
emptied when full; a hash collision only admits an answer one decision early.

Thread-safe (one lock, held for a dict operation or two): the gRPC port answers hits
from its worker threads (server/grpc_app.py) while the event loop serves the HTTP port.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from authgate import metrics
from authgate.caches import BoundedCache
from authgate.check.decision import Decision
from authgate.check.tokens.jwks import KeyStore

# Reasons whose answer depends only on the key's inputs and the enforced snapshot.
CACHEABLE_REASONS = frozenset(
    {"allowed", "anonymous", "cors_preflight", "no_token", "insufficient_scope", "no_rule", "missing_role"}
)
_COUNTS = metrics.cache_counts("decision")


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # every response header but x-request-id, content-length included
    body: bytes  # the HTTP body; for envoy-grpc the serialized CheckResponse (without the request id)
    allowed: bool  # for the counters
    reason: str
    log_fields: str | None  # the decision line's fixed fields (logs.DecisionLog.encode_fields)
    generation: int  # of the snapshot it was decided under
    key_source: tuple[str, str | None] | None  # the issuer whose keys verified the token, if any


def cacheable(decision: Decision) -> bool:
    if decision.response_headers:  # a fresh DPoP nonce
        return False
    reason = decision.dry_run_reason if decision.reason == "dry_run" else decision.reason
    if reason not in CACHEABLE_REASONS:
        return False
    policy = decision.policy
    return not (decision.allowed and decision.token is not None and policy is not None and policy.token_exchange)


def deadline(decision: Decision, now: float, ttl: float) -> float:
    token = decision.token
    return min(token.expires_at, now + ttl) if token is not None else now + ttl


class DecisionCache:
    def __init__(self, keys: KeyStore, max_entries: int = 10_000, ttl: float = 300.0) -> None:
        self.keys = keys
        self.ttl = ttl
        self._entries: BoundedCache[tuple, CachedAnswer] = BoundedCache(max_entries)
        self._seen: set[int] = set()  # hashes of keys decided once since they were last admitted
        self._max_seen = max_entries
        self._lock = threading.Lock()
        self.enabled = max_entries > 0

    def admit(self, key: tuple) -> bool:
        """Whether to keep the answer just decided for `key`: True when the key was decided before."""
        digest = hash(key)
        with self._lock:
            seen = self._seen
            if digest in seen:
                seen.discard(digest)
                return True
            if len(seen) >= self._max_seen:
                seen.clear()
            seen.add(digest)
            return False

    def get(self, key: tuple, generation: int, now: float) -> CachedAnswer | None:
        with self._lock:
            entries = self._entries
            expired = entries.expired
            answer = entries.get(key, now)
            if answer is None:
                _COUNTS[metrics.EXPIRED if entries.expired != expired else metrics.MISS] += 1
                return None
            if answer.generation != generation or (
                answer.key_source is not None and not self.keys.usable(answer.key_source)
            ):
                entries.pop(key)
                _COUNTS[metrics.EXPIRED] += 1
                return None
            _COUNTS[metrics.HIT] += 1
            return answer

    def put(self, key: tuple, answer: CachedAnswer, decision: Decision, now: float) -> None:
        until = deadline(decision, now, self.ttl)
        if until > now:
            with self._lock:
                self._entries.put(key, answer, until)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._seen.clear()

    def __len__(self) -> int:
        return len(self._entries)
