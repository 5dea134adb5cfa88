"""A static token issuer for the benchmarks: fresh keys, discovery and JWKS on 127.0.0.1.

Served by Uvicorn in a thread of the bench process; it is asked only while authgate
starts (discovery, JWKS), so it costs nothing during the measured runs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from typing import Any

import uvicorn
from jwcrypto import jwk, jws
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

ALGORITHMS = ("RS256", "ES256", "EdDSA")
_GENERATE = {
    "RS256": {"kty": "RSA", "size": 2048},
    "ES256": {"kty": "EC", "crv": "P-256"},
    "EdDSA": {"kty": "OKP", "crv": "Ed25519"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StaticIssuer:
    """One signing key per algorithm. `issuer`, `jwks_uri`, `keys` (alg → private JWK)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.jwks_uri = f"{self.issuer}/jwks"
        self.keys = {
            alg: jwk.JWK.generate(kid=f"{alg.lower()}-{uuid.uuid4().hex[:8]}", **_GENERATE[alg]) for alg in ALGORITHMS
        }
        self.fetches = 0
        routes = [
            Route("/.well-known/openid-configuration", self._discovery),
            Route("/jwks", self._jwks),
        ]
        config = uvicorn.Config(
            Starlette(routes=routes),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="bench-issuer")

    def public_jwk(self, alg: str) -> dict[str, Any]:
        public = json.loads(self.keys[alg].export_public())
        return {**public, "use": "sig", "alg": alg}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk(alg) for alg in ALGORITHMS]}

    async def _discovery(self, request) -> JSONResponse:
        return JSONResponse({"issuer": self.issuer, "jwks_uri": self.jwks_uri})

    async def _jwks(self, request) -> JSONResponse:
        self.fetches += 1
        return JSONResponse(self.jwks())

    def token(self, alg: str, audience: str, scope: str, subject: str = "bench-user", ttl: int = 3600) -> str:
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
        }
        key = self.keys[alg]
        signed = jws.JWS(json.dumps(claims, separators=(",", ":")).encode())
        signed.add_signature(key, alg=alg, protected=json.dumps({"alg": alg, "kid": key.get("kid"), "typ": "at+jwt"}))
        return signed.serialize(compact=True)

    def start(self) -> StaticIssuer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("bench issuer did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)

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
