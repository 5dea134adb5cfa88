"""The test IdP's token exchange (RFC 8693), mTLS client auth (RFC 8705) and opaque
tokens with introspection (RFC 7662) and revocation (RFC 7009) work.

Real node + oidc-provider over https, real HTTP calls with httpx. authgate is not
involved: these prove the IdP side that authgate's exchange tests rely on.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from jwcrypto import jwk, jwt
from tests.infra.idp import (
    ACCESS_TOKEN_TYPE,
    DEFAULT_USER,
    EXCHANGE_AUDIENCE,
    EXCHANGE_CLIENT,
    MTLS_EXCHANGE_CLIENT,
    MTLS_EXCHANGE_CN,
    OPAQUE_RESOURCE,
    PUBLIC_CLIENT,
    RESOURCES_BY_ALG,
    SERVICE_CLIENT,
    IdpError,
    OidcProvider,
    install_problem,
)
from tests.infra.tls import TestCA

pytestmark = pytest.mark.integration

ALGS = {"RS256": ("RSA", {"size": 2048}), "ES256": ("EC", {"crv": "P-256"}), "EdDSA": ("OKP", {"crv": "Ed25519"})}


def require_idp() -> None:
    problem = install_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{problem}: CI must run `make tools` before the tests")
    pytest.skip(problem)


def private_jwks() -> jwk.JWKSet:
    keys = jwk.JWKSet()
    for alg, (kty, params) in ALGS.items():
        key = jwk.JWK.generate(kty=kty, alg=alg, use="sig", kid=f"{alg.lower()}-test", **params)
        keys.add(key)
    return keys


@pytest.fixture(scope="module")
def signing_keys() -> jwk.JWKSet:
    """The IdP's own private keys (passed as jwks_path), so tests can mint tokens
    it really signed but that are expired."""
    return private_jwks()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("exchange-pki"))


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory, ca: TestCA, signing_keys: jwk.JWKSet):
    require_idp()
    work_dir = tmp_path_factory.mktemp("idp-exchange")
    jwks_path = work_dir / "jwks.json"
    jwks_path.write_text(signing_keys.export(private_keys=True))
    with OidcProvider(work_dir, ca=ca, mtls=True, test_controls=True, jwks_path=jwks_path) as provider:
        yield provider


@pytest.fixture
def ok_mode(idp: OidcProvider):
    """Whatever a test does to the exchange mode, the next one starts from "ok"."""
    idp.set_exchange_mode("ok")
    yield
    idp.set_exchange_mode("ok")


def verify(idp: OidcProvider, token: str) -> tuple[dict, dict]:
    keys = jwk.JWKSet.from_json(json.dumps(idp.jwks()))
    verified = jwt.JWT(jwt=token, key=keys, algs=["RS256"], expected_type="JWS")
    return verified.token.jose_header, json.loads(verified.claims)


def subject_token(idp: OidcProvider, alg: str = "RS256", scope: str = "mcp:read") -> str:
    assert SERVICE_CLIENT.client_secret
    return idp.client_credentials_token(
        SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, RESOURCES_BY_ALG[alg], scope
    )


def error_of(response: httpx.Response) -> str:
    return response.json()["error"]


def exchange_with_secret(idp: OidcProvider, token: str, **kwargs) -> httpx.Response:
    return idp.exchange_request(token, EXCHANGE_CLIENT.client_id, EXCHANGE_CLIENT.client_secret, **kwargs)


# -- token exchange, client_secret_basic -------------------------------------------
@pytest.mark.parametrize("alg", sorted(RESOURCES_BY_ALG))
def test_exchange_issues_a_token_for_the_audience(idp: OidcProvider, ok_mode: None, alg: str) -> None:
    subject = subject_token(idp, alg)
    _, subject_claims = verify_any(idp, subject)
    body = idp.exchange(
        subject,
        EXCHANGE_CLIENT.client_id,
        EXCHANGE_CLIENT.client_secret,
        audience=EXCHANGE_AUDIENCE,
        scope="downstream:read",
    )
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["access_token"] != subject
    header, claims = verify(idp, body["access_token"])
    assert header["alg"] == "RS256" and header["typ"] == "at+jwt"
    assert claims["iss"] == idp.issuer
    assert claims["aud"] == EXCHANGE_AUDIENCE
    assert claims["sub"] == subject_claims["sub"] == SERVICE_CLIENT.client_id
    assert claims["client_id"] == EXCHANGE_CLIENT.client_id
    assert claims["scope"] == "downstream:read"
    assert claims["act"] == {"sub": EXCHANGE_CLIENT.client_id}
    assert claims["exp"] - claims["iat"] == 300


def verify_any(idp: OidcProvider, token: str) -> tuple[dict, dict]:
    keys = jwk.JWKSet.from_json(json.dumps(idp.jwks()))
    verified = jwt.JWT(jwt=token, key=keys, algs=list(ALGS), expected_type="JWS")
    return verified.token.jose_header, json.loads(verified.claims)


def test_exchange_of_a_user_token_keeps_the_user(idp: OidcProvider, ok_mode: None) -> None:
    tokens = idp.authorization_code_flow(PUBLIC_CLIENT, resource=RESOURCES_BY_ALG["RS256"], scope="openid mcp:read")
    body = idp.exchange(
        tokens["access_token"],
        EXCHANGE_CLIENT.client_id,
        EXCHANGE_CLIENT.client_secret,
        resource=EXCHANGE_AUDIENCE,
        audience=None,
    )
    _, claims = verify(idp, body["access_token"])
    assert claims["sub"] == DEFAULT_USER["sub"]
    assert claims["aud"] == EXCHANGE_AUDIENCE  # `resource` stands in for `audience`
    assert claims["scope"] == "mcp:read"  # no scope asked: the subject's allowed ones
    # An ID token is signed by the same keys but is no access token.
    refused = exchange_with_secret(idp, tokens["id_token"])
    assert refused.status_code == 400 and error_of(refused) == "invalid_grant"


def test_exchanged_token_can_be_exchanged_again_and_nests_act(idp: OidcProvider, ok_mode: None) -> None:
    first = idp.exchange(subject_token(idp), EXCHANGE_CLIENT.client_id, EXCHANGE_CLIENT.client_secret)
    second = idp.exchange(
        first["access_token"],
        EXCHANGE_CLIENT.client_id,
        EXCHANGE_CLIENT.client_secret,
        audience="https://third.example",
    )
    _, claims = verify(idp, second["access_token"])
    assert claims["aud"] == "https://third.example"
    assert claims["act"] == {"sub": EXCHANGE_CLIENT.client_id, "act": {"sub": EXCHANGE_CLIENT.client_id}}


@pytest.mark.parametrize("kind", ["garbage", "foreign-key", "expired", "opaque"])
def test_bad_subject_token_is_invalid_grant(
    idp: OidcProvider, ok_mode: None, signing_keys: jwk.JWKSet, kind: str
) -> None:
    now = int(time.time())
    claims = {"iss": idp.issuer, "sub": "mallory", "aud": RESOURCES_BY_ALG["RS256"], "client_id": "service"}
    header = {"alg": "RS256", "typ": "at+jwt", "kid": "rs256-test"}
    if kind == "garbage":
        token = "not-a-token"
    elif kind == "foreign-key":  # same kid, issuer and shape, another key
        forged = jwt.JWT(header=header, claims={**claims, "iat": now, "exp": now + 300})
        forged.make_signed_token(jwk.JWK.generate(kty="RSA", size=2048))
        token = forged.serialize()
    elif kind == "expired":  # the IdP's own key, but expired
        expired = jwt.JWT(header=header, claims={**claims, "iat": now - 900, "exp": now - 600})
        expired.make_signed_token(signing_keys.get_key("rs256-test"))
        token = expired.serialize()
    else:
        assert SERVICE_CLIENT.client_secret
        token = idp.client_credentials_token(
            SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, OPAQUE_RESOURCE, "mcp:read"
        )
    response = exchange_with_secret(idp, token)
    assert response.status_code == 400, response.text
    assert error_of(response) == "invalid_grant"


def test_freshly_signed_token_with_the_idp_key_is_accepted(
    idp: OidcProvider, ok_mode: None, signing_keys: jwk.JWKSet
) -> None:
    """Control for the "expired" case above: the same token, unexpired, passes."""
    now = int(time.time())
    token = jwt.JWT(
        header={"alg": "RS256", "typ": "at+jwt", "kid": "rs256-test"},
        claims={"iss": idp.issuer, "sub": "bob", "client_id": "service", "iat": now, "exp": now + 300},
    )
    token.make_signed_token(signing_keys.get_key("rs256-test"))
    response = exchange_with_secret(idp, token.serialize())
    assert response.status_code == 200, response.text


def test_client_not_allowed_to_exchange_is_unauthorized_client(idp: OidcProvider, ok_mode: None) -> None:
    assert SERVICE_CLIENT.client_secret
    response = idp.exchange_request(subject_token(idp), SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret)
    assert response.status_code == 400
    assert error_of(response) == "unauthorized_client"


def test_wrong_secret_is_invalid_client(idp: OidcProvider, ok_mode: None) -> None:
    response = idp.exchange_request(subject_token(idp), EXCHANGE_CLIENT.client_id, "wrong")
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"


def test_scope_outside_the_allowed_set_is_invalid_scope(idp: OidcProvider, ok_mode: None) -> None:
    response = exchange_with_secret(idp, subject_token(idp), scope="downstream:read admin:everything")
    assert response.status_code == 400
    assert error_of(response) == "invalid_scope"


def test_missing_audience_is_invalid_target(idp: OidcProvider, ok_mode: None) -> None:
    response = exchange_with_secret(idp, subject_token(idp), audience=None)
    assert response.status_code == 400
    assert error_of(response) == "invalid_target"


def test_unsupported_token_types_are_invalid_request(idp: OidcProvider, ok_mode: None) -> None:
    subject = subject_token(idp)
    saml = "urn:ietf:params:oauth:token-type:saml2"
    for response in (
        exchange_with_secret(idp, subject, subject_token_type=saml),
        exchange_with_secret(idp, subject, requested_token_type=saml),
    ):
        assert response.status_code == 400
        assert error_of(response) == "invalid_request"


# -- fault modes ------------------------------------------------------------------
def test_garbage_mode_answers_200_with_a_non_json_body(idp: OidcProvider, ok_mode: None) -> None:
    subject = subject_token(idp)
    idp.set_exchange_mode("garbage")
    response = exchange_with_secret(idp, subject)
    assert response.status_code == 200
    assert not response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    with pytest.raises(IdpError):
        idp.exchange(subject, EXCHANGE_CLIENT.client_id, EXCHANGE_CLIENT.client_secret)  # JSON decode fails


def test_error500_mode_and_back_to_ok(idp: OidcProvider, ok_mode: None) -> None:
    subject = subject_token(idp)
    idp.set_exchange_mode("error500")
    assert exchange_with_secret(idp, subject).status_code == 500
    idp.set_exchange_mode("ok")
    assert exchange_with_secret(idp, subject).status_code == 200


def test_delay_mode_answers_slowly(idp: OidcProvider, ok_mode: None) -> None:
    subject = subject_token(idp)
    idp.set_exchange_mode("ok", delay_ms=1200)
    started = time.monotonic()
    assert exchange_with_secret(idp, subject).status_code == 200
    assert time.monotonic() - started >= 1.1
    with pytest.raises(httpx.ReadTimeout):
        exchange_with_secret(idp, subject, timeout=0.3)


def test_exchange_count_counts_requests(idp: OidcProvider, ok_mode: None) -> None:
    subject = subject_token(idp)
    before = idp.exchange_count()
    exchange_with_secret(idp, subject)
    exchange_with_secret(idp, "not-a-token")
    assert idp.exchange_count() == before + 2
    idp.reset_exchange_count()
    assert idp.exchange_count() == 0


def test_test_controls_exist_only_when_enabled(tmp_path: Path) -> None:
    require_idp()
    with OidcProvider(tmp_path) as plain:
        with plain.http_client() as client:
            assert client.get(f"{plain.issuer}/__test/exchange").status_code == 404
        with pytest.raises(IdpError):
            plain.set_exchange_mode("garbage")
        assert "mtls_endpoint_aliases" not in plain.discovery


# -- mTLS client authentication (RFC 8705 tls_client_auth) -----------------------------
def test_discovery_advertises_the_mtls_alias(idp: OidcProvider) -> None:
    alias = httpx.URL(idp.mtls_token_endpoint)
    assert alias.scheme == "https" and alias.port == idp.mtls_port
    assert "tls_client_auth" in idp.discovery["token_endpoint_auth_methods_supported"]


def test_mtls_client_with_a_ca_certificate_exchanges(idp: OidcProvider, ca: TestCA, ok_mode: None) -> None:
    cert = ca.issue_client_cert("authgate-exchange", common_name=MTLS_EXCHANGE_CN)
    body = idp.exchange(subject_token(idp), MTLS_EXCHANGE_CLIENT.client_id, cert=cert, scope="downstream:write")
    _, claims = verify(idp, body["access_token"])
    assert claims["client_id"] == MTLS_EXCHANGE_CLIENT.client_id
    assert claims["act"] == {"sub": MTLS_EXCHANGE_CLIENT.client_id}
    assert claims["aud"] == EXCHANGE_AUDIENCE
    assert claims["scope"] == "downstream:write"


def test_mtls_client_without_a_certificate_is_invalid_client(idp: OidcProvider, ok_mode: None) -> None:
    response = idp.exchange_request(subject_token(idp), MTLS_EXCHANGE_CLIENT.client_id)
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"


def test_mtls_client_with_the_wrong_subject_is_invalid_client(idp: OidcProvider, ca: TestCA, ok_mode: None) -> None:
    cert = ca.issue_client_cert("someone-else", common_name="someone-else")
    response = idp.exchange_request(subject_token(idp), MTLS_EXCHANGE_CLIENT.client_id, cert=cert)
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"


def test_mtls_client_with_a_certificate_from_another_ca_is_invalid_client(
    idp: OidcProvider, tmp_path: Path, ok_mode: None
) -> None:
    rogue_ca = TestCA(tmp_path / "rogue", name="rogue CA")
    cert = rogue_ca.issue_client_cert("rogue", common_name=MTLS_EXCHANGE_CN)
    assert idp.ca is not None
    context = idp.ca.ssl_context()  # trust the IdP, present the rogue certificate
    context.load_cert_chain(str(cert.cert), str(cert.key))
    data = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": subject_token(idp),
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": EXCHANGE_AUDIENCE,
        "client_id": MTLS_EXCHANGE_CLIENT.client_id,
    }
    with httpx.Client(verify=context, trust_env=False, timeout=10) as client:
        response = client.post(idp.mtls_token_endpoint, data=data)
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"


def test_mtls_client_on_the_plain_endpoint_is_invalid_client(idp: OidcProvider, ca: TestCA, ok_mode: None) -> None:
    data = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": subject_token(idp),
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "audience": EXCHANGE_AUDIENCE,
        "client_id": MTLS_EXCHANGE_CLIENT.client_id,
    }
    with idp.http_client() as client:
        response = client.post(idp.token_endpoint, data=data)
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"


# -- opaque tokens, introspection, revocation ------------------------------------------
def test_opaque_token_introspects_then_revocation_deactivates_it(idp: OidcProvider) -> None:
    assert SERVICE_CLIENT.client_secret and EXCHANGE_CLIENT.client_secret
    token = idp.client_credentials_token(
        SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, OPAQUE_RESOURCE, "mcp:read"
    )
    assert token.count(".") == 0  # not a JWT
    info = idp.introspect(token, EXCHANGE_CLIENT.client_id, EXCHANGE_CLIENT.client_secret)
    assert info["active"] is True
    assert info["scope"] == "mcp:read"
    assert info["client_id"] == SERVICE_CLIENT.client_id
    assert info["sub"] == SERVICE_CLIENT.client_id
    assert info["aud"] == OPAQUE_RESOURCE
    assert info["iss"] == idp.issuer
    assert info["token_type"] == "Bearer"
    assert info["exp"] > time.time()

    idp.revoke(token, SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret)
    assert idp.introspect(token, EXCHANGE_CLIENT.client_id, EXCHANGE_CLIENT.client_secret) == {"active": False}


def test_introspection_needs_client_authentication(idp: OidcProvider) -> None:
    assert SERVICE_CLIENT.client_secret
    token = idp.client_credentials_token(
        SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, OPAQUE_RESOURCE, "mcp:read"
    )
    with pytest.raises(IdpError, match="401"):
        idp.introspect(token, EXCHANGE_CLIENT.client_id, "wrong")
    assert idp.introspect("unknown-token", EXCHANGE_CLIENT.client_id, EXCHANGE_CLIENT.client_secret or "") == {
        "active": False
    }
