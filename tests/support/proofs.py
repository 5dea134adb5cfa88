"""DPoP proofs (RFC 9449 §4.2) for tests: good ones, and every way of getting one wrong.

`proof()` signs with a real key; each keyword overrides (or, given None, removes) a
claim, and `header` overrides protected header members, so a test names exactly the
one thing it breaks.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from jwcrypto import jwk, jws

from authgate.check.tokens.dpop import token_hash

KEYS = {
    "ES256": jwk.JWK.generate(kty="EC", crv="P-256"),
    "EdDSA": jwk.JWK.generate(kty="OKP", crv="Ed25519"),
    "RS256": jwk.JWK.generate(kty="RSA", size=2048),
}


def proof(
    url: str,
    access_token: str,
    alg: str = "ES256",
    key: jwk.JWK | None = None,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    key = key or KEYS[alg]
    body: dict[str, Any] = {
        "htm": "GET",
        "htu": url,
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        "ath": token_hash(access_token),
    }
    body.update(claims)
    protected: dict[str, Any] = {"typ": "dpop+jwt", "alg": alg, "jwk": key.export_public(as_dict=True)}
    protected.update(header or {})
    signer = jws.JWS(json.dumps({name: value for name, value in body.items() if value is not None}))
    signer.add_signature(key, None, json.dumps({name: value for name, value in protected.items() if value is not None}))
    return signer.serialize(compact=True)
