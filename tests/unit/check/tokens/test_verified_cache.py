"""The verified-token cache: bounded, oldest out first, never past a token's exp or the TTL."""

import hashlib
from dataclasses import dataclass

import pytest

from authgate.check.tokens.verified_cache import VerifiedTokenCache

NOW = 1_000_000.0


@dataclass(frozen=True)
class Token:
    expires_at: float
    verified_at: float = NOW


def digest(index: int) -> bytes:
    return hashlib.sha256(f"token {index}".encode()).digest()  # what the validator passes


def test_full_it_drops_the_oldest_inserted_and_stays_within_its_bound():
    cache = VerifiedTokenCache(max_entries=1000)
    tokens = [Token(NOW + 3600) for _ in range(3000)]
    for index, token in enumerate(tokens):
        cache.put(b"policy", digest(index), token, NOW)
        assert len(cache) <= 1000
    assert cache.get(b"policy", digest(2999), NOW) is tokens[2999]  # the newest stays
    assert cache.get(b"policy", digest(0), NOW) is None  # the oldest went first
    assert len(cache) >= 990  # evicted in batches of 1 %, never more


def test_an_entry_dies_at_the_tokens_exp_or_the_ttl_whichever_comes_first():
    cache = VerifiedTokenCache(max_entries=10, max_ttl=300)
    short, long = Token(NOW + 60), Token(NOW + 3600)
    cache.put(b"p", digest(1), short, NOW)
    cache.put(b"p", digest(2), long, NOW)
    assert cache.get(b"p", digest(1), NOW + 59) is short
    assert cache.get(b"p", digest(1), NOW + 60) is None
    assert cache.get(b"p", digest(2), NOW + 299) is long
    assert cache.get(b"p", digest(2), NOW + 300) is None


def test_the_key_scope_separates_policies_and_zero_entries_caches_nothing():
    cache = VerifiedTokenCache(max_entries=10)
    cache.put(b"a", digest(1), Token(NOW + 60), NOW)
    assert cache.get(b"b", digest(1), NOW) is None
    off = VerifiedTokenCache(max_entries=0)
    off.put(b"a", digest(1), Token(NOW + 60), NOW)
    assert len(off) == 0
    with pytest.raises(ValueError):
        VerifiedTokenCache(max_entries=-1)
