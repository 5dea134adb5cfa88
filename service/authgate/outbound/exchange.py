"""RFC 8693 token exchange: swap the caller's token for one issued to the downstream audience.

An MCP server must not pass its caller's token on (MCP authorization spec); authgate does
the swap at the edge. Exchanged tokens are cached under every parameter that shapes them
(policy, endpoint, client, audience, resource, scope, requested type, subject-token hash)
until shortly before they expire; concurrent requests for one key share one exchange.
Client authentication is client_secret_basic (RFC 6749 §2.3.1) or mutual TLS (RFC 8705
§2 tls_client_auth, with the token endpoint's mTLS alias when the IdP advertises one).
Every failure fails closed: 401 when the IdP refuses the subject token, else 503.

For MCP servers that make their own calls: `await exchange_token(...)`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from authgate.caches import BoundedCache, SingleFlight
from authgate.errors import DiscoveryFailed, EgressError, ExchangeFailed
from authgate.outbound.discovery import Discovery
from authgate.outbound.egress import EgressClient, EgressPolicy
from authgate.outbound.oauth_client import is_b64token, post_form
from authgate.policy.snapshot import CompiledExchange

log = logging.getLogger("authgate.exchange")

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN
MAX_RESPONSE_BYTES = 64 * 1024
MAX_EXPIRES_IN = 366 * 24 * 3600  # longer is no access token; it would also overflow the clock arithmetic
MTLS_CLIENTS_KEPT = 8  # distinct client certificates kept connected (policies x rotations in flight)
_SAFE_TEXT = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class ExchangedToken:
    access_token: str = field(repr=False)
    issued_token_type: str
    expires_at: float
    scope: str | None = None


def _parse_response(status: int, body: dict) -> tuple[str, str, int | None, str | None]:
    if status != 200:
        error = body.get("error") if isinstance(body.get("error"), str) else "unknown"
        description = body.get("error_description") if isinstance(body.get("error_description"), str) else ""
        detail = _SAFE_TEXT.sub("", f"{error}: {description}")[:300]
        if error == "invalid_grant":
            raise ExchangeFailed(401, "the identity provider refused to exchange the token", detail)
        raise ExchangeFailed(503, "token exchange refused by the identity provider", detail)
    token = body.get("access_token")
    token_type = body.get("token_type")
    issued = body.get("issued_token_type", ACCESS_TOKEN_TYPE)
    if not isinstance(token, str) or not is_b64token(token) or len(token) > 16 * 1024:
        raise ExchangeFailed(503, "token exchange answered without a usable access_token")
    if not isinstance(token_type, str) or token_type.lower() not in ("bearer", "n_a"):
        raise ExchangeFailed(503, "token exchange answered with an unusable token_type")
    expires_in = body.get("expires_in")
    if expires_in is not None and (
        isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 0 <= expires_in <= MAX_EXPIRES_IN
    ):
        raise ExchangeFailed(503, "token exchange answered with an invalid expires_in")
    scope = body.get("scope") if isinstance(body.get("scope"), str) else None
    return token, issued if isinstance(issued, str) else ACCESS_TOKEN_TYPE, expires_in, scope


class TokenExchanger:
    def __init__(
        self,
        egress_policy: EgressPolicy,
        egress: EgressClient | None = None,
        discovery: Discovery | None = None,
        max_entries: int = 10_000,
        refresh_margin: float = 30.0,
        default_lifetime: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._egress_policy = egress_policy
        self._egress = egress or EgressClient(egress_policy)
        self._mtls: dict[bytes, EgressClient] = {}
        self._last_used: dict[bytes, float] = {}
        self._in_use: dict[bytes, int] = {}
        self._discovery = discovery or Discovery(self._egress)
        self._cache: BoundedCache[tuple[bytes, bytes], ExchangedToken] = BoundedCache(max_entries)
        self._flights: SingleFlight[tuple[bytes, bytes], ExchangedToken] = SingleFlight()
        self.max_entries = max_entries
        self.refresh_margin = refresh_margin
        self.default_lifetime = default_lifetime
        self.clock = clock
        self.exchanges = 0

    def _client(self, config: CompiledExchange) -> tuple[bytes, EgressClient]:
        """The egress client for this configuration: the shared one, or one per client
        certificate. A rotated certificate gets a new client; old ones are closed only once
        no exchange uses them (an exchange in flight during a rotation completes)."""
        if config.client_certificate is None:
            return b"", self._egress
        cert, key, _ = config.client_certificate
        identity = hashlib.sha256(cert + b"\0" + key).digest()
        client = self._mtls.get(identity)
        if client is None:
            client = self._mtls[identity] = EgressClient(self._egress_policy, (cert, key))
        self._last_used[identity] = self.clock()
        return identity, client

    def _retire(self) -> None:
        """Close mTLS clients beyond the most recently used few, when idle."""
        keep = set(sorted(self._last_used, key=self._last_used.__getitem__)[-MTLS_CLIENTS_KEPT:])
        for identity in [i for i in self._mtls if i not in keep and not self._in_use.get(i)]:
            client = self._mtls.pop(identity)
            self._last_used.pop(identity, None)
            asyncio.get_running_loop().create_task(client.aclose())

    async def _token_endpoint(self, config: CompiledExchange) -> str:
        if config.token_endpoint is not None:
            return config.token_endpoint
        assert config.issuer is not None
        try:
            metadata = await self._discovery.metadata(config.issuer)
            aliases = metadata.get("mtls_endpoint_aliases")
            if config.client_certificate is not None and isinstance(aliases, dict) and "token_endpoint" in aliases:
                return self._discovery.endpoint(config.issuer, aliases, "token_endpoint")  # RFC 8705 §5
            return self._discovery.endpoint(config.issuer, metadata, "token_endpoint")
        except DiscoveryFailed as error:
            log.warning("token exchange discovery failed", extra={"issuer": config.issuer, "reason": error.reason})
            raise ExchangeFailed(503, "the exchange issuer's metadata cannot be had") from None

    async def exchange(self, config: CompiledExchange, subject_token: str) -> ExchangedToken:
        key = (config.cache_key, hashlib.sha256(subject_token.encode()).digest())
        cached = self._cache.get(key, self.clock())
        if cached is not None:
            return cached
        result = await self._flights.run(key, lambda: self._exchange(config, subject_token))
        # reused until refresh_margin before it expires, so no upstream gets a token about to lapse
        self._cache.put(key, result, result.expires_at - self.refresh_margin)
        return result

    async def _exchange(self, config: CompiledExchange, subject_token: str) -> ExchangedToken:
        self.exchanges += 1
        identity, client = self._client(config)
        self._in_use[identity] = self._in_use.get(identity, 0) + 1
        try:
            return await self._exchange_with(config, subject_token, client)
        finally:
            self._in_use[identity] -= 1
            self._retire()

    async def _exchange_with(
        self, config: CompiledExchange, subject_token: str, client: EgressClient
    ) -> ExchangedToken:
        endpoint = await self._token_endpoint(config)
        form = {
            "grant_type": GRANT_TYPE,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "requested_token_type": config.requested_token_type,
        }
        if config.audience:
            form["audience"] = config.audience
        if config.resource:
            form["resource"] = config.resource
        if config.scopes:
            form["scope"] = " ".join(config.scopes)
        try:
            response = await post_form(
                client, endpoint, form, config.client_id, config.client_secret, MAX_RESPONSE_BYTES
            )
        except EgressError as error:
            log.warning("token exchange failed", extra={"endpoint": endpoint, "reason": error.reason})
            raise ExchangeFailed(503, f"token exchange failed ({error.reason})") from None
        try:
            body = response.json_object()
        except EgressError:
            raise ExchangeFailed(503, f"token exchange answered {response.status_code} without JSON") from None
        try:
            token, issued, expires_in, scope = _parse_response(response.status_code, body)
        except ExchangeFailed as failure:
            log.warning(
                "token exchange refused",
                extra={"endpoint": endpoint, "status": response.status_code, "upstream_error": failure.upstream_error},
            )
            raise
        lifetime = expires_in if expires_in is not None else self.default_lifetime
        return ExchangedToken(token, issued, self.clock() + lifetime, scope)

    async def aclose(self) -> None:
        for client in self._mtls.values():
            await client.aclose()


async def exchange_token(
    subject_token: str,
    *,
    client_id: str,
    token_endpoint: str | None = None,
    issuer: str | None = None,
    client_secret: str | None = None,
    client_certificate: tuple[bytes, bytes] | None = None,
    audience: str | None = None,
    resource: str | None = None,
    scopes: tuple[str, ...] = (),
    requested_token_type: str = ACCESS_TOKEN_TYPE,
    egress_policy: EgressPolicy | None = None,
) -> ExchangedToken:
    """One exchange, for an MCP server that calls downstream APIs itself. Raises
    ExchangeFailed (`status` 401 when the IdP refused the subject token, else 503)."""
    if (token_endpoint is None) == (issuer is None):
        raise ValueError("exactly one of token_endpoint and issuer")
    if (client_secret is None) == (client_certificate is None):
        raise ValueError("exactly one of client_secret and client_certificate")
    config = CompiledExchange(
        token_endpoint=token_endpoint,
        issuer=issuer,
        client_id=client_id,
        client_secret=client_secret,
        client_certificate=(*client_certificate, None) if client_certificate else None,
        audience=audience,
        resource=resource,
        scopes=tuple(scopes),
        requested_token_type=requested_token_type,
        cache_key=b"",
    )
    exchanger = TokenExchanger(egress_policy or EgressPolicy())
    try:
        return await exchanger.exchange(config, subject_token)
    finally:
        await exchanger.aclose()
        await exchanger._egress.aclose()
