"""`decide`, every path of it: real compiled policies, a stub validator and a stub exchanger.

The validator and the exchanger have their own tests (check/tokens/test_validator.py;
tests/integration/test_token_exchange.py); here they answer what each test needs, and
record what they were asked, so a test also shows which steps a decision never reached.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import replace
from typing import Any

import pytest
from tests.support import proofs

from authgate.check.pipeline import Trace, decide
from authgate.check.request import CheckRequest
from authgate.check.tokens.dpop import NonceCodec, ProofVerifier
from authgate.check.tokens.validator import VerifiedToken
from authgate.errors import KeysUnavailable, TokenError
from authgate.outbound.exchange import ExchangedToken, ExchangeFailed
from authgate.policy import ValidationSettings, compile_document
from authgate.policy.snapshot import CompiledPolicy, Snapshot
from authgate.sealing import SealingKeys

HOST = "api.example.com"
ISSUER = "https://idp.example.com"
RESOURCE = "https://api.example.com/mcp"
METADATA_URL = "https://api.example.com/.well-known/oauth-protected-resource/mcp"
IDENTITY_HEADERS = ("X-Auth-Subject", "X-Auth-Roles", "X-Auth-Scopes", "X-Auth-Issuer", "X-Auth-Client-Id")
DPOP_ALGS = 'DPoP algs="ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256 RS384 RS512"'  # offered by default
TOKEN = "a.valid.token"  # what the stub validator accepts; its content is never read here

MCP_RULES = [
    {"pathPrefix": "/mcp/health", "anonymous": True},
    {"pathPrefix": "/mcp", "mcpMethods": ["tools/call"], "mcpNames": ["admin_*"], "requireRoles": ["admin"]},
    {"pathPrefix": "/mcp", "requireScopes": ["mcp:read"]},
]


def policy(name: str, resource: str = RESOURCE, **spec: Any) -> dict:
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "resource": resource,
            "issuers": [{"issuer": ISSUER}],
            "scopeRoles": [{"scope": "mcp:read", "role": "reader"}, {"scope": "mcp:admin", "role": "admin"}],
            **spec,
        },
    }


def secret(name: str, data: dict[str, str]) -> dict:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"}, "data": encoded}


def snapshot(*policies: dict, secrets: tuple[dict, ...] = ()) -> Snapshot:
    document = {"formatVersion": 1, "generation": 1, "policies": list(policies), "secrets": list(secrets)}
    return compile_document(document, ValidationSettings())


MCP = snapshot(policy("mcp", rules=MCP_RULES, cors={"allowedOrigins": ["https://app.example.com"]}))


def verified(policy: CompiledPolicy, scope: str = "mcp:read", **claims: Any) -> VerifiedToken:
    body = {"iss": ISSUER, "sub": "alice", "client_id": "inspector", "scope": scope, **claims}
    return VerifiedToken(
        issuer=policy.issuers[0],
        claims=body,
        scopes=frozenset(scope.split()),
        subject=body.get("sub"),
        client_id=body.get("client_id"),
        expires_at=time.time() + 300,
    )


class StubValidator:
    """`validate` answers `outcome` (a VerifiedToken, or an error to raise) for TOKEN."""

    def __init__(self, outcome: VerifiedToken | Exception | None = None) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, str]] = []  # (token, policy ref)

    async def validate(self, token: str, policy: CompiledPolicy) -> VerifiedToken:
        self.calls.append((token, policy.ref))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        assert token == TOKEN and self.outcome is not None, f"unexpected validation of {token!r}"
        return self.outcome


class StubExchanger:
    """`exchange` answers a token issued for the upstream, or raises `failure`."""

    def __init__(self, failure: ExchangeFailed | None = None) -> None:
        self.failure = failure
        self.calls: list[str] = []  # subject tokens

    async def exchange(self, settings: Any, subject_token: str) -> ExchangedToken:
        self.calls.append(subject_token)
        if self.failure is not None:
            raise self.failure
        return ExchangedToken(
            access_token="downstream-token",
            issued_token_type="urn:ietf:params:oauth:token-type:access_token",
            expires_at=time.time() + 300,
        )


def request(path: str = "/mcp", method: str = "POST", token: str | None = TOKEN, **fields: Any) -> CheckRequest:
    authorization = f"Bearer {token}" if token is not None else None
    return CheckRequest(HOST, path, method, **{"authorization": authorization, **fields})


def the_policy(snap: Snapshot, name: str) -> CompiledPolicy:
    [found] = [p for p in snap.policies if p.name == name]
    return found


def mcp_token(scope: str = "mcp:read", **claims: Any) -> VerifiedToken:
    return verified(the_policy(MCP, "mcp"), scope, **claims)


# -- no policy -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "path"), [("other.example.com", "/mcp"), (HOST, "/"), (HOST, "/mcpx"), (HOST, "/other/mcp")]
)
async def test_no_policy_covers_the_host_and_path(host: str, path: str) -> None:
    validator = StubValidator(mcp_token())
    decision = await decide(MCP, CheckRequest(host, path, "GET", authorization=f"Bearer {TOKEN}"), validator)

    assert (decision.allowed, decision.status, decision.reason, decision.error) == (
        False,
        403,
        "no_policy",
        "no_policy",
    )
    assert decision.policy is None and decision.www_authenticate is None
    assert validator.calls == []


# -- CORS preflight --------------------------------------------------------------------------
async def test_an_allowed_origins_preflight_passes_without_a_token() -> None:
    validator = StubValidator()
    preflight = request(
        method="OPTIONS", token=None, origin="https://app.example.com", access_control_request_method="POST"
    )
    decision = await decide(MCP, preflight, validator)

    assert (decision.allowed, decision.status, decision.reason) == (True, 200, "cors_preflight")
    assert decision.remove_headers == IDENTITY_HEADERS and decision.upstream_headers == ()
    assert validator.calls == []


@pytest.mark.parametrize(
    "fields",
    [
        {"origin": "https://evil.example.com", "access_control_request_method": "POST"},  # another origin
        {"origin": "https://app.example.com"},  # no Access-Control-Request-Method: not a preflight
    ],
)
async def test_an_options_request_that_is_no_allowed_preflight_needs_a_token(fields: dict) -> None:
    decision = await decide(MCP, request(method="OPTIONS", token=None, **fields), StubValidator())

    assert (decision.status, decision.reason) == (401, "no_token")


async def test_a_policy_without_cors_has_no_preflight() -> None:
    snap = snapshot(policy("mcp", rules=MCP_RULES))
    preflight = request(
        method="OPTIONS", token=None, origin="https://app.example.com", access_control_request_method="POST"
    )
    assert (await decide(snap, preflight, StubValidator())).reason == "no_token"


# -- anonymous -------------------------------------------------------------------------------
async def test_an_anonymous_rule_passes_and_strips_every_identity_header() -> None:
    validator = StubValidator(mcp_token())
    decision = await decide(MCP, request("/mcp/health", method="GET"), validator)  # a token, even

    assert (decision.allowed, decision.status, decision.reason) == (True, 200, "anonymous")
    assert decision.rule is not None and decision.rule.anonymous
    assert decision.remove_headers == IDENTITY_HEADERS and decision.upstream_headers == ()
    assert decision.token is None
    assert validator.calls == []  # a token on an anonymous route is not even looked at


# -- no token, malformed credentials ---------------------------------------------------------
@pytest.mark.parametrize("authorization", [None, "Basic YWxpY2U6c2VjcmV0", "Digest a.b.c"])
async def test_no_access_token_is_a_401_challenge_without_an_error(authorization: str | None) -> None:
    validator = StubValidator()
    decision = await decide(MCP, request(token=None, authorization=authorization), validator)

    assert (decision.allowed, decision.status, decision.reason, decision.error) == (
        False,
        401,
        "no_token",
        "unauthorized",
    )
    assert decision.www_authenticate == (
        f'Bearer scope="mcp:read", resource_metadata="{METADATA_URL}", '
        f'{DPOP_ALGS}, scope="mcp:read", resource_metadata="{METADATA_URL}"'
    )
    assert validator.calls == []


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer   ", "Bearer a b", "Bearer a,b", "bearer tok€n"])
async def test_malformed_bearer_credentials_are_an_invalid_token(authorization: str) -> None:
    validator = StubValidator()
    decision = await decide(MCP, request(token=None, authorization=authorization), validator)

    assert (decision.status, decision.reason, decision.error) == (401, "invalid_token", "invalid_token")
    assert decision.description == "malformed Bearer credentials"
    assert decision.www_authenticate == (
        'Bearer error="invalid_token", error_description="malformed Bearer credentials", '
        f'scope="mcp:read", resource_metadata="{METADATA_URL}", '
        f'{DPOP_ALGS}, scope="mcp:read", resource_metadata="{METADATA_URL}"'
    )
    assert validator.calls == []


# -- the token -------------------------------------------------------------------------------
async def test_an_invalid_token_is_a_401_with_the_reason() -> None:
    validator = StubValidator(TokenError("token expired"))
    decision = await decide(MCP, request(), validator)

    assert (decision.allowed, decision.status, decision.reason, decision.error) == (
        False,
        401,
        "invalid_token",
        "invalid_token",
    )
    assert decision.description == "token expired"
    assert decision.www_authenticate == (
        f'Bearer error="invalid_token", error_description="token expired", scope="mcp:read", '
        f'resource_metadata="{METADATA_URL}", {DPOP_ALGS}, scope="mcp:read", resource_metadata="{METADATA_URL}"'
    )
    assert decision.token is None
    assert validator.calls == [(TOKEN, "default/mcp")]


async def test_unavailable_keys_are_a_503_never_a_login() -> None:
    decision = await decide(MCP, request(), StubValidator(KeysUnavailable(ISSUER, "connection refused")))

    assert (decision.allowed, decision.status, decision.reason, decision.error) == (
        False,
        503,
        "keys_unavailable",
        "temporarily_unavailable",
    )
    assert decision.www_authenticate is None  # no token would help: no challenge
    assert decision.policy is not None and decision.policy.ref == "default/mcp"


# -- rules, scopes, roles --------------------------------------------------------------------
async def test_a_valid_token_no_rule_allows_is_access_denied() -> None:
    snap = snapshot(policy("mcp", rules=[{"pathPrefix": "/mcp/tools", "requireScopes": ["mcp:read"]}]))
    token = verified(the_policy(snap, "mcp"), "mcp:read mcp:admin")
    decision = await decide(snap, request("/mcp/other"), StubValidator(token))

    assert (decision.allowed, decision.status, decision.reason, decision.error) == (
        False,
        403,
        "no_rule",
        "access_denied",
    )
    assert decision.rule is None and decision.www_authenticate is None
    assert decision.token == token


async def test_no_rule_still_asks_for_a_token_first() -> None:
    snap = snapshot(policy("mcp", rules=[{"pathPrefix": "/mcp/tools", "requireScopes": ["mcp:read"]}]))
    decision = await decide(snap, request("/mcp/other", token=None), StubValidator())

    assert (decision.status, decision.reason) == (401, "no_token")
    # no rule, no scope to name
    assert decision.www_authenticate == (
        f'Bearer resource_metadata="{METADATA_URL}", {DPOP_ALGS}, resource_metadata="{METADATA_URL}"'
    )


async def test_a_missing_scope_is_a_403_step_up_challenge() -> None:
    token = mcp_token("openid profile")
    decision = await decide(MCP, request(), StubValidator(token))

    assert (decision.allowed, decision.status, decision.reason, decision.error) == (
        False,
        403,
        "insufficient_scope",
        "insufficient_scope",
    )
    assert decision.www_authenticate == (
        f'Bearer error="insufficient_scope", scope="mcp:read", resource_metadata="{METADATA_URL}", '
        f'{DPOP_ALGS}, scope="mcp:read", resource_metadata="{METADATA_URL}"'
    )
    assert decision.rule is not None and decision.rule.require_scopes == ("mcp:read",)
    assert decision.token == token


async def test_a_missing_role_is_a_403_without_a_challenge() -> None:
    admin_call = request(mcp_method="tools/call", mcp_name="admin_reset")
    decision = await decide(MCP, admin_call, StubValidator(mcp_token("mcp:read")))

    assert (decision.allowed, decision.status, decision.reason, decision.error) == (
        False,
        403,
        "missing_role",
        "access_denied",
    )
    assert decision.www_authenticate is None  # no scope the client could ask for would help


async def test_the_role_may_come_from_a_claim() -> None:
    snap = snapshot(
        policy("mcp", rules=MCP_RULES, claimRoles=[{"claim": "realm_access.roles", "value": "ops", "role": "admin"}])
    )
    token = verified(the_policy(snap, "mcp"), "mcp:read", realm_access={"roles": ["ops"]})
    admin_call = request(mcp_method="tools/call", mcp_name="admin_reset")
    decision = await decide(snap, admin_call, StubValidator(token))

    assert (decision.allowed, decision.reason) == (True, "allowed")
    assert decision.rule == the_policy(snap, "mcp").rules[1]
    assert ("X-Auth-Roles", "admin,reader") in decision.upstream_headers


# -- allow -----------------------------------------------------------------------------------
async def test_an_allow_carries_the_identity_headers() -> None:
    token = mcp_token("mcp:read mcp:admin openid")
    decision = await decide(MCP, request(), StubValidator(token))

    assert (decision.allowed, decision.status, decision.reason, decision.error) == (True, 200, "allowed", None)
    assert decision.upstream_headers == (
        ("X-Auth-Subject", "alice"),
        ("X-Auth-Roles", "admin,reader"),
        ("X-Auth-Scopes", "mcp:admin mcp:read openid"),
        ("X-Auth-Issuer", ISSUER),
        ("X-Auth-Client-Id", "inspector"),
    )
    assert decision.remove_headers == ()
    assert decision.rule == the_policy(MCP, "mcp").rules[2]
    assert decision.token == token
    assert decision.body() == b""


async def test_an_identity_value_the_token_lacks_is_removed_not_set() -> None:
    token = mcp_token(client_id=None, sub="bob\r\nX-Auth-Roles: admin")  # no client id; an injection
    decision = await decide(MCP, request(), StubValidator(token))

    assert decision.allowed
    assert dict(decision.upstream_headers) == {
        "X-Auth-Roles": "reader",
        "X-Auth-Scopes": "mcp:read",
        "X-Auth-Issuer": ISSUER,
    }
    assert decision.remove_headers == ("X-Auth-Subject", "X-Auth-Client-Id")


async def test_a_policy_without_rules_allows_any_valid_token_with_claim_headers() -> None:
    snap = snapshot(policy("mcp", identityHeaders={"claims": {"tenant": "X-Tenant"}}))
    token = verified(the_policy(snap, "mcp"), "openid", tenant="acme")
    decision = await decide(snap, request("/mcp/anything", method="GET"), StubValidator(token))

    assert (decision.allowed, decision.reason, decision.rule) == (True, "allowed", None)
    assert ("X-Tenant", "acme") in decision.upstream_headers


# -- DryRun ----------------------------------------------------------------------------------
DRY_RUN = snapshot(policy("mcp", rules=MCP_RULES, mode="DryRun"))


@pytest.mark.parametrize(
    ("outcome", "token", "denial"),
    [
        (None, None, "no_token"),
        (TokenError("token expired"), TOKEN, "invalid_token"),
        (KeysUnavailable(ISSUER, "down"), TOKEN, "keys_unavailable"),
        ("openid", TOKEN, "insufficient_scope"),
    ],
)
async def test_dry_run_allows_what_enforce_would_deny_and_says_which(outcome: Any, token: str | None, denial: str):
    if isinstance(outcome, str):
        outcome = verified(the_policy(DRY_RUN, "mcp"), outcome)
    decision = await decide(DRY_RUN, request(token=token), StubValidator(outcome))

    assert (decision.allowed, decision.status, decision.reason, decision.dry_run_reason) == (
        True,
        200,
        "dry_run",
        denial,
    )
    assert (decision.error, decision.www_authenticate) == (None, None)
    if decision.token is None:  # nothing verified: every identity header is stripped
        assert (decision.upstream_headers, decision.remove_headers) == ((), IDENTITY_HEADERS)
    else:  # the verified identity still reaches the app
        assert ("X-Auth-Subject", "alice") in decision.upstream_headers


async def test_dry_run_changes_nothing_that_is_allowed() -> None:
    token = verified(the_policy(DRY_RUN, "mcp"))
    decision = await decide(DRY_RUN, request(), StubValidator(token))

    assert (decision.reason, decision.dry_run_reason) == ("allowed", None)


# -- policy_ref: the gateway's pick among the host's policies --------------------------------
TWO_ON_A_HOST = snapshot(
    policy("mcp", rules=[{"pathPrefix": "/mcp", "requireScopes": ["mcp:read"]}]),
    policy("admin", resource="https://api.example.com/admin", rules=[{"pathPrefix": "/", "requireRoles": ["admin"]}]),
    policy("elsewhere", resource="https://other.example.com/mcp"),
)


async def test_a_policy_ref_picks_among_the_hosts_policies_whatever_the_path() -> None:
    admin = the_policy(TWO_ON_A_HOST, "admin")
    validator = StubValidator(verified(admin, "mcp:read"))
    decision = await decide(TWO_ON_A_HOST, request("/mcp", policy_ref="default/admin"), validator)

    # routed by path it would be default/mcp (and allowed); named, it is default/admin
    assert decision.policy == admin
    assert (decision.status, decision.reason) == (403, "missing_role")
    assert validator.calls == [(TOKEN, "default/admin")]


async def test_without_a_policy_ref_the_path_routes() -> None:
    mcp = the_policy(TWO_ON_A_HOST, "mcp")
    decision = await decide(TWO_ON_A_HOST, request("/mcp"), StubValidator(verified(mcp)))

    assert (decision.policy, decision.reason) == (mcp, "allowed")


@pytest.mark.parametrize("ref", ["default/elsewhere", "default/missing", "other/mcp"])
async def test_a_policy_ref_never_reaches_another_hosts_policy(ref: str) -> None:
    validator = StubValidator()
    decision = await decide(TWO_ON_A_HOST, request("/mcp", policy_ref=ref), validator)

    assert (decision.status, decision.reason) == (403, "no_policy")
    assert validator.calls == []


# -- token exchange (RFC 8693) ---------------------------------------------------------------
EXCHANGE = snapshot(
    policy(
        "mcp",
        rules=MCP_RULES,
        tokenExchange={
            "tokenEndpoint": "https://idp.example.com/token",
            "clientId": "authgate",
            "clientSecretRef": {"name": "exchange", "key": "secret"},
            "audience": "https://downstream.example.com",
        },
    ),
    secrets=(secret("exchange", {"secret": "s3cr3t"}),),
)


async def test_an_allow_sends_the_exchanged_token_upstream() -> None:
    exchanger = StubExchanger()
    token = verified(the_policy(EXCHANGE, "mcp"))
    decision = await decide(EXCHANGE, request(), StubValidator(token), exchanger)

    assert (decision.allowed, decision.reason) == (True, "allowed")
    assert decision.upstream_headers[-1] == ("Authorization", "Bearer downstream-token")
    assert ("X-Auth-Subject", "alice") in decision.upstream_headers
    assert exchanger.calls == [TOKEN]  # the caller's token is the subject token


@pytest.mark.parametrize(
    ("failure", "status", "reason", "error"),
    [
        (ExchangeFailed(401, "subject token refused", "invalid_grant"), 401, "invalid_token", "invalid_token"),
        (ExchangeFailed(503, "token endpoint unreachable"), 503, "exchange_failed", "temporarily_unavailable"),
    ],
)
async def test_a_failed_exchange_fails_closed(failure: ExchangeFailed, status: int, reason: str, error: str) -> None:
    token = verified(the_policy(EXCHANGE, "mcp"))
    decision = await decide(EXCHANGE, request(), StubValidator(token), StubExchanger(failure))

    assert (decision.allowed, decision.status, decision.reason, decision.error) == (False, status, reason, error)
    assert decision.description == failure.reason
    assert decision.upstream_headers == ()  # nothing of the caller's reaches the app


async def test_no_exchange_for_a_denial_an_anonymous_route_or_without_an_exchanger() -> None:
    exchanger = StubExchanger()
    policy_ = the_policy(EXCHANGE, "mcp")
    denied = await decide(EXCHANGE, request(), StubValidator(verified(policy_, "openid")), exchanger)
    anonymous = await decide(EXCHANGE, request("/mcp/health"), StubValidator(), exchanger)
    unexchanged = await decide(EXCHANGE, request(), StubValidator(verified(policy_)))

    assert (denied.reason, anonymous.reason, unexchanged.reason) == ("insufficient_scope", "anonymous", "allowed")
    assert exchanger.calls == []
    assert all(name != "Authorization" for name, _ in unexchanged.upstream_headers)


# -- sender-constrained tokens (RFC 9449 DPoP, RFC 8705 certificates) -------------------------
CERT_DIGEST = hashlib.sha256(b"the client certificate's DER").digest()
JKT = proofs.KEYS["ES256"].thumbprint()
URL = "https://api.example.com/mcp/tools"


def proof_verifier() -> ProofVerifier:
    keys = SealingKeys.ephemeral()
    return ProofVerifier(NonceCodec(lambda uid: keys.derived_keys("dpop-nonce", uid)))


def bound(policy: CompiledPolicy, jkt: str | None = None, x5t: str | None = None) -> VerifiedToken:
    return replace(verified(policy), jkt=jkt, x5t=x5t)


def dpop_request(scheme: str = "DPoP", proof: str | None = "auto", **fields: Any) -> CheckRequest:
    if proof == "auto":
        proof = proofs.proof(URL, TOKEN)
    return CheckRequest(
        HOST, "/mcp/tools", "GET", authorization=f"{scheme} {TOKEN}", dpop=proof, scheme="https", **fields
    )


def sender_policy(dpop_mode: str = "Optional", mtls: str = "Optional", **spec: Any) -> Snapshot:
    issuers = [{"issuer": ISSUER, "senderConstraint": {"dpop": dpop_mode, "mtls": mtls}}]
    return snapshot(policy("mcp", rules=MCP_RULES, issuers=issuers, **spec))


async def test_a_dpop_bound_token_with_a_good_proof_is_allowed() -> None:
    snap = sender_policy()
    trace = Trace()
    decision = await decide(
        snap, dpop_request(), StubValidator(bound(the_policy(snap, "mcp"), JKT)), trace=trace, proofs=proof_verifier()
    )
    assert (decision.allowed, decision.reason) == (True, "allowed")
    assert any(step.name == "binding" and "DPoP proof checked" in step.outcome for step in trace.steps)


@pytest.mark.parametrize(
    ("dpop", "jkt", "request_fields", "error", "reason"),
    [
        ("Optional", JKT, {"scheme": "Bearer"}, "invalid_token", "must be sent with the DPoP scheme"),
        ("Optional", None, {}, "invalid_token", "needs a DPoP-bound token"),
        ("Required", None, {"scheme": "Bearer"}, "invalid_token", "must be DPoP-bound"),
        ("Disabled", JKT, {}, "invalid_token", "not accepted from this issuer"),
        ("Optional", JKT, {"proof": None}, "invalid_dpop_proof", "DPoP proof missing"),
        ("Optional", "another-thumbprint", {}, "invalid_token", "not the one the token is bound to"),
    ],
)
async def test_dpop_binding_refusals(dpop, jkt, request_fields, error, reason) -> None:
    snap = sender_policy(dpop_mode=dpop)
    decision = await decide(
        snap,
        dpop_request(**request_fields),
        StubValidator(bound(the_policy(snap, "mcp"), jkt)),
        proofs=proof_verifier(),
    )
    assert (decision.status, decision.error) == (401, error)
    assert reason in (decision.description or "")
    assert f'error="{error}"' in decision.www_authenticate  # on the challenge of the scheme used, when offered


async def test_without_a_proof_verifier_no_dpop_bound_token_passes() -> None:
    snap = sender_policy()
    decision = await decide(snap, dpop_request(), StubValidator(bound(the_policy(snap, "mcp"), JKT)))
    assert (decision.status, decision.error) == (401, "invalid_dpop_proof")


async def test_a_nonce_policy_answers_use_dpop_nonce_with_a_fresh_nonce_then_accepts_it() -> None:
    snap = sender_policy(dpop={"nonce": {"lifetimeSeconds": 60}})
    checker, token = proof_verifier(), bound(the_policy(snap, "mcp"), JKT)
    first = await decide(snap, dpop_request(), StubValidator(token), proofs=checker)
    assert (first.status, first.error) == (401, "use_dpop_nonce")
    assert 'DPoP algs="' in first.www_authenticate and 'error="use_dpop_nonce"' in first.www_authenticate
    nonce = dict(first.response_headers)["dpop-nonce"]
    retry = dpop_request(proof=proofs.proof(URL, TOKEN, nonce=nonce))
    assert (await decide(snap, retry, StubValidator(token), proofs=checker)).allowed
    no_token = await decide(snap, CheckRequest(HOST, "/mcp/tools", "GET"), StubValidator(), proofs=checker)
    assert "dpop-nonce" in dict(no_token.response_headers)  # every 401 hands out a nonce


async def test_required_dpop_everywhere_offers_only_the_dpop_challenge() -> None:
    snap = sender_policy(dpop_mode="Required")
    decision = await decide(snap, CheckRequest(HOST, "/mcp/tools", "GET"), StubValidator(), proofs=proof_verifier())
    assert decision.www_authenticate.startswith('DPoP algs="') and "Bearer" not in decision.www_authenticate


async def test_disabled_dpop_everywhere_offers_only_bearer() -> None:
    snap = sender_policy(dpop_mode="Disabled")
    decision = await decide(snap, CheckRequest(HOST, "/mcp/tools", "GET"), StubValidator())
    assert decision.www_authenticate == f'Bearer scope="mcp:read", resource_metadata="{METADATA_URL}"'


X5T = base64.urlsafe_b64encode(CERT_DIGEST).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("mtls", "x5t", "certificate", "allowed", "reason"),
    [
        ("Optional", X5T, CERT_DIGEST, True, None),
        ("Optional", None, None, True, None),  # a plain bearer token
        ("Optional", X5T, None, False, "without a client certificate"),
        ("Optional", X5T, hashlib.sha256(b"another").digest(), False, "not the one the token is bound to"),
        ("Required", None, CERT_DIGEST, False, "must be certificate-bound"),
        ("Disabled", X5T, CERT_DIGEST, False, "not accepted from this issuer"),
    ],
)
async def test_certificate_bound_tokens(mtls, x5t, certificate, allowed, reason) -> None:
    snap = sender_policy(mtls=mtls)
    request = CheckRequest(HOST, "/mcp/tools", "GET", authorization=f"Bearer {TOKEN}", client_cert_sha256=certificate)
    decision = await decide(snap, request, StubValidator(bound(the_policy(snap, "mcp"), x5t=x5t)))
    assert decision.allowed is allowed
    if not allowed:
        assert (decision.status, decision.error) == (401, "invalid_token")
        assert reason in decision.description
