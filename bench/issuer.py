"""A static token issuer for the benchmarks: fresh keys, discovery and JWKS on 127.0.0.1.

Served by the tests' JWKS server (tests/infra/jwks_server.py, Uvicorn in a thread of
the bench process); it is asked only while authgate starts (discovery, JWKS), so it costs
nothing during the measured runs.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from jwcrypto import jws
from tests.infra.jwks_server import JwksServer
from tests.infra.keys import SigningKey

ALGORITHMS = ("RS256", "ES256", "EdDSA")


class StaticIssuer:
    """One signing key per algorithm. `issuer`, `jwks_uri`, `keys` (alg → SigningKey)."""

    def __init__(self) -> None:
        self.keys = {alg: SigningKey.generate(alg) for alg in ALGORITHMS}
        self.server = JwksServer(list(self.keys.values()))
        # as IdPs publish it; go-oidc (Authorino) accepts only RS256 without it
        self.server.discovery_extra = {"id_token_signing_alg_values_supported": list(ALGORITHMS)}
        self.issuer = self.server.issuer
        self.jwks_uri = self.server.jwks_uri

    def public_jwk(self, alg: str) -> dict[str, Any]:
        return self.keys[alg].public_jwk()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk(alg) for alg in ALGORITHMS]}

    def token(
        self, alg: str, audience: str, scope: str, subject: str = "bench-user", ttl: int = 3600, **extra: Any
    ) -> str:
        """An RFC 9068 access token (typ at+jwt) like an IdP issues it."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "sub": subject,
            "client_id": "bench-client",
            "scope": scope,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            **extra,
        }
        key = self.keys[alg]
        # Compact JSON (not SigningKey.sign's), as IdPs send it: the token's size is part of what is measured.
        signed = jws.JWS(json.dumps(claims, separators=(",", ":")).encode())
        signed.add_signature(key.key, alg=alg, protected=json.dumps({"alg": alg, "kid": key.kid, "typ": "at+jwt"}))
        return signed.serialize(compact=True)

    def start(self) -> StaticIssuer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> StaticIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


RESOURCE = "https://bench.example.com/mcp"
CHECK_URL = "https://bench.example.com/mcp/tools"
SCOPE = "mcp:read mcp:write"


def policy_yaml(issuer: str) -> str:
    """A realistic policy: discovery (no jwksUri), typ and sub required, scope → role, two rules."""
    return f"""\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {{name: bench, namespace: default}}
spec:
  resource: {RESOURCE}
  issuers:
    - issuer: {issuer}
      requireTyp: at+jwt
      requiredClaims: [sub]
  scopeRoles:
    - {{scope: mcp:read, role: reader}}
  claimRoles:
    - {{claim: realm_access.roles, value: admin, role: admin}}
  rules:
    - {{pathPrefix: /mcp/health, anonymous: true}}
    - {{pathPrefix: /mcp, requireScopes: [mcp:read], requireRoles: [reader, admin]}}
"""
