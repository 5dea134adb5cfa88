"""Compact JWS parsing and signature verification for asymmetric algorithms.

Keys are parsed and checked with jwcrypto (JWK import, key types, curves). The
per-token verification uses each key's `cryptography` object directly: jwcrypto's
`JWS()` deep-copies its header registry on every call, which costs more than the
signature check itself (see bench/). The signing input and algorithm handling
below are RFC 7515 §5.2 and RFC 7518 §3 / RFC 8037 §3.1, nothing more.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwcrypto import jwk

from authgate import bounded_json
from authgate.errors import TokenError

MAX_TOKEN_BYTES = 16 * 1024
MIN_RSA_BITS = 2048

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_EC_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}
# Padding and signature-algorithm objects, built once: constructing them per token costs
# about as much as an RS256 verification.
_RSA_PADDING = {
    **{f"RS{bits}": (padding.PKCS1v15(), hash_()) for bits, hash_ in _HASHES.items()},
    **{
        f"PS{bits}": (padding.PSS(mgf=padding.MGF1(hash_()), salt_length=hash_.digest_size), hash_())
        for bits, hash_ in _HASHES.items()
    },
}
_ECDSA = {f"ES{bits}": ec.ECDSA(hash_()) for bits, hash_ in _HASHES.items()}


def b64url_decode(segment: str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2)."""
    if "=" in segment:
        raise ValueError("padding")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64url") from None


@dataclass(frozen=True)
class CompactJWS:
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return self.header["alg"]

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        decoded = b64url_decode(segment)
    except ValueError:
        raise TokenError(f"malformed token: {what} is not base64url") from None
    try:
        return bounded_json.read_object(decoded, MAX_TOKEN_BYTES, unique_members=True)
    except bounded_json.JSONInputError as error:
        raise TokenError(f"malformed token: {what} is {error}") from None


def parse_compact(token: str) -> CompactJWS:
    """Split and decode a compact JWS carrying a JSON claims set. No signature check yet."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError("token too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed token: not a compact JWS")
    header = _json_object(parts[0], "header")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise TokenError("malformed token: no alg")
    if "crit" in header:  # RFC 7515 §4.1.11: we understand no extensions, so we must refuse
        raise TokenError("unsupported critical header")
    if "kid" in header and not isinstance(header["kid"], str):
        raise TokenError("malformed token: kid is not a string")
    payload = _json_object(parts[1], "payload")
    try:
        signature = b64url_decode(parts[2])
    except ValueError:
        raise TokenError("malformed token: signature is not base64url") from None
    return CompactJWS(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


@dataclass(frozen=True)
class VerificationKey:
    """One public key of a JWKS, ready to verify: its kid, what it may sign, its crypto object."""

    kid: str | None
    alg: str | None  # from the JWK, or None: then any allowed algorithm that fits the key type
    fits: frozenset[str]  # algorithms this key type can verify
    public_key: Any = field(repr=False)

    def usable_for(self, alg: str) -> bool:
        return alg in self.fits and (self.alg is None or self.alg == alg)

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        key = self.public_key
        try:
            if alg in _RSA_PADDING:
                pad, digest = _RSA_PADDING[alg]
                key.verify(signature, signing_input, pad, digest)
            elif alg in _ECDSA:
                size = _EC_SIZES[alg]
                if len(signature) != 2 * size:
                    return False
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                key.verify(encode_dss_signature(r, s), signing_input, _ECDSA[alg])
            elif alg == "EdDSA":
                key.verify(signature, signing_input)
            else:
                return False
        except InvalidSignature:
            return False
        return True


def _fitting_algorithms(public_key: Any) -> frozenset[str]:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            return frozenset()
        return frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        alg = by_curve.get(public_key.curve.name)
        return frozenset({alg}) if alg else frozenset()
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    return frozenset()


def verification_key(jwk_dict: dict[str, Any]) -> VerificationKey | None:
    """A usable signature key from one JWKS entry, or None (encryption keys, symmetric
    keys, private-only material, unknown types and weak RSA keys are skipped)."""
    if jwk_dict.get("use") not in (None, "sig"):
        return None
    ops = jwk_dict.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    if jwk_dict.get("kty") not in ("RSA", "EC", "OKP"):
        return None  # never "oct": a symmetric key in a JWKS would enable HS* forgery
    try:
        key = jwk.JWK(**jwk_dict)
        public_key = key.get_op_key("verify")
    except Exception:
        return None
    alg = jwk_dict.get("alg")
    if alg is not None and not isinstance(alg, str):
        return None
    kid = jwk_dict.get("kid")
    fits = _fitting_algorithms(public_key)
    if not fits or (alg is not None and alg not in fits):
        return None
    return VerificationKey(kid if isinstance(kid, str) else None, alg, fits, public_key)
