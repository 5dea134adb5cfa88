"""Signing keys per (issuer, jwksUri): discovery, fetching, caching and refresh.

- fetched when a snapshot naming the issuer loads, refreshed in the background before
  the keys go stale;
- an unknown `kid` refetches at most once per cooldown, and concurrent callers share
  one fetch (single-flight);
- while the IdP fails, the last good keys stay usable for `stale_if_error` seconds past
  their refresh time, then the issuer fails closed (KeysUnavailable → 503, never 401).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from authgate import metrics
from authgate.caches import SingleFlight
from authgate.check.tokens.jws import VerificationKey, verification_key
from authgate.errors import DiscoveryFailed, EgressError, KeysFetchError, KeysUnavailable, TokenError
from authgate.outbound.discovery import Discovery
from authgate.outbound.egress import EgressClient

log = logging.getLogger("authgate.jwks")


@dataclass(frozen=True)
class JwksSettings:
    refresh_interval: float = 300.0
    stale_if_error: float = 3600.0
    unknown_kid_cooldown: float = 30.0
    failure_cooldown: float = 5.0  # a cold issuer that just failed answers 503 at once for this long
    retry_interval: float = 15.0  # background retry after a failed refresh
    max_jwks_bytes: int = 256 * 1024
    max_keys: int = 64
    tick: float = 1.0  # how often the background loop looks for due refreshes


@dataclass(frozen=True)
class KeyIndex:
    jwks_uri: str
    by_kid: dict[str, tuple[VerificationKey, ...]]
    keys: tuple[VerificationKey, ...]
    fetched_at: float  # monotonic


class IssuerKeys:
    """The key state of one (issuer, jwksUri). All mutation happens on the event loop."""

    def __init__(
        self,
        issuer: str,
        jwks_uri: str | None,
        egress: EgressClient,
        discovery: Discovery,
        settings: JwksSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.configured_jwks_uri = jwks_uri
        self._egress = egress
        self._discovery = discovery
        self._settings = settings
        self._clock = clock
        self.index: KeyIndex | None = None
        self.last_error: str | None = None
        self.last_attempt: float | None = None
        self.last_failure: float | None = None
        self.fetches = 0
        self.usable_until = float("-inf")  # monotonic: past it, the keys are stale beyond the limit
        self.last_kid_refetch: float | None = None  # when an unknown kid last caused a fetch
        self._fetching: SingleFlight[None, None] = SingleFlight()

    # -- state -----------------------------------------------------------------
    def usable_index(self) -> KeyIndex | None:
        index = self.index
        if index is None or self._clock() > self.usable_until:
            return None
        return index

    def refresh_due(self) -> bool:
        now = self._clock()
        if len(self._fetching) > 0:
            return False
        if self.last_failure is not None and self.last_attempt == self.last_failure:
            return now - self.last_failure >= self._settings.retry_interval
        if self.index is None:
            return True
        return now - self.index.fetched_at >= self._settings.refresh_interval

    def state(self) -> dict:
        index = self.index
        now = self._clock()
        return {
            "issuer": self.issuer,
            "jwksUri": index.jwks_uri if index else self.configured_jwks_uri,
            "keys": len(index.keys) if index else 0,
            "keyAgeSeconds": round(now - index.fetched_at, 1) if index else None,
            "usable": self.usable_index() is not None,
            "lastError": self.last_error,
            "fetches": self.fetches,
        }

    # -- fetching --------------------------------------------------------------
    async def refresh(self) -> None:
        """Fetch now, or join the fetch already running."""
        await self._fetching.run(None, self._fetch)

    async def _discover_jwks_uri(self) -> str:
        try:
            return self._discovery.endpoint(self.issuer, await self._discovery.metadata(self.issuer), "jwks_uri")
        except DiscoveryFailed as error:
            raise KeysFetchError(str(error)) from None

    async def _fetch(self) -> None:
        self.last_attempt = self._clock()
        self.fetches += 1
        try:
            jwks_uri = self.configured_jwks_uri or await self._discover_jwks_uri()
            document, _ = await self._egress.get_json(jwks_uri, max_bytes=self._settings.max_jwks_bytes)
            raw_keys = document.get("keys")
            if not isinstance(raw_keys, list):
                raise KeysFetchError("JWKS has no keys array")
            if len(raw_keys) > self._settings.max_keys:
                raise KeysFetchError(f"JWKS has {len(raw_keys)} keys, more than {self._settings.max_keys}")
            keys = tuple(k for k in (verification_key(raw) for raw in raw_keys if isinstance(raw, dict)) if k)
            if not keys:
                raise KeysFetchError("JWKS has no usable signature key")
        except (EgressError, KeysFetchError) as error:
            self.last_error = str(error)
            self.last_failure = self.last_attempt
            metrics.JWKS_FETCHES.labels(issuer=self.issuer, result="error").inc()
            log.warning("jwks fetch failed", extra={"issuer": self.issuer, "error": self.last_error})
            return
        by_kid: dict[str, tuple[VerificationKey, ...]] = {}
        for key in keys:
            if key.kid is not None:
                by_kid[key.kid] = (*by_kid.get(key.kid, ()), key)
        self.index = KeyIndex(jwks_uri, by_kid, keys, self._clock())
        self.usable_until = self.index.fetched_at + self._settings.refresh_interval + self._settings.stale_if_error
        self.last_error = None
        self.last_failure = None
        metrics.JWKS_FETCHES.labels(issuer=self.issuer, result="ok").inc()

    # -- lookup on the request path -------------------------------------------
    async def keys_for(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        index = self.usable_index()
        if index is None:
            recently_failed = (
                self.last_failure is not None
                and self._clock() - self.last_failure < self._settings.failure_cooldown
                and len(self._fetching) == 0
            )
            if not recently_failed:
                await self.refresh()
            index = self.usable_index()
            if index is None:
                raise KeysUnavailable(self.issuer, self.last_error or "no keys yet")
        if kid is None:
            candidates = tuple(k for k in index.keys if k.usable_for(alg))
        else:
            candidates = index.by_kid.get(kid, ())
            if not candidates:
                # The cooldown throttles only refetches that unknown kids caused: a key the
                # IdP published after any other fetch (start-up, background) is looked up at once.
                now = self._clock()
                since = now - self.last_kid_refetch if self.last_kid_refetch is not None else float("inf")
                if len(self._fetching) > 0 or since >= self._settings.unknown_kid_cooldown:
                    if len(self._fetching) == 0:
                        self.last_kid_refetch = now
                    await self.refresh()
                    index = self.usable_index() or index
                    candidates = index.by_kid.get(kid, ())
                if not candidates:
                    raise TokenError("unknown signing key (kid)")
            candidates = tuple(k for k in candidates if k.usable_for(alg))
        if not candidates:
            raise TokenError("no key of the issuer fits the token's algorithm")
        return candidates


class KeyStore:
    """All issuers' key sets, kept in step with the snapshot, refreshed by one background task."""

    def __init__(
        self, egress: EgressClient, settings: JwksSettings = JwksSettings(), discovery: Discovery | None = None
    ) -> None:
        self._egress = egress
        self._discovery = discovery or Discovery(egress)
        self.settings = settings
        self._sets: dict[tuple[str, str | None], IssuerKeys] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def get(self, source: tuple[str, str | None]) -> IssuerKeys:
        keys = self._sets.get(source)
        if keys is None:  # a snapshot is swapped in only after sync(); this is a safety net
            keys = self._sets[source] = IssuerKeys(source[0], source[1], self._egress, self._discovery, self.settings)
        return keys

    def sync(self, sources: Iterable[tuple[str, str | None]]) -> None:
        """Make the key sets match the snapshot's issuers; new ones are fetched right away."""
        wanted = set(sources)
        for source in list(self._sets):
            if source not in wanted:
                del self._sets[source]
        for source in wanted:
            if source not in self._sets:
                self._sets[source] = IssuerKeys(source[0], source[1], self._egress, self._discovery, self.settings)
        if self._loop_task is not None:
            self._refresh_due()

    def usable(self, source: tuple[str, str | None]) -> bool:
        """Are the key set's keys fresh enough to verify with (within the stale limit)?"""
        keys = self._sets.get(source)  # (on every verified-token cache hit: kept to one lookup and a clock read)
        return keys is not None and keys.usable_until >= keys._clock()

    def states(self) -> list[dict]:
        return [keys.state() for keys in self._sets.values()]

    def fingerprint(self) -> tuple:
        """What changes whenever a key set's reported state does (a fetch, an error, keys
        going stale), but the key age, which changes all the time: the admin state's ETag."""
        return tuple(
            (source, keys.fetches, keys.last_error, keys.usable_index() is not None)
            for source, keys in self._sets.items()
        )

    def state_of(self, source: tuple[str, str | None]) -> dict:
        keys = self._sets.get(source)
        return keys.state() if keys is not None else {"issuer": source[0], "jwksUri": source[1], "keys": 0}

    def _refresh_due(self) -> None:
        for keys in list(self._sets.values()):
            if keys.refresh_due():
                task = asyncio.get_running_loop().create_task(keys.refresh())
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
        now = time.monotonic()
        for keys in self._sets.values():
            index = keys.index
            if index is not None:
                metrics.JWKS_KEY_AGE.labels(issuer=keys.issuer).set(now - index.fetched_at)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick)
            try:
                self._refresh_due()
            except Exception:  # the refresher must outlive any one bad key set
                log.exception("jwks refresh loop error")

    def start(self) -> None:
        """Fetch every key set now and keep them fresh from here on."""
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run())
            self._refresh_due()

    async def stop(self) -> None:
        tasks = [t for t in [self._loop_task, *self._pending] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop_task = None
