"""DPoP proof verification (RFC 9449 §4.3) and stateless nonces, with real keys and signatures."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time

import pytest
from jwcrypto import jwk, jws
from tests.support.proofs import KEYS
from tests.support.proofs import proof as make_proof

from authgate.check.tokens.dpop import NonceCodec, ProofTarget, ProofVerifier, thumbprint, token_hash
from authgate.errors import ProofError
from authgate.policy.model import ASYMMETRIC_ALGORITHMS
from authgate.policy.snapshot import CompiledDPoP
from authgate.sealing import SealingKeys

ACCESS_TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
TARGET = ProofTarget("GET", "https", "api.example.com", "/mcp/tools")
SETTINGS = CompiledDPoP(frozenset(ASYMMETRIC_ALGORITHMS), 60, None, accepted=True, required=False)
WITH_NONCE = CompiledDPoP(frozenset(ASYMMETRIC_ALGORITHMS), 60, 300, accepted=True, required=False)
SHARED = SealingKeys.ephemeral()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def proof(alg: str = "ES256", key: jwk.JWK | None = None, header: dict | None = None, **claims) -> str:
    return make_proof(TARGET.url, ACCESS_TOKEN, alg, key, header, **claims)


def verifier(keys: SealingKeys = SHARED, clock=time.time, entries: int = 1000) -> ProofVerifier:
    return ProofVerifier(NonceCodec(lambda uid: keys.derived_keys("dpop-nonce", uid)), entries, clock)


def verify(value: str, proofs: ProofVerifier | None = None, settings=SETTINGS, uid="uid-1", target=TARGET):
    proofs = proofs or verifier()
    checked = proofs.verify(value, ACCESS_TOKEN, target, settings, uid, 5)
    proofs.consume(checked)
    return checked


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_a_good_proof_gives_the_rfc7638_thumbprint_of_its_key(alg):
    checked = verify(proof(alg))
    assert checked.jkt == KEYS[alg].thumbprint()  # jwcrypto's own RFC 7638 implementation


@pytest.mark.parametrize(
    "htu",
    [
        "HTTPS://API.EXAMPLE.COM/mcp/tools",
        "https://api.example.com:443/mcp/tools",
        "https://api.example.com/mcp/./x/../tools",
        "https://api.example.com/%6Dcp/tools",
        "https://api.example.com/mcp/tools?x=1#frag",  # query and fragment are ignored (§4.3 item 9)
    ],
)
def test_htu_is_compared_in_canonical_form(htu):
    verify(proof(htu=htu))


def test_an_empty_path_is_the_root():
    verify(proof(htu="https://api.example.com"), target=ProofTarget("GET", "https", "api.example.com", "/"))


EC_PRIVATE = KEYS["ES256"].export_private(as_dict=True)
HS_KEY = jwk.JWK.generate(kty="oct", size=256)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: proof(header={"typ": "JWT"}), "typ is not dpop+jwt"),
        (lambda: proof(header={"typ": None}), "typ is not dpop+jwt"),
        (lambda: proof(header={"jwk": None}), "no jwk"),
        (lambda: proof(header={"jwk": EC_PRIVATE}), "private key material"),
        (lambda: proof(header={"jwk": {**KEYS["ES256"].export_public(as_dict=True), "k": "AAAA"}}), "private"),
        (lambda: proof(header={"jwk": {"kty": "oct", "k": "c2VjcmV0"}}), "private key material"),
        (lambda: proof(header={"jwk": {"kty": "EC", "crv": "P-256"}}), "no x"),
        (lambda: proof(htm="POST"), "htm"),
        (lambda: proof(htm=None), "htm"),
        (lambda: proof(htu="https://other.example.com/mcp/tools"), "htu is not the request URL"),
        (lambda: proof(htu="http://api.example.com/mcp/tools"), "htu is not the request URL"),
        (lambda: proof(htu="https://api.example.com:8443/mcp/tools"), "htu is not the request URL"),
        (lambda: proof(htu="https://api.example.com/mcp/other"), "htu is not the request URL"),
        (lambda: proof(htu="https://api.example.com/mcp/other?/mcp/tools"), "htu is not the request URL"),
        (lambda: proof(htu="https://api.example.com/mcp/tools/"), "htu is not the request URL"),
        (lambda: proof(htu="https://api.example.com@evil.example/mcp/tools"), "not an http(s) URL"),
        (lambda: proof(htu="/mcp/tools"), "not an http(s) URL"),
        (lambda: proof(htu=None), "no htu"),
        (lambda: proof(iat=int(time.time()) - 120), "iat is outside"),
        (lambda: proof(iat=int(time.time()) + 60), "iat is outside"),
        (lambda: proof(iat="now"), "numeric iat"),
        (lambda: proof(iat=None), "numeric iat"),
        (lambda: proof(ath=token_hash("another.token.x")), "ath"),
        (lambda: proof(ath=None), "ath"),
        (lambda: proof(jti=None), "jti"),
        (lambda: proof(jti="x" * 300), "jti"),
    ],
)
def test_bad_proofs_are_refused(make, reason):
    with pytest.raises(ProofError, match=re.escape(reason)) as refused:
        verify(make())
    assert refused.value.error == "invalid_dpop_proof"


def test_symmetric_and_none_algorithms_are_never_accepted():
    signer = jws.JWS(json.dumps({"htm": "GET", "htu": TARGET.url, "iat": int(time.time()), "jti": "1"}))
    signer.add_signature(HS_KEY, None, json.dumps({"typ": "dpop+jwt", "alg": "HS256"}))
    with pytest.raises(ProofError, match="algorithm HS256 not allowed"):
        verify(signer.serialize(compact=True))
    header = b64(
        json.dumps({"typ": "dpop+jwt", "alg": "none", "jwk": KEYS["ES256"].export_public(as_dict=True)}).encode()
    )
    with pytest.raises(ProofError, match="algorithm none not allowed"):
        verify(f"{header}.{b64(b'{}')}.")


def test_the_algorithm_must_fit_the_key_and_the_allowlist():
    p384 = jwk.JWK.generate(kty="EC", crv="P-384")
    forged = proof("ES384", key=p384, header={"jwk": KEYS["ES256"].export_public(as_dict=True)})
    with pytest.raises(ProofError, match="does not fit its key"):
        verify(forged)
    only_eddsa = CompiledDPoP(frozenset({"EdDSA"}), 60, None, accepted=True, required=False)
    with pytest.raises(ProofError, match="ES256 not allowed"):
        verify(proof("ES256"), settings=only_eddsa)


def test_a_signature_by_another_key_fails():
    other = jwk.JWK.generate(kty="EC", crv="P-256")
    with pytest.raises(ProofError, match="signature"):
        verify(proof(key=other, header={"jwk": KEYS["ES256"].export_public(as_dict=True)}))


def test_a_jti_is_accepted_once_and_only_after_every_other_check():
    proofs = verifier()
    same_jti = proof(jti="one-time")
    with pytest.raises(ProofError, match="htm"):
        verify(proof(jti="one-time", htm="PUT"), proofs)  # refused: not remembered
    verify(same_jti, proofs)
    with pytest.raises(ProofError, match="used before"):
        verify(same_jti, proofs)


def test_a_full_replay_cache_refuses_rather_than_forgets():
    proofs = verifier(entries=2)
    first = proof()
    verify(first, proofs)
    verify(proof(), proofs)
    with pytest.raises(ProofError, match="replay cache is full"):
        verify(proof(), proofs)
    with pytest.raises(ProofError, match="used before"):
        verify(first, proofs)  # still remembered


def test_replay_entries_expire_with_the_window():
    now = [time.time()]
    proofs = verifier(clock=lambda: now[0], entries=1)
    verify(proof(iat=int(now[0])), proofs)
    now[0] += 66  # past iat + lifetime + skew
    verify(proof(iat=int(now[0])), proofs)


# -- nonces ------------------------------------------------------------------------------------
def test_a_nonce_policy_refuses_a_proof_without_one_with_use_dpop_nonce():
    with pytest.raises(ProofError) as refused:
        verify(proof(), settings=WITH_NONCE)
    assert refused.value.error == "use_dpop_nonce"


def test_any_replica_with_the_same_sealing_keys_accepts_a_nonce():
    issued = verifier().fresh_nonce("uid-1")
    verify(proof(nonce=issued), verifier(), settings=WITH_NONCE)  # another replica: its own caches


@pytest.mark.parametrize(
    "nonce",
    [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # forged
        "not-a-nonce",
        "",
        7,
    ],
)
def test_forged_nonces_are_refused(nonce):
    with pytest.raises(ProofError) as refused:
        verify(proof(nonce=nonce), settings=WITH_NONCE)
    assert refused.value.error == "use_dpop_nonce"


def test_a_nonce_of_another_policy_or_other_keys_or_expired_is_refused():
    other_policy = verifier().fresh_nonce("uid-2")
    other_keys = verifier(SealingKeys.ephemeral()).fresh_nonce("uid-1")
    expired = verifier(clock=lambda: time.time() - 301).fresh_nonce("uid-1")
    for nonce in (other_policy, other_keys, expired):
        with pytest.raises(ProofError) as refused:
            verify(proof(nonce=nonce), settings=WITH_NONCE)
        assert refused.value.error == "use_dpop_nonce"


def test_a_nonce_survives_a_key_rotation():
    old = SealingKeys.parse({"keys": [{"kty": "oct", "kid": "a", "k": b64(b"a" * 32)}]})
    rotated = SealingKeys.parse(
        {"keys": [{"kty": "oct", "kid": "a", "k": b64(b"a" * 32)}, {"kty": "oct", "kid": "b", "k": b64(b"b" * 32)}]}
    )
    verify(proof(nonce=verifier(old).fresh_nonce("uid-1")), verifier(rotated), settings=WITH_NONCE)


def test_thumbprint_matches_rfc7638_example():
    # RFC 7638 §3.1
    key = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjB"
            "ZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8"
            "KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_"
            "xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_token_hash_is_base64url_sha256():
    assert token_hash("abc") == b64(hashlib.sha256(b"abc").digest())
