"""Authorization-server metadata, the one way authgate discovers an issuer's endpoints.

OpenID Connect Discovery §4 (appended to the issuer) first, then RFC 8414 §3.1
(inserted); the first document that answers and names the issuer exactly (RFC 8414 §3.3)
is the issuer's. Documents are cached per issuer (bounded, `ttl`), concurrent misses share
one fetch, and while the issuer fails a document fetched before is served again (retried
every `retry` seconds): the JWKS cache, token exchange and the facade's upstream all use
this, and map DiscoveryFailed to their own answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from authgate.caches import BoundedCache, SingleFlight
from authgate.errors import DiscoveryFailed, EgressError
from authgate.outbound.egress import EgressClient

MAX_DOCUMENT_BYTES = 64 * 1024


def discovery_urls(issuer: str) -> list[str]:
    """OpenID Connect Discovery §4 (appended), then RFC 8414 §3.1 (inserted)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    appended = urlunsplit((parts.scheme, parts.netloc, path + "/.well-known/openid-configuration", "", ""))
    inserted = urlunsplit((parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + path, "", ""))
    return [appended, inserted]


class Discovery:
    def __init__(
        self,
        egress: EgressClient,
        ttl: float = 300.0,
        retry: float = 30.0,
        max_entries: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._egress = egress
        self._ttl, self._retry, self._clock = ttl, retry, clock
        self._documents: BoundedCache[str, dict[str, Any]] = BoundedCache(max_entries)
        self._flights: SingleFlight[str, dict[str, Any]] = SingleFlight()

    async def metadata(self, issuer: str) -> dict[str, Any]:
        """The issuer's metadata document; DiscoveryFailed when none can be had."""
        cached = self._documents.get(issuer, self._clock())
        if cached is not None:
            return cached
        try:
            return await self._flights.run(issuer, lambda: self._fetch(issuer))
        except DiscoveryFailed:
            stale = self._documents.stale(issuer)
            if stale is None:
                raise
            self._documents.put(issuer, stale, self._clock() + self._retry)  # stale beats nothing, briefly
            return stale

    def endpoint(self, issuer: str, document: dict[str, Any], name: str) -> str:
        """A URL the document names, checked by the egress rules; DiscoveryFailed otherwise."""
        value = document.get(name)
        if not isinstance(value, str):
            raise DiscoveryFailed(issuer, f"the metadata has no {name}")
        try:
            self._egress.check_url(value)
        except EgressError as error:
            raise DiscoveryFailed(issuer, f"{name} refused ({error.detail})") from None
        return value

    async def _fetch(self, issuer: str) -> dict[str, Any]:
        problem = "no discovery document"
        for url in discovery_urls(issuer):
            try:
                document, _ = await self._egress.get_json(url, max_bytes=MAX_DOCUMENT_BYTES)
            except EgressError as error:
                problem = str(error)  # the URL and what went wrong (e.g. CERTIFICATE_VERIFY_FAILED)
                continue
            if document.get("issuer") != issuer:
                problem = f"the metadata at {url} names another issuer"
                continue
            self._documents.put(issuer, document, self._clock() + self._ttl)
            return document
        raise DiscoveryFailed(issuer, problem)
