"""The token endpoint's authorization_code grant (OAuth 2.1 draft 16 §3.2, §3.2.3, §4.1.2, §4.1.3,
§10.2; RFC 6749 §4.1.3, §5.1; RFC 7636 §4.6; RFC 8707 §2): the code is bound to the client, the
redirect_uri and the PKCE challenge, used once, short-lived; the answer is an access token for the
resource, never the upstream's id_token, and no cache keeps it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.infra.idp import TOKEN_EXCHANGE_GRANT
from tests.support.facade import (
    FACADE_ISSUER,
    FACADE_RESOURCE,
    POLICY_UID,
    FacadeHarness,
    Registered,
    authorization_code,
    client_post,
    code_grant,
    jwt_claims,
    oauth_error,
    pkce_pair,
)

from authgate.errors import SealError
from authgate.facade.records import CODE_TTL
from authgate.sealing import SealingKeys

OTHER_GRANTS = (
    "client_credentials",
    "password",
    TOKEN_EXCHANGE_GRANT,
    "implicit",
    "token",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:saml2-bearer",
    "Authorization_Code",
)


@pytest.fixture(scope="module")
def client(facade: FacadeHarness) -> Registered:
    return facade.register(grant_types=["authorization_code", "refresh_token"])


@pytest.fixture(scope="module")
def other(facade: FacadeHarness) -> Registered:
    return facade.register(client_name="Other app")


@pytest.fixture(scope="module")
def confidential(facade: FacadeHarness) -> Registered:
    return facade.register(
        token_endpoint_auth_method="client_secret_basic", grant_types=["authorization_code", "refresh_token"]
    )


def test_only_the_authorization_code_and_refresh_token_grants_are_supported(
    facade: FacadeHarness, client: Registered, confidential: Registered
) -> None:
    for who in (client, confidential):
        for grant_type in OTHER_GRANTS:
            data = {"grant_type": grant_type, "scope": "mcp:read", "username": "alice", "password": "x"}
            response = client_post(facade, "token", data, who)
            assert oauth_error(response) == "unsupported_grant_type", grant_type
        response = client_post(facade, "token", {"code": "x"}, who)
        assert oauth_error(response) == "invalid_request"


def test_a_code_issued_to_another_client_is_refused(
    facade: FacadeHarness, client: Registered, other: Registered, confidential: Registered
) -> None:
    flow, code = authorization_code(facade, client)
    for thief in (other, confidential):
        response = client_post(facade, "token", code_grant(flow, code), thief)
        assert oauth_error(response) == "invalid_grant"
    response = client_post(facade, "token", code_grant(flow, code), client)
    assert response.status_code == 200, response.text


def test_the_code_is_bound_to_the_redirect_uri_it_was_sent_to(facade: FacadeHarness, client: Registered) -> None:
    flow, code = authorization_code(facade, client)
    for redirect_uri in ("http://127.0.0.1:1/callback", "http://127.0.0.1:33418/other", None):
        data = code_grant(flow, code) | {"redirect_uri": redirect_uri}
        data = {k: v for k, v in data.items() if v is not None}
        response = client_post(facade, "token", data, client)
        assert oauth_error(response) == "invalid_grant", redirect_uri
    response = client_post(facade, "token", code_grant(flow, code), client)
    assert response.status_code == 200, response.text


def test_a_client_that_sent_no_redirect_uri_need_not_send_one_for_the_token(
    facade: FacadeHarness, client: Registered
) -> None:
    flow, code = authorization_code(facade, client, redirect_uri=None)
    data = code_grant(flow, code)
    assert "redirect_uri" not in data
    response = client_post(facade, "token", data, client)
    assert response.status_code == 200, response.text


def test_a_missing_code_verifier_is_refused(facade: FacadeHarness, client: Registered) -> None:
    flow, code = authorization_code(facade, client)
    data = code_grant(flow, code)
    del data["code_verifier"]
    response = client_post(facade, "token", data, client)
    assert oauth_error(response) == "invalid_grant"


def test_a_wrong_code_verifier_is_refused_with_invalid_grant(facade: FacadeHarness, client: Registered) -> None:
    flow, code = authorization_code(facade, client)
    other_verifier, _ = pkce_pair()
    for verifier in (other_verifier, flow.challenge, flow.verifier[:42], flow.verifier + "x" * 100, ""):
        data = code_grant(flow, code, code_verifier=verifier)
        response = client_post(facade, "token", data, client)
        assert oauth_error(response) == "invalid_grant"
    response = client_post(facade, "token", code_grant(flow, code), client)
    assert response.status_code == 200, response.text


def test_a_code_is_redeemed_only_once(facade: FacadeHarness, client: Registered) -> None:
    flow, code = authorization_code(facade, client)
    response = client_post(facade, "token", code_grant(flow, code), client)
    assert response.status_code == 200, response.text
    response = client_post(facade, "token", code_grant(flow, code), client)
    assert oauth_error(response) == "invalid_grant"


def test_the_code_expires_within_60_seconds(facade: FacadeHarness, client: Registered, sealing_keys: Path) -> None:
    assert CODE_TTL <= 60
    _, code = authorization_code(facade, client)
    issued_by = time.time()
    keys = SealingKeys.load(sealing_keys)  # the test's own keys: the code is read, not forged
    keys.open("code", FACADE_ISSUER, POLICY_UID, code)
    with pytest.raises(SealError, match="expired"):
        keys.open("code", FACADE_ISSUER, POLICY_UID, code, now=issued_by + 60)


def test_an_expired_code_is_refused(facade: FacadeHarness, client: Registered, sealing_keys: Path) -> None:
    flow, code = authorization_code(facade, client)
    keys = SealingKeys.load(sealing_keys)
    record = keys.open("code", FACADE_ISSUER, POLICY_UID, code)
    expired = keys.seal("code", FACADE_ISSUER, POLICY_UID, record, CODE_TTL, now=time.time() - CODE_TTL - 1)
    response = client_post(facade, "token", code_grant(flow, expired), client)
    assert oauth_error(response) == "invalid_grant"
    response = client_post(facade, "token", code_grant(flow, code), client)
    assert response.status_code == 200, response.text


def test_every_token_response_forbids_caching(
    facade: FacadeHarness, client: Registered, confidential: Registered
) -> None:
    flow, code = authorization_code(facade, confidential)
    issued = client_post(facade, "token", code_grant(flow, code), confidential)
    refresh = {"grant_type": "refresh_token", "refresh_token": issued.json()["refresh_token"]}
    responses = {
        "code": issued,
        "refresh": client_post(facade, "token", refresh, confidential),
        "invalid_grant": client_post(facade, "token", code_grant(flow, code), confidential),
        "invalid_client": facade.request(
            "POST", f"{FACADE_ISSUER}/oauth2/token", data=refresh, auth=(confidential.client_id, "wrong")
        ),
        "unsupported_grant_type": client_post(facade, "token", {"grant_type": "password"}, client),
        "invalid_request": facade.request("POST", f"{FACADE_ISSUER}/oauth2/token", json={"grant_type": "x"}),
    }
    assert {name: r.status_code for name, r in responses.items()} == {
        "code": 200,
        "refresh": 200,
        "invalid_grant": 400,
        "invalid_client": 401,
        "unsupported_grant_type": 400,
        "invalid_request": 400,
    }
    for name, response in responses.items():
        assert "no-store" in response.headers.get("cache-control", ""), name
        assert response.headers.get("pragma") == "no-cache", name


def test_no_id_token_is_ever_returned(facade: FacadeHarness, confidential: Registered) -> None:
    flow, code = authorization_code(facade, confidential)
    issued = client_post(facade, "token", code_grant(flow, code), confidential).json()
    refreshed = client_post(
        facade, "token", {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}, confidential
    ).json()
    for body in (issued, refreshed):
        fields, scope = sorted(body), body.get("scope", "").split()
        assert "access_token" in fields, fields
        assert "id_token" not in fields, "the upstream's id_token reached the client"
        assert "openid" not in scope, scope


def test_the_access_token_is_for_the_resource_and_passes_the_check(facade: FacadeHarness, client: Registered) -> None:
    flow, code = authorization_code(facade, client)
    token = client_post(facade, "token", code_grant(flow, code), client).json()["access_token"]
    audience = jwt_claims(token)["aud"]
    assert audience in (FACADE_RESOURCE, [FACADE_RESOURCE]), audience
    check = facade.authgate.nginx_check(FACADE_RESOURCE, "POST", token=token)
    assert check.status_code == 200, check.text


def test_a_token_response_carries_the_required_fields(facade: FacadeHarness, client: Registered) -> None:
    flow, code = authorization_code(facade, client, scope="mcp:read mcp:write")
    response = client_post(facade, "token", code_grant(flow, code), client)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    has_access_token = isinstance(body.get("access_token"), str) and len(body["access_token"]) > 0
    token_type, scope, expires_in = body.get("token_type", ""), body.get("scope", ""), body.get("expires_in")
    assert has_access_token
    assert token_type.lower() == "bearer", token_type
    assert set(scope.split()) == {"mcp:read", "mcp:write"}, scope
    assert isinstance(expires_in, int) and expires_in > 0, expires_in


def test_a_resource_other_than_the_codes_is_refused(facade: FacadeHarness, client: Registered) -> None:
    flow, code = authorization_code(facade, client)
    data = code_grant(flow, code, resource="https://other.example.com/mcp")
    response = client_post(facade, "token", data, client)
    assert oauth_error(response) == "invalid_target"
    response = client_post(facade, "token", code_grant(flow, code, resource=FACADE_RESOURCE), client)
    assert response.status_code == 200, response.text


def test_unrecognized_token_parameters_are_ignored(facade: FacadeHarness, client: Registered) -> None:
    flow, code = authorization_code(facade, client)
    data = code_grant(flow, code, x_vendor="1", nonce="n", client_assertion_type="x")
    response = client_post(facade, "token", data, client)
    assert response.status_code == 200, response.text


def test_a_token_parameter_sent_twice_is_refused(facade: FacadeHarness, client: Registered) -> None:
    flow, code = authorization_code(facade, client)
    pairs = [*code_grant(flow, code).items(), ("client_id", client.client_id)]
    for name, value in (("code", code), ("code_verifier", flow.verifier), ("grant_type", "authorization_code")):
        response = facade.request(
            "POST",
            f"{FACADE_ISSUER}/oauth2/token",
            content="&".join(f"{k}={v}" for k, v in [*pairs, (name, value)]),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert oauth_error(response) == "invalid_request", name
    response = client_post(facade, "token", code_grant(flow, code), client)
    assert response.status_code == 200, response.text


def test_token_parameters_sent_without_a_value_are_treated_as_omitted(
    facade: FacadeHarness, client: Registered
) -> None:
    outcomes = {}
    for name in ("redirect_uri", "resource"):
        flow, code = authorization_code(facade, client, redirect_uri=None)  # one registered: none needed
        response = client_post(facade, "token", code_grant(flow, code, **{name: ""}), client)
        outcomes[f"{name}="] = response.status_code if response.status_code == 200 else response.json()["error"]
    assert outcomes == {"redirect_uri=": 200, "resource=": 200}
