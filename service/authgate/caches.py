"""The one bounded cache and the one single-flight helper every cache of authgate uses.

`BoundedCache` is an LRU map with a deadline per entry: at most `max_entries` live
entries (the least recently used fall out first), none served past its deadline, and
`stale()` for the callers that may serve an expired value while its source is failing
(stale-if-error). `ReplayCache` remembers one-time values and, full, refuses rather than
forgets. `Interned` hands out one object per equal value (long-lived structures that
repeat values keep one copy). `SingleFlight` makes concurrent misses for one key share one call.
Hand-written because cachetools' TTLCache has one TTL for all entries, while ours
expire by their own deadline (a token's `exp`, a document's max-age); both are a few
lines over OrderedDict and asyncio.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """An LRU map of at most `max_entries`, each entry with its own deadline."""

    __slots__ = ("_entries", "expired", "max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError("a cache cannot hold fewer than 0 entries")
        self.max_entries = max_entries  # 0: caches nothing
        self.expired = 0  # entries dropped by get() at their deadline (callers count misses by it)
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        """The value while `now` is before its deadline; an expired entry is dropped."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry[0]:
            del self._entries[key]
            self.expired += 1
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def stale(self, key: K) -> V | None:
        """The value whatever its deadline (kept only until it is evicted or replaced)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def put(self, key: K, value: V, deadline: float) -> None:
        self._entries[key] = (deadline, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        return None if entry is None else entry[1]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


class ReplayCache(Generic[K]):
    """Keys seen once, each remembered until its deadline (one-time-use values: DPoP `jti`).

    Bounded, and when full it admits nothing new rather than evicting a live entry: an
    eviction would reopen that entry's replay window. Entries are purged oldest first;
    one with a later deadline than its successors only lingers until those are gone.
    """

    __slots__ = ("_entries", "max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("a replay cache must hold at least one entry")
        self.max_entries = max_entries
        self._entries: OrderedDict[K, float] = OrderedDict()

    def add(self, key: K, deadline: float, now: float) -> bool:
        """Remember `key` until `deadline`. False when it was seen (and is still remembered),
        or when the cache is full: either way the caller must refuse the value."""
        entries = self._entries
        while entries:
            oldest, oldest_deadline = next(iter(entries.items()))
            if oldest_deadline > now:
                break
            del entries[oldest]
        seen = entries.get(key)
        if seen is not None:
            if seen > now:
                return False
            del entries[key]
        if len(entries) >= self.max_entries:
            return False
        entries[key] = deadline
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


class Interned(Generic[K]):
    """One shared object per equal (hashable, immutable) value: `intern(value)` returns the
    first equal value it was given. For values that many long-lived objects hold alike
    (each copy is memory, and one more object for every pass of the garbage collector).
    Bounded: emptied when it holds `max_entries` (the values already handed out stay valid)."""

    __slots__ = ("_values", "max_entries")

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._values: dict[K, K] = {}

    def __call__(self, value: K) -> K:
        values = self._values
        found = values.get(value)
        if found is None:
            if len(values) >= self.max_entries:
                values.clear()
            found = values[value] = value
        return found

    def __len__(self) -> int:
        return len(self._values)


class SingleFlight(Generic[K, V]):
    """Concurrent `run(key, call)` for one key await one `call()`; its result or exception
    goes to all of them. A caller that is cancelled does not cancel the others' call."""

    __slots__ = ("_inflight",)

    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    def _forget(self, key: K, task: asyncio.Task[V]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure every waiter saw is not "never retrieved"

    def __len__(self) -> int:
        return len(self._inflight)
