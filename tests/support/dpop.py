"""DPoP proofs (RFC 9449) for tests, good ones and every forgery a resource server must
refuse, and the certificate thumbprints of RFC 8705.

    key = ProofKey.generate("ES256")                       # or "EdDSA", "RS256"
    proof = key.proof("GET", "https://mcp.example.com/mcp", access_token=token)
    headers = dpop_headers(token, proof)                  # Authorization: DPoP ..., DPoP: ...

    key.proof("GET", url, access_token=token, iat=time.time() - 600)     # stale
    key.proof("GET", url, access_token=token, header_alg="HS256")        # symmetric
    key.proof("GET", url, access_token=token, private_jwk=True)          # d, p, q... in jwk

The JWS is assembled here by hand with `cryptography`, not with jwcrypto: the forgeries
need what a JOSE library refuses to write (an `alg` that does not fit the key, `none`,
private members in the header's `jwk`). jwcrypto only exports the JWKs and computes the
RFC 7638 thumbprint. Every proof joins `MINTED_TOKENS`, so the leak check also looks for
proofs in the logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwcrypto import jwk
from tests.support.leaks import MINTED_TOKENS

# The algorithms a ProofKey is made for (one key type each: EC P-256, Ed25519, RSA).
PROOF_ALGORITHMS = ("ES256", "EdDSA", "RS256")

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_token_hash(access_token: str) -> str:
    """`ath`: base64url(SHA-256(the access token's ASCII)), RFC 9449 §4.2."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def _generate(alg: str) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"no proof key for {alg}")


def _sign(key: PrivateKey, signing_input: bytes) -> bytes:
    """The signature `key` makes in its own algorithm (ES256, EdDSA or RS256)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(signing_input)
    return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


@dataclass
class ProofKey:
    """A client's DPoP key. `jwk`: the public JWK a proof carries; `thumbprint`: its RFC 7638
    SHA-256 thumbprint, the `cnf.jkt` of the tokens bound to it."""

    alg: str
    private_key: PrivateKey
    jwk: dict[str, Any] = field(init=False)
    private_jwk: dict[str, Any] = field(init=False)
    thumbprint: str = field(init=False)

    def __post_init__(self) -> None:
        as_jwk = jwk.JWK.from_pyca(self.private_key)
        self.jwk = as_jwk.export_public(as_dict=True)
        self.private_jwk = as_jwk.export_private(as_dict=True)
        self.thumbprint = as_jwk.thumbprint()

    @classmethod
    def generate(cls, alg: str) -> ProofKey:
        return cls(alg, _generate(alg))

    def proof(
        self,
        htm: str,
        htu: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
        ath: str | None = None,
        typ: str | None = "dpop+jwt",
        header_alg: str | None = None,
        header_jwk: dict[str, Any] | None = None,
        private_jwk: bool = False,
        omit: tuple[str, ...] = (),
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """A proof for `htm` `htu`, `ath` of `access_token` (if given). Knobs for the
        forgeries: `iat` (default now), `jti` (default fresh), `ath` (overrides),
        `typ` (None: left out), `header_alg` (the `alg` written in the header, default
        the key's; "none" leaves the signature empty, "HS256" MACs with the public JWK's
        JSON as the secret), `header_jwk` (another key's JWK), `private_jwk` (the key's
        private members in `jwk`), `omit` (claims to leave out), `extra_claims`."""
        alg = header_alg or self.alg
        header: dict[str, Any] = {
            "typ": typ,
            "alg": alg,
            "jwk": header_jwk or (self.private_jwk if private_jwk else self.jwk),
        }
        header = {k: v for k, v in header.items() if v is not None}
        claims: dict[str, Any] = {
            "jti": jti or uuid.uuid4().hex,
            "htm": htm,
            "htu": htu,
            "iat": int(time.time() if iat is None else iat),
        }
        if ath is not None:
            claims["ath"] = ath
        elif access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(extra_claims or {})
        claims = {k: v for k, v in claims.items() if k not in omit}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}".encode()
        if alg == "none":
            signature = b""
        elif alg.startswith("HS"):
            signature = hmac.new(json.dumps(self.jwk).encode(), signing_input, hashlib.sha256).digest()
        else:
            signature = _sign(self.private_key, signing_input)
        proof = f"{signing_input.decode()}.{b64url(signature)}"
        MINTED_TOKENS.add(proof)
        return proof


def dpop_headers(access_token: str, proof: str | None) -> list[tuple[str, str]]:
    """`Authorization: DPoP <token>` and (unless None) `DPoP: <proof>`."""
    headers = [("Authorization", f"DPoP {access_token}")]
    if proof is not None:
        headers.append(("DPoP", proof))
    return headers


def certificate_thumbprint(certificate: Path | bytes) -> str:
    """`x5t#S256` (RFC 8705 §3.1): base64url(SHA-256(DER)) of a PEM file or PEM bytes."""
    pem = certificate.read_bytes() if isinstance(certificate, Path) else certificate
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return b64url(hashlib.sha256(der).digest())


def certificate_hex_hash(certificate: Path) -> str:
    """The certificate's SHA-256 in hex, as Envoy writes `Hash=` in x-forwarded-client-cert."""
    der = x509.load_pem_x509_certificate(certificate.read_bytes()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()
