"""Access-token validation: JWS signature with the issuer's keys, then the claims.

Checks, in order: compact form, trusted `iss` (exact), allowed asymmetric `alg`,
optional `typ` (RFC 9068 §4), signature, `exp`/`nbf`/`iat` with the entry's leeway,
`aud` (RFC 8707: must contain one of the entry's audiences), required claims, and a
`cnf` that names only bindings authgate checks (`jkt`, RFC 9449; `x5t#S256`, RFC 8705),
which check/sender.py then holds the request to.
Verified tokens are cached per policy issuer list (`CompiledPolicy.token_cache_key`, one
lookup per check) until (at most) their `exp`.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from authgate.caches import BoundedCache, Interned
from authgate.check.tokens.introspection import NEGATIVE_TTL, POSITIVE_TTL, introspect
from authgate.check.tokens.jwks import KeyStore
from authgate.check.tokens.jws import parse_compact
from authgate.check.tokens.verified_cache import VerifiedTokenCache
from authgate.errors import TokenError
from authgate.outbound.egress import EgressClient
from authgate.policy.compile import normalize_audience
from authgate.policy.snapshot import CompiledIssuer, CompiledPolicy


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What a later check needs of a verified token, and nothing more: one is kept per
    cached token, so it is small (slots; scope sets and client ids shared between tokens;
    of the claims only those its policy reads, `CompiledIssuer.claims_read`)."""

    issuer: CompiledIssuer = field(repr=False)
    claims: dict[str, Any] = field(repr=False)
    scopes: frozenset[str]
    subject: str | None
    client_id: str | None
    expires_at: float
    verified_at: float = 0.0  # when authgate verified it (the verified-token cache's TTL runs from it)
    introspected: bool = False  # an RFC 7662 answer, not a signature checked with the issuer's keys
    jkt: str | None = None  # cnf.jkt: bound to a DPoP key (RFC 9449 §6)
    x5t: str | None = None  # cnf.x5t#S256: bound to a client certificate (RFC 8705 §3.1)


_CONFIRMATIONS = frozenset({"jkt", "x5t#S256"})


def confirmation(claims: dict[str, Any]) -> tuple[str | None, str | None]:
    """(`cnf.jkt`, `cnf.x5t#S256`) of a token; TokenError for any `cnf` authgate cannot
    check (another confirmation method, a malformed one): a binding is never ignored."""
    cnf = claims.get("cnf")
    if cnf is None:
        return None, None
    if not isinstance(cnf, dict) or not cnf or not _CONFIRMATIONS.issuperset(cnf):
        raise TokenError("token cnf holds a confirmation method authgate cannot check")
    jkt, x5t = cnf.get("jkt"), cnf.get("x5t#S256")
    for value in (jkt, x5t):
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 128):
            raise TokenError("token cnf is malformed")
    return jkt, x5t


# A NumericDate (RFC 7519 §2) outside 1970..9999 is no date any issuer means; bounding it
# also keeps huge integers from ever reaching float arithmetic.
MAX_NUMERIC_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"claim {name} is not a number")
    if not 0 <= value <= MAX_NUMERIC_DATE:  # False for NaN too
        raise TokenError(f"claim {name} is not a date between 1970 and 9999")
    return float(value)


def token_scopes(claims: dict[str, Any]) -> frozenset[str]:
    """Scopes from `scope` (RFC 9068 §2.2.3, space separated) and `scp` (string or array).
    Equal sets are one shared object (tokens of one client carry the same scopes)."""
    scope = claims.get("scope")
    scp = claims.get("scp")
    scope_text = scope if isinstance(scope, str) else ""
    if isinstance(scp, str):
        scope_text = f"{scope_text} {scp}"
    elif isinstance(scp, list):
        scope_text = " ".join([scope_text, *(item for item in scp if isinstance(item, str))])
    return _scope_set(scope_text)


@functools.lru_cache(maxsize=1024)
def _scope_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NO_CLAIMS: dict[str, Any] = {}  # shared by every token whose policy reads no claim (never mutated)
# Expiry and verification times, rounded down to their second, as one float object per
# second: the cache entries of the tokens of one second share them (24 bytes each, twice
# per entry, at 100,000 entries).
_seconds: Interned[float] = Interned()


def _shared_second(value: float) -> float:
    return _seconds(float(int(value)))


def _kept_claims(claims: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    if not names:
        return _NO_CLAIMS
    return {name: claims[name] for name in names if name in claims}


def check_claims(claims: dict[str, Any], entry: CompiledIssuer, now: float, require_exp: bool = True) -> float:
    """Validate the time, audience and required claims; returns `exp` (inf when absent and
    not required: an introspection answer may omit it)."""
    leeway = entry.clock_skew_seconds
    exp = _number(claims, "exp")
    if exp is None:
        if require_exp:
            raise TokenError("token has no exp")
        exp = float("inf")
    if now > exp + leeway:
        raise TokenError("token expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and now + leeway < nbf:
        raise TokenError("token not yet valid")
    iat = _number(claims, "iat")
    if iat is not None and now + leeway < iat:
        raise TokenError("token issued in the future")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(
        isinstance(a, str) and (a in entry.audiences or normalize_audience(a) in entry.audiences) for a in audiences
    ):
        raise TokenError("audience not accepted")
    for name in entry.required_claims:
        if claims.get(name) is None:
            raise TokenError(f"required claim {name} missing")
    return exp


def _typ_matches(header: dict[str, Any], required: str) -> bool:
    typ = header.get("typ")
    if not isinstance(typ, str):
        return False
    typ = typ.lower()
    wanted = required.lower().removeprefix("application/")
    return typ.removeprefix("application/") == wanted


class TokenValidator:
    def __init__(
        self,
        keys: KeyStore,
        cache: VerifiedTokenCache[VerifiedToken] | None = None,
        clock: Callable[[], float] = time.time,
        egress: EgressClient | None = None,
    ) -> None:
        self.keys = keys
        self.cache: VerifiedTokenCache[VerifiedToken] = cache if cache is not None else VerifiedTokenCache()
        self.clock = clock
        self.egress = egress  # for RFC 7662 introspection of opaque tokens
        self._inactive: BoundedCache[tuple[bytes, bytes], bool] = BoundedCache(10_000)  # RFC 7662 "active": false

    def _verified(self, entry: CompiledIssuer, claims: dict[str, Any], exp: float, now: float) -> VerifiedToken:
        subject = claims.get("sub")
        client_id = claims.get("client_id", claims.get("azp"))
        jkt, x5t = confirmation(claims)
        return VerifiedToken(
            issuer=entry,
            claims=_kept_claims(claims, entry.claims_read),
            scopes=token_scopes(claims),
            subject=subject if isinstance(subject, str) else None,
            client_id=sys.intern(client_id) if isinstance(client_id, str) else None,
            expires_at=_shared_second(exp) if exp != float("inf") else exp,
            verified_at=_shared_second(now),  # (earlier by < 1 s: the TTL can only end sooner)
            jkt=jkt,
            x5t=x5t,
        )

    async def _introspected(self, token: str, digest: bytes, policy: CompiledPolicy, now: float) -> VerifiedToken:
        """An opaque token: asked only of the issuer entries that declare introspection."""
        entries = [entry for entry in policy.issuers if entry.introspection is not None]
        if not entries or self.egress is None:
            raise TokenError("malformed token: not a compact JWS")
        for entry in entries:
            if self._inactive.get((entry.cache_key, digest), now):
                continue
            answer = await introspect(self.egress, entry, token)
            if answer.get("active") is not True:
                self._inactive.put((entry.cache_key, digest), True, now + NEGATIVE_TTL)
                continue
            if "iss" in answer and answer["iss"] != entry.issuer:
                raise TokenError("introspection names another issuer")
            exp = check_claims(answer, entry, now, require_exp=False)
            verified = replace(self._verified(entry, answer, min(exp, now + POSITIVE_TTL), now), introspected=True)
            self.cache.put(policy.token_cache_key, digest, verified, now)
            return verified
        raise TokenError("token is not active")

    async def validate(self, token: str, policy: CompiledPolicy) -> VerifiedToken:
        now = self.clock()
        digest = hashlib.sha256(token.encode()).digest()
        cached = self.cache.get(policy.token_cache_key, digest, now)
        if cached is not None and (cached.introspected or self.keys.usable(cached.issuer.key_source)):
            # (an issuer that failed closed, its keys stale past the limit, fails closed
            # for the tokens verified before too: they are checked again, and get 503)
            return cached

        if token.count(".") != 2:
            return await self._introspected(token, digest, policy, now)
        jws = parse_compact(token)
        claims = jws.payload
        issuer = claims.get("iss")
        entry = policy.issuer_for(issuer) if isinstance(issuer, str) else None
        if entry is None:
            raise TokenError("issuer not trusted by this policy")
        if jws.alg not in entry.algorithms:
            raise TokenError(f"algorithm {jws.alg} not allowed")
        if entry.require_typ is not None and not _typ_matches(jws.header, entry.require_typ):
            raise TokenError(f"token typ is not {entry.require_typ}")
        candidates = await self.keys.get(entry.key_source).keys_for(jws.kid, jws.alg)
        if not any(key.verify(jws.alg, jws.signing_input, jws.signature) for key in candidates[:4]):
            raise TokenError("signature verification failed")
        exp = check_claims(claims, entry, now)
        verified = self._verified(entry, claims, exp, now)
        self.cache.put(policy.token_cache_key, digest, verified, now)
        return verified
