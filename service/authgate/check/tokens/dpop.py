"""DPoP proofs (RFC 9449 §4.3) and stateless server nonces (§8, §9).

A proof is a compact JWS read by the same bounded parser and verified by the same code
as access tokens (`jws`), so it gets the same limits (size, depth, duplicate members,
`crit`) and the same asymmetric-only verification. What is DPoP-specific, and checked
here in this order: `typ` is `dpop+jwt`; `alg` is allowed by the policy and fits the
key; `jwk` is a public key (no private members); the signature; `htm` and `htu` name
the request (URLs compared in the canonical form of `urls`: RFC 3986 §6.2.2 to 6.2.3);
`iat` is recent; `ath` is the access token's hash; the server nonce when the policy
wants one; and last, once everything else passed, `jti` was not seen before on this
replica (`ReplayCache`: full, it refuses; it never forgets a live entry).

Hand-written rather than with jwcrypto's JWT class: the proof is verified on every
request, and jwcrypto's per-call header handling costs more than the signature (see
jws.py); the RFC 7638 thumbprint is a few lines, and the parsed key and its thumbprint
are cached by the key's members (a client signs its proofs with one key).

A nonce is `base64url(issued_at (8 bytes) || HMAC-SHA256(key, uid || issued_at)[:16])`
with a key derived from the sealing keys for the policy: any replica with the same
sealing keys accepts it within its lifetime, and it needs no storage at all, so a
client that is not authenticated yet may be handed one cheaply.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from authgate.caches import BoundedCache, ReplayCache
from authgate.check.tokens.jws import CompactJWS, VerificationKey, parse_compact, verification_key
from authgate.errors import ProofError, TargetError, TokenError
from authgate.policy.snapshot import CompiledDPoP
from authgate.urls import split_absolute_url

MAX_PROOF_BYTES = 8 * 1024
MAX_JTI_LENGTH = 256
NONCE_PURPOSE = "dpop-nonce"
NONCE_FUTURE_LEEWAY = 5  # seconds: replicas' clocks differ a little
_NONCE_MAC_BYTES = 16
# Members that make a JWK private (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 7638 §3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def token_hash(access_token: str) -> str:
    """`ath` (RFC 9449 §4.2): base64url of the SHA-256 of the token's ASCII bytes."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def _required_members(jwk_members: dict[str, Any]) -> tuple[str, ...]:
    """The values of the key type's RFC 7638 members, in the thumbprint's order."""
    names = _THUMBPRINT_MEMBERS.get(jwk_members.get("kty"))  # type: ignore[arg-type]
    if names is None:
        raise ProofError("proof key type not supported")
    values = tuple(jwk_members.get(name) for name in names)
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, str) or not value:
            raise ProofError(f"proof key has no {name}")
    return values


def thumbprint(jwk_members: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), from the key type's required members only."""
    names = _THUMBPRINT_MEMBERS.get(jwk_members.get("kty"))  # type: ignore[arg-type]
    values = _required_members(jwk_members)
    canonical = json.dumps(dict(zip(names, values, strict=True)), separators=(",", ":")).encode()  # names sorted
    return b64url(hashlib.sha256(canonical).digest())


@dataclass(frozen=True, slots=True)
class ProofTarget:
    """The request a proof must name: its method and its URL without query and fragment,
    in canonical form (scheme, normalized host, normalized path)."""

    method: str
    scheme: str
    host: str
    path: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"


@dataclass(frozen=True, slots=True)
class Proof:
    """A proof that passed every check but the replay check (`ProofVerifier.consume`)."""

    jkt: str  # RFC 7638 thumbprint of its key
    replay_key: bytes
    replay_deadline: float


class NonceCodec:
    """Stateless nonces: issue time and policy uid under an HMAC (see the module docstring)."""

    def __init__(self, keys: Callable[[str], Sequence[bytes]]) -> None:
        self._keys = keys  # policy uid → key bytes, the one that signs first

    @staticmethod
    def _mac(key: bytes, policy_uid: str, issued_at: bytes) -> bytes:
        return hmac.new(key, policy_uid.encode() + b"\0" + issued_at, hashlib.sha256).digest()[:_NONCE_MAC_BYTES]

    def issue(self, policy_uid: str, now: float) -> str:
        issued_at = struct.pack(">Q", int(now))
        return b64url(issued_at + self._mac(self._keys(policy_uid)[0], policy_uid, issued_at))

    def valid(self, nonce: object, policy_uid: str, lifetime: int, now: float) -> bool:
        if not isinstance(nonce, str) or len(nonce) != 32:
            return False
        try:
            raw = base64.urlsafe_b64decode(nonce + "==")
        except ValueError:
            return False
        if len(raw) != 8 + _NONCE_MAC_BYTES:
            return False
        issued_at, mac = raw[:8], raw[8:]
        issued = struct.unpack(">Q", issued_at)[0]
        if not now - lifetime <= issued <= now + NONCE_FUTURE_LEEWAY:
            return False
        return any(hmac.compare_digest(mac, self._mac(key, policy_uid, issued_at)) for key in self._keys(policy_uid))


def _public_key(
    header: dict[str, Any], keys: BoundedCache[tuple[str, ...], tuple[str, VerificationKey]]
) -> tuple[str, VerificationKey]:
    """(RFC 7638 thumbprint, verification key) of the proof's `jwk`; cached by the members
    the thumbprint covers, which are all the key is built from."""
    jwk_members = header.get("jwk")
    if not isinstance(jwk_members, dict):
        raise ProofError("proof header has no jwk")
    if _PRIVATE_MEMBERS.intersection(jwk_members):
        raise ProofError("proof jwk holds private key material")
    members = _required_members(jwk_members)
    found = keys.get(members, 0.0)
    if found is None:
        names = _THUMBPRINT_MEMBERS[jwk_members["kty"]]
        key = verification_key(dict(zip(names, members, strict=True)))
        if key is None:
            raise ProofError("proof jwk is not a usable public signature key")
        found = (thumbprint(jwk_members), key)
        keys.put(members, found, float("inf"))
    return found


class ProofVerifier:
    def __init__(
        self,
        nonces: NonceCodec,
        replay_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.nonces = nonces
        self.clock = clock
        self._seen: ReplayCache[bytes] = ReplayCache(replay_entries)
        self._keys: BoundedCache[tuple[str, ...], tuple[str, VerificationKey]] = BoundedCache(10_000)

    def verify(
        self, proof: str, access_token: str, target: ProofTarget, settings: CompiledDPoP, policy_uid: str, skew: int
    ) -> Proof:
        """Every check but the replay check; ProofError says which failed."""
        if len(proof) > MAX_PROOF_BYTES:
            raise ProofError("proof too large")
        try:
            jws: CompactJWS = parse_compact(proof)
        except TokenError as error:
            raise ProofError(error.reason.replace("token", "proof")) from None
        header, claims = jws.header, jws.payload
        if header.get("typ") != "dpop+jwt":
            raise ProofError("proof typ is not dpop+jwt")
        if jws.alg not in settings.algorithms:
            raise ProofError(f"proof algorithm {jws.alg} not allowed")
        jkt, key = _public_key(header, self._keys)
        if not key.usable_for(jws.alg):
            raise ProofError(f"proof algorithm {jws.alg} does not fit its key")
        if not key.verify(jws.alg, jws.signing_input, jws.signature):
            raise ProofError("proof signature verification failed")

        if claims.get("htm") != target.method:
            raise ProofError("proof htm is not the request method")
        htu = claims.get("htu")
        if not isinstance(htu, str):
            raise ProofError("proof has no htu")
        try:
            scheme, host, path = split_absolute_url(htu)
        except TargetError:
            raise ProofError("proof htu is not an http(s) URL") from None
        if (scheme, host, path) != (target.scheme, target.host, target.path):
            raise ProofError("proof htu is not the request URL")
        now = self.clock()
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int | float):
            raise ProofError("proof has no numeric iat")
        if not now - settings.proof_lifetime_seconds <= iat <= now + skew:  # False for NaN too
            raise ProofError("proof iat is outside the accepted window")
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(ath, token_hash(access_token)):
            raise ProofError("proof ath is not the access token's hash")
        if settings.nonce_lifetime_seconds is not None and not self.nonces.valid(
            claims.get("nonce"), policy_uid, settings.nonce_lifetime_seconds, now
        ):
            raise ProofError(
                "proof nonce missing or expired" if "nonce" not in claims else "proof nonce not accepted",
                "use_dpop_nonce",
            )
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise ProofError("proof has no usable jti")
        replay_key = hashlib.sha256(f"{jkt}\0{jti}".encode()).digest()
        return Proof(jkt, replay_key, float(iat) + settings.proof_lifetime_seconds + skew)

    def consume(self, proof: Proof) -> None:
        """The replay check, made last: the jti is remembered only for a proof that passed all
        else (so refused proofs cannot fill the cache)."""
        if not self._seen.add(proof.replay_key, proof.replay_deadline, self.clock()):
            raise ProofError(
                "proof jti was used before" if proof.replay_key in self._seen else "proof replay cache is full"
            )

    def fresh_nonce(self, policy_uid: str) -> str:
        return self.nonces.issue(policy_uid, self.clock())
