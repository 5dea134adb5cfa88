"""Signing keys and tokens for tests, including the forgeries a validator must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from jwcrypto import jwk, jws

_GENERATE = {
    "RS256": {"kty": "RSA", "size": 2048},
    "PS256": {"kty": "RSA", "size": 2048},
    "ES256": {"kty": "EC", "crv": "P-256"},
    "ES384": {"kty": "EC", "crv": "P-384"},
    "EdDSA": {"kty": "OKP", "crv": "Ed25519"},
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    alg: str
    key: jwk.JWK
    publish_alg: bool = True  # False: the JWKS entry has no "alg" (as Entra ID publishes)

    @classmethod
    def generate(cls, alg: str, kid: str | None = None, publish_alg: bool = True) -> SigningKey:
        key = jwk.JWK.generate(kid=kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", **_GENERATE[alg])
        return cls(alg, key, publish_alg)

    @property
    def kid(self) -> str:
        return self.key.get("kid")

    def public_jwk(self) -> dict[str, Any]:
        public = json.loads(self.key.export_public())
        public["use"] = "sig"
        if self.publish_alg:
            public["alg"] = self.alg
        return public

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        protected = {"alg": self.alg, "kid": self.kid, "typ": "at+jwt", **header}
        protected = {k: v for k, v in protected.items() if v is not None}
        # jwcrypto refuses unknown critical headers; register them so a test can send one.
        registry = {name: jws.JWSEHeaderParameter(name, False, True, None) for name in protected.get("crit", [])}
        token = jws.JWS(json.dumps(claims).encode(), header_registry=registry or None)
        token.add_signature(self.key, alg=self.alg, protected=json.dumps(protected))
        return token.serialize(compact=True)

    def sign_raw(self, payload: bytes, **header: Any) -> str:
        """A signed token whose payload is these exact bytes (JSON no encoder would write)."""
        protected = {"alg": self.alg, "kid": self.kid, "typ": "at+jwt", **header}
        token = jws.JWS(payload)
        token.add_signature(self.key, alg=self.alg, protected=json.dumps(protected))
        return token.serialize(compact=True)


def raw_claims(issuer: str, audience: str, **literals: str) -> bytes:
    """The usual claims as JSON text, with some values replaced by raw JSON literals
    (`exp="1e400"`, `nbf="NaN"`)."""
    text = json.dumps(
        {name: 0 for name in literals} | {k: v for k, v in claims(issuer, audience).items() if k not in literals}
    )
    for name, literal in literals.items():
        text = text.replace(f'"{name}": 0', f'"{name}": {literal}', 1)
    return text.encode()


def nested_segment(depth: int) -> str:
    """A base64url JSON object nested `depth` levels deep: no key is needed to send it."""
    return b64url(('{"a":' + "[" * depth + "]" * depth + "}").encode())


def claims(
    issuer: str,
    audience: str | list[str],
    subject: str = "alice",
    scope: str = "",
    ttl: int = 300,
    **extra,
):
    now = int(time.time())
    base = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "exp": now + ttl,
        "client_id": "test-client",
    }
    if scope:
        base["scope"] = scope
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def unsigned_token(payload: dict[str, Any]) -> str:
    """alg none (RFC 7519 §6): must always be refused."""
    header = b64url(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    return f"{header}.{b64url(json.dumps(payload).encode())}."


def hs256_with_public_key(signing_key: SigningKey, payload: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HMAC keyed with the issuer's public key."""
    secret = signing_key.key.export_to_pem(private_key=False)
    header = b64url(json.dumps({"alg": "HS256", "kid": signing_key.kid}).encode())
    body = b64url(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(signature)}"
