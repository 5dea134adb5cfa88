"""Token validation and the JWKS cache, against a real issuer server on 127.0.0.1."""

import asyncio
import time

import pytest
from tests.infra.jwks_server import JwksServer
from tests.infra.keys import (
    SigningKey,
    b64url,
    claims,
    hs256_with_public_key,
    nested_segment,
    raw_claims,
    unsigned_token,
)

from authgate import metrics
from authgate.check.tokens.jwks import JwksSettings
from authgate.errors import KeysUnavailable, TokenError
from authgate.outbound.egress import EgressPolicy
from authgate.policy import ValidationSettings, compile_document
from authgate.server.service import AuthService, ServiceSettings

AUDIENCE = "https://api.example.com/mcp"
LOCAL = EgressPolicy(allow=("127.0.0.1",), insecure_http=True)


def snapshot(issuer_url: str, generation: int = 1, name: str = "api", audiences=None, **issuer_fields):
    entry = {"issuer": issuer_url, **issuer_fields}
    if audiences:
        entry["audiences"] = audiences
    policy = {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"resource": AUDIENCE, "issuers": [entry]},
    }
    document = {"formatVersion": 1, "generation": generation, "policies": [policy], "secrets": []}
    return compile_document(document, ValidationSettings(insecure_http=True))


async def service_for(issuer_url: str, jwks: JwksSettings | None = None, **issuer_fields):
    service = AuthService(ServiceSettings(egress=LOCAL, jwks=jwks or JwksSettings(tick=0.05)))
    service.load(snapshot(issuer_url, **issuer_fields))
    await service.start()
    return service


async def validate(service, token):
    return await service.validator.validate(token, service.snapshot.policies[0])


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA", "PS256"])
async def test_valid_tokens_of_every_asymmetric_family(issuer, mint, alg):
    service = await service_for(issuer.issuer)
    try:
        verified = await validate(service, mint(alg, scope="mcp:read mcp:write"))
        assert verified.subject == "alice"
        assert verified.scopes == {"mcp:read", "mcp:write"}
        assert verified.client_id == "test-client"
    finally:
        await service.stop()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda m, k, i: unsigned_token(claims(i, AUDIENCE)), "algorithm none not allowed"),
        (lambda m, k, i: hs256_with_public_key(k["RS256"], claims(i, AUDIENCE)), "algorithm HS256 not allowed"),
        (lambda m, k, i: m("ES256", iss="https://evil.example.com"), "issuer not trusted"),
        (lambda m, k, i: m("ES256", iss=i + "/"), "issuer not trusted"),
        (lambda m, k, i: m("ES256", audience="https://other.example.com"), "audience not accepted"),
        (lambda m, k, i: m("ES256", audience=["https://other.example.com", "x"]), "audience not accepted"),
        (lambda m, k, i: m("ES256", ttl=-120), "token expired"),
        (lambda m, k, i: m("ES256", nbf=int(time.time()) + 600), "not yet valid"),
        (lambda m, k, i: m("ES256", iat=int(time.time()) + 600), "issued in the future"),
        (lambda m, k, i: m("ES256", exp=None), "no exp"),
        (lambda m, k, i: m("ES256", exp="tomorrow"), "exp is not a number"),
        (lambda m, k, i: m("ES256", header={"kid": "nope"}), "unknown signing key"),
        (lambda m, k, i: m("ES256", header={"crit": ["exp"], "exp": 1}), "critical header"),
        (lambda m, k, i: m("ES256", key=SigningKey.generate("ES256", kid=k["ES256"].kid)), "signature verification"),
        (lambda m, k, i: m("ES256")[:-4] + "AAAA", "signature verification"),
        (lambda m, k, i: "not-a-jwt", "not a compact JWS"),
        # parsed before any signature: bounded, a normal refusal (never a 5xx)
        (lambda m, k, i: f"{nested_segment(3000)}.{b64url(b'{}')}.AAAA", "header is nested too deeply"),
        (lambda m, k, i: f"{m('ES256').split('.')[0]}.{nested_segment(3000)}.AAAA", "payload is nested too deeply"),
        (lambda m, k, i: f"{b64url(b'[]')}.{b64url(b'{}')}.AAAA", "header is a JSON list"),
        # NumericDates: finite, 1970..9999, strict JSON
        (lambda m, k, i: k["ES256"].sign_raw(raw_claims(i, AUDIENCE, exp="1e400")), "payload is not JSON"),
        (lambda m, k, i: k["ES256"].sign_raw(raw_claims(i, AUDIENCE, exp="NaN")), "payload is not JSON"),
        (lambda m, k, i: k["ES256"].sign_raw(raw_claims(i, AUDIENCE, exp="Infinity")), "payload is not JSON"),
        (lambda m, k, i: k["ES256"].sign_raw(raw_claims(i, AUDIENCE, exp="1" + "0" * 400)), "exp is not a date"),
        (lambda m, k, i: k["ES256"].sign_raw(raw_claims(i, AUDIENCE, nbf="-1")), "nbf is not a date"),
        (lambda m, k, i: k["ES256"].sign_raw(raw_claims(i, AUDIENCE, iat="1e300")), "iat is not a date"),
        (lambda m, k, i: m("ES256", exp=True), "exp is not a number"),
        # a confirmation authgate cannot check is never ignored (RFC 7800 §3)
        (lambda m, k, i: m("ES256", cnf={"jwk": {"kty": "EC"}}), "cannot check"),
        (lambda m, k, i: m("ES256", cnf={"jkt": "x", "kid": "k1"}), "cannot check"),
        (lambda m, k, i: m("ES256", cnf={}), "cannot check"),
        (lambda m, k, i: m("ES256", cnf="jkt"), "cannot check"),
        (lambda m, k, i: m("ES256", cnf={"jkt": 7}), "cnf is malformed"),
        (lambda m, k, i: m("ES256", cnf={"x5t#S256": ""}), "cnf is malformed"),
        (lambda m, k, i: "a.b.c", "header is not base64url"),
        (lambda m, k, i: m("ES256") + "." + "x", "not a compact JWS"),
    ],
)
async def test_invalid_tokens_are_refused(issuer, mint, signing_keys, make, reason):
    service = await service_for(issuer.issuer)
    try:
        with pytest.raises(TokenError, match=reason):
            await validate(service, make(mint, signing_keys, issuer.issuer))
    finally:
        await service.stop()


async def test_rs256_key_cannot_verify_an_es256_claimed_token(issuer, signing_keys):
    service = await service_for(issuer.issuer)
    token = signing_keys["ES256"].sign(claims(issuer.issuer, AUDIENCE), kid=signing_keys["RS256"].kid)
    try:
        with pytest.raises(TokenError, match="no key of the issuer fits"):
            await validate(service, token)
    finally:
        await service.stop()


async def test_clock_skew_leeway_applies(issuer, mint):
    service = await service_for(issuer.issuer, clockSkewSeconds=120)
    try:
        assert await validate(service, mint("ES256", ttl=-60))
        with pytest.raises(TokenError, match="expired"):
            await validate(service, mint("ES256", ttl=-180))
    finally:
        await service.stop()


async def test_typ_and_required_claims(issuer, mint):
    service = await service_for(issuer.issuer, requireTyp="at+jwt", requiredClaims=["sub", "tenant"])
    try:
        assert await validate(service, mint("ES256", tenant="t1"))
        with pytest.raises(TokenError, match="typ"):
            await validate(service, mint("ES256", tenant="t1", header={"typ": "JWT"}))
        with pytest.raises(TokenError, match="required claim tenant"):
            await validate(service, mint("ES256"))
    finally:
        await service.stop()


async def test_algorithm_allowlist_per_issuer(issuer, mint):
    service = await service_for(issuer.issuer, algorithms=["EdDSA"])
    try:
        assert await validate(service, mint("EdDSA"))
        with pytest.raises(TokenError, match="algorithm ES256 not allowed"):
            await validate(service, mint("ES256"))
    finally:
        await service.stop()


async def test_audience_scheme_and_host_are_case_insensitive(issuer, mint):
    service = await service_for(issuer.issuer)
    try:
        assert await validate(service, mint("ES256", audience="HTTPS://API.EXAMPLE.COM/mcp"))
        with pytest.raises(TokenError, match="audience"):
            await validate(service, mint("ES256", audience="https://api.example.com/MCP"))
    finally:
        await service.stop()


async def test_keys_without_alg_are_used_when_the_type_fits():
    keys = [SigningKey.generate("RS256", publish_alg=False), SigningKey.generate("ES256", publish_alg=False)]
    with JwksServer(keys) as server:
        service = await service_for(server.issuer)
        try:
            for key in keys:
                assert await validate(service, key.sign(claims(server.issuer, AUDIENCE)))
            # PS256 is allowed and fits an RSA key without alg
            ps_token = SigningKey("PS256", keys[0].key).sign(claims(server.issuer, AUDIENCE))
            assert await validate(service, ps_token)
        finally:
            await service.stop()


async def test_tokens_without_kid_try_the_fitting_keys(issuer, mint):
    service = await service_for(issuer.issuer)
    try:
        assert await validate(service, mint("EdDSA", header={"kid": None}))
    finally:
        await service.stop()


async def test_unknown_kid_storm_causes_one_fetch():
    key = SigningKey.generate("ES256")
    with JwksServer([key]) as server:
        service = await service_for(server.issuer, JwksSettings(tick=0.05, unknown_kid_cooldown=0.0))
        try:
            assert await validate(service, key.sign(claims(server.issuer, AUDIENCE)))
            server.reset_counts()
            rotated = SigningKey.generate("ES256")  # the IdP rotates in a new key
            server.keys.append(rotated)
            tokens = [rotated.sign(claims(server.issuer, AUDIENCE, subject=f"u{i}")) for i in range(200)]
            results = await asyncio.gather(*(validate(service, t) for t in tokens), return_exceptions=True)
            assert all(not isinstance(r, Exception) for r in results), results[:3]
            assert server.fetches == 1
        finally:
            await service.stop()


async def test_unknown_kid_refetch_respects_the_cooldown():
    key = SigningKey.generate("ES256")
    with JwksServer([key]) as server:
        service = await service_for(server.issuer, JwksSettings(tick=0.05, unknown_kid_cooldown=60))
        try:
            assert await validate(service, key.sign(claims(server.issuer, AUDIENCE)))
            server.reset_counts()
            forged = [SigningKey.generate("ES256").sign(claims(server.issuer, AUDIENCE)) for _ in range(50)]
            results = await asyncio.gather(*(validate(service, t) for t in forged), return_exceptions=True)
            assert all(isinstance(r, TokenError) and "unknown signing key" in r.reason for r in results)
            assert server.fetches == 1  # the first unknown kid refetches; the others joined it
            more = [SigningKey.generate("ES256").sign(claims(server.issuer, AUDIENCE)) for _ in range(20)]
            results = await asyncio.gather(*(validate(service, t) for t in more), return_exceptions=True)
            assert all(isinstance(r, TokenError) for r in results)
            assert server.fetches == 1  # within the cooldown of that kid-triggered refetch: none
        finally:
            await service.stop()


async def test_a_key_published_after_the_last_fetch_is_found_at_once():
    """Rotation: the cooldown counts from kid-triggered refetches only, so a token signed with
    a key the IdP published after start-up is verified on its first use, not 401 for 30 s."""
    key = SigningKey.generate("ES256")
    with JwksServer([key]) as server:
        service = await service_for(server.issuer, JwksSettings(tick=0.05, unknown_kid_cooldown=60))
        try:
            assert await validate(service, key.sign(claims(server.issuer, AUDIENCE)))  # start-up fetch done
            rotated = SigningKey.generate("ES256")
            server.keys.append(rotated)
            assert await validate(service, rotated.sign(claims(server.issuer, AUDIENCE, subject="bob")))
        finally:
            await service.stop()


async def test_a_cached_token_fails_closed_with_its_issuer():
    """Once the issuer's keys are stale past the limit, a token verified (and cached) before
    stops passing too: 503 like every other token of that issuer, not allowed until its TTL."""
    key = SigningKey.generate("ES256")
    with JwksServer([key]) as server:
        settings = JwksSettings(tick=0.05, refresh_interval=0.2, stale_if_error=0.5, retry_interval=0.1)
        service = await service_for(server.issuer, settings)
        try:
            token = key.sign(claims(server.issuer, AUDIENCE))
            assert await validate(service, token)
            server.mode = "down"
            await asyncio.sleep(1.0)  # past refresh_interval + stale_if_error
            with pytest.raises(KeysUnavailable):
                await validate(service, token)
            server.mode = "ok"
            await asyncio.sleep(0.4)
            assert await validate(service, token)
        finally:
            await service.stop()


async def test_idp_down_with_a_warm_cache_keeps_working_then_fails_closed():
    key = SigningKey.generate("ES256")
    with JwksServer([key]) as server:
        settings = JwksSettings(tick=0.05, refresh_interval=0.2, stale_if_error=1.0, retry_interval=0.1)
        service = await service_for(server.issuer, settings)
        try:
            assert await validate(service, key.sign(claims(server.issuer, AUDIENCE)))
            server.mode = "down"
            await asyncio.sleep(0.5)  # refreshes fail, the keys are stale but within stale_if_error
            assert await validate(service, key.sign(claims(server.issuer, AUDIENCE, subject="bob")))
            await asyncio.sleep(1.0)  # past refresh_interval + stale_if_error
            with pytest.raises(KeysUnavailable):
                await validate(service, key.sign(claims(server.issuer, AUDIENCE, subject="carol")))
            server.mode = "ok"
            await asyncio.sleep(0.4)  # background retry recovers
            assert await validate(service, key.sign(claims(server.issuer, AUDIENCE, subject="dave")))
        finally:
            await service.stop()


@pytest.mark.parametrize("mode", ["down", "garbage", "huge"])
async def test_cold_cache_with_a_broken_idp_fails_closed(mode):
    key = SigningKey.generate("ES256")
    with JwksServer([key]) as server:
        server.mode = mode
        service = await service_for(server.issuer)
        try:
            with pytest.raises(KeysUnavailable):
                await validate(service, key.sign(claims(server.issuer, AUDIENCE)))
            state = service.keys.states()[0]
            assert state["usable"] is False and state["lastError"]
        finally:
            await service.stop()


async def test_slow_idp_times_out_into_unavailable():
    key = SigningKey.generate("ES256")
    with JwksServer([key]) as server:
        server.mode, server.delay = "slow", 3.0
        service = AuthService(
            ServiceSettings(
                egress=EgressPolicy(allow=("127.0.0.1",), insecure_http=True, read_timeout=0.3, total_timeout=0.5)
            )
        )
        service.load(snapshot(server.issuer))
        await service.start()
        try:
            with pytest.raises(KeysUnavailable, match="timeout|timed out"):
                await validate(service, key.sign(claims(server.issuer, AUDIENCE)))
        finally:
            await service.stop()


async def test_verified_token_cache_never_crosses_policies(issuer, mint):
    """A token verified for one policy's audience must not pass another's from the cache."""
    service = await service_for(issuer.issuer)
    other = snapshot(issuer.issuer, generation=2, name="other", audiences=["https://other.example.com"])
    try:
        token = mint("ES256")
        assert await validate(service, token)
        with pytest.raises(TokenError, match="audience"):
            await service.validator.validate(token, other.policies[0])
    finally:
        await service.stop()


async def test_verified_token_cache_hits_and_never_outlives_exp(issuer, mint):
    service = await service_for(issuer.issuer, clockSkewSeconds=0)
    try:
        token = mint("ES256", ttl=2)
        first = await validate(service, token)
        assert await validate(service, token) is first  # from the cache
        await asyncio.sleep(2.2)
        with pytest.raises(TokenError, match="expired"):
            await validate(service, token)
    finally:
        await service.stop()


async def test_discovery_must_name_the_configured_issuer(signing_keys):
    with JwksServer([signing_keys["ES256"]]) as server:
        # the policy trusts the issuer with a trailing slash; discovery says otherwise
        service = await service_for(server.issuer + "/x")
        try:
            token = signing_keys["ES256"].sign(claims(server.issuer + "/x", AUDIENCE))
            with pytest.raises(KeysUnavailable, match="discovery"):
                await validate(service, token)
        finally:
            await service.stop()


async def test_a_check_looks_the_token_up_once_however_many_issuers_the_policy_trusts(issuer, mint):
    """The cache is keyed by the policy's issuer list: one lookup, not one per issuer entry."""
    entries = [
        {"issuer": f"https://idp{i}.example.com", "jwksUri": f"https://idp{i}.example.com/jwks"} for i in range(9)
    ]
    policy = {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": "many", "namespace": "default"},
        "spec": {"resource": AUDIENCE, "issuers": [*entries, {"issuer": issuer.issuer}]},
    }
    document = {"formatVersion": 1, "generation": 1, "policies": [policy], "secrets": []}
    service = AuthService(ServiceSettings(egress=LOCAL, jwks=JwksSettings(tick=0.05)))
    service.load(compile_document(document, ValidationSettings(insecure_http=True)))
    await service.start()
    counts = metrics.cache_counts("verified_token")
    try:
        token = mint("ES256")
        before = list(counts)
        first = await validate(service, token)
        assert await validate(service, token) is first
        looked_up = [after - was for after, was in zip(counts, before, strict=True)]
        assert looked_up[metrics.HIT] == 1 and looked_up[metrics.MISS] == 1
    finally:
        await service.stop()
