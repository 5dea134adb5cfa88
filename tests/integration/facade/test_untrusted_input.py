"""Hostile input at the facade's public endpoints: sealed values with deeply nested JWE
headers, nested registration bodies, lookalike loopback redirect URIs, forged client
addresses. Each gets the endpoint's normal bad-input answer; the module's authgate log is
checked for tracebacks and tokens (start_shared_facade)."""

from __future__ import annotations

import base64

import pytest
from tests.support.facade import (
    CALLBACK,
    LOOPBACK_REDIRECT,
    FacadeHarness,
    Registered,
    client_post,
    oauth_error,
    refresh,
    shown_error,
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sealed_lookalike(header: bytes) -> str:
    """Five segments, as a sealed value has, with `header` as its protected header."""
    return ".".join([_b64(header), "", _b64(b"\0" * 12), _b64(b"x" * 16), _b64(b"\0" * 16)])


HOSTILE_SEALED = {
    "nested_5000_deep": sealed_lookalike(b'{"alg":"dir","enc":"A256GCM","kid":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "nested_within_the_cap": sealed_lookalike(b'{"alg":"dir","enc":"A256GCM","kid":' + b"[" * 400 + b"]" * 400 + b"}"),
    "nan": sealed_lookalike(b'{"alg":"dir","enc":"A256GCM","kid":NaN}'),
    "not_utf8": sealed_lookalike(b'{"alg":"\xff"}'),
}


@pytest.mark.parametrize("value", HOSTILE_SEALED.values(), ids=HOSTILE_SEALED.keys())
def test_a_hostile_client_id_is_invalid_client_with_a_challenge(facade: FacadeHarness, value: str) -> None:
    response = facade.request(
        "POST", f"{facade.issuer}/oauth2/token", data={"grant_type": "refresh_token", "client_id": value}
    )
    assert oauth_error(response, 401) == "invalid_client"
    assert response.headers["www-authenticate"] == 'Basic realm="authgate"'


def test_every_invalid_client_401_has_a_challenge(facade: FacadeHarness, client: Registered) -> None:
    """RFC 9110 §15.5.2: also without an Authorization header, and for introspection by a public client."""
    unknown = facade.request("POST", f"{facade.issuer}/oauth2/token", data={"grant_type": "authorization_code"})
    assert oauth_error(unknown, 401) == "invalid_client"
    assert unknown.headers["www-authenticate"] == 'Basic realm="authgate"'
    public = client_post(facade, "introspect", {"token": "x"}, client)
    assert oauth_error(public, 401) == "invalid_client"
    assert public.headers["www-authenticate"] == 'Basic realm="authgate"'


@pytest.fixture(scope="module")
def refreshing_client(facade: FacadeHarness) -> Registered:
    return facade.register(grant_types=["authorization_code", "refresh_token"])


@pytest.mark.parametrize("value", HOSTILE_SEALED.values(), ids=HOSTILE_SEALED.keys())
def test_a_hostile_code_or_refresh_token_is_invalid_grant(
    facade: FacadeHarness, refreshing_client: Registered, value: str
) -> None:
    client = refreshing_client
    code_grant = {"grant_type": "authorization_code", "code": value, "code_verifier": "x" * 43}
    code = client_post(facade, "token", code_grant, client)
    assert oauth_error(code) == "invalid_grant"
    assert oauth_error(refresh(facade, client, value)) == "invalid_grant"


@pytest.mark.parametrize("value", HOSTILE_SEALED.values(), ids=HOSTILE_SEALED.keys())
def test_a_hostile_state_or_consent_value_is_shown_as_an_error(facade: FacadeHarness, value: str) -> None:
    callback = facade.request("GET", CALLBACK, params={"state": value, "code": "x"})
    assert "expired or is not valid" in shown_error(callback)
    consent = facade.request(
        "POST",
        f"{facade.issuer}/oauth2/authorize",
        data={"consent": value, "decision": "approve"},
        headers={"Origin": facade.issuer},
    )
    assert "expired" in shown_error(consent)


@pytest.mark.parametrize(
    "body",
    [
        b'{"redirect_uris": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"redirect_uris": ["http://127.0.0.1/cb"], "x": NaN}',
    ],
)
def test_a_hostile_registration_body_is_invalid_client_metadata(facade: FacadeHarness, body: bytes) -> None:
    response = facade.request(
        "POST", f"{facade.issuer}/oauth2/register", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 413)
    assert response.json()["error"] in ("invalid_client_metadata", "invalid_request")


@pytest.mark.parametrize(
    "uri",
    [
        "http://[::1].evil.example/cb",
        "http://[::1]evil.example/cb",
        "http://127.1/cb",
        "http://localhost.evil.example/cb",
        "http://[::1]@evil.example/cb",
    ],
)
def test_a_lookalike_loopback_redirect_is_refused_at_registration(facade: FacadeHarness, uri: str) -> None:
    response = facade.request(
        "POST",
        f"{facade.issuer}/oauth2/register",
        json={"redirect_uris": [uri], "token_endpoint_auth_method": "none", "client_name": "x"},
    )
    assert oauth_error(response) == "invalid_redirect_uri"


def test_forwarded_for_from_a_loopback_peer_does_not_reset_the_rate_limit(start_facade) -> None:
    """With the default --forwarded-for-hops 0 the limit keys on the socket's address: a client
    behind a local sidecar or port-forward cannot pick a fresh X-Forwarded-For per request."""
    facade = start_facade()
    body = {"redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none", "client_name": "x"}
    statuses = [
        facade.request(
            "POST", f"{facade.issuer}/oauth2/register", json=body, headers={"X-Forwarded-For": f"203.0.113.{i}"}
        ).status_code
        for i in range(25)
    ]
    assert statuses[:20] == [201] * 20  # the register burst
    assert set(statuses[20:]) == {429}
