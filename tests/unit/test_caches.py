"""The one bounded cache and the one single-flight helper."""

from __future__ import annotations

import asyncio

import pytest

from authgate.caches import BoundedCache, SingleFlight


def test_entries_expire_at_their_own_deadline():
    cache: BoundedCache[str, int] = BoundedCache(10)
    cache.put("short", 1, deadline=10.0)
    cache.put("long", 2, deadline=100.0)
    assert cache.get("short", 9.9) == 1
    assert cache.get("short", 10.0) is None  # at the deadline: gone
    assert "short" not in cache
    assert cache.get("long", 50.0) == 2


def test_least_recently_used_fall_out_first():
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1, 100.0)
    cache.put("b", 2, 100.0)
    assert cache.get("a", 0.0) == 1  # a is now the most recently used
    cache.put("c", 3, 100.0)
    assert "b" not in cache and cache.get("a", 0.0) == 1 and cache.get("c", 0.0) == 3
    assert len(cache) == 2


def test_stale_serves_an_expired_value_until_it_is_evicted():
    cache: BoundedCache[str, int] = BoundedCache(1)
    cache.put("a", 1, 10.0)
    assert cache.stale("a") == 1  # whatever the time
    cache.put("b", 2, 10.0)
    assert cache.stale("a") is None


def test_a_cache_of_no_entries_caches_nothing():
    cache: BoundedCache[str, int] = BoundedCache(0)
    cache.put("a", 1, 100.0)
    assert cache.get("a", 0.0) is None and len(cache) == 0
    with pytest.raises(ValueError, match="fewer than 0"):
        BoundedCache(-1)


async def test_concurrent_calls_for_one_key_share_one_call():
    flights: SingleFlight[str, int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def call() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    waiters = [asyncio.create_task(flights.run("k", call)) for _ in range(50)]
    await asyncio.sleep(0)
    assert len(flights) == 1
    release.set()
    assert await asyncio.gather(*waiters) == [42] * 50
    assert calls == 1 and len(flights) == 0


async def test_a_failure_reaches_every_waiter_and_the_next_call_runs_again():
    flights: SingleFlight[str, int] = SingleFlight()

    async def fail() -> int:
        await asyncio.sleep(0)
        raise RuntimeError("down")

    results = await asyncio.gather(*(flights.run("k", fail) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)

    async def succeed() -> int:
        return 1

    assert await flights.run("k", succeed) == 1


async def test_a_cancelled_waiter_does_not_cancel_the_others():
    flights: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def call() -> int:
        await release.wait()
        return 7

    first = asyncio.create_task(flights.run("k", call))
    second = asyncio.create_task(flights.run("k", call))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == 7


def test_interned_hands_out_the_first_equal_value_and_stays_bounded():
    from authgate.caches import Interned

    interned = Interned(max_entries=2)
    first = frozenset({"a", "b"})
    assert interned(frozenset({"b", "a"})) is interned(first)
    assert interned(frozenset({"c"})) == frozenset({"c"})
    interned(frozenset({"d"}))  # full: emptied, then holds the new value
    assert len(interned) <= 2
