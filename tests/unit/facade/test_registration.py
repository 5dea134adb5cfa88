"""Facade client registration (RFC 7591) and redirect-URI rules (OAuth 2.1, RFC 8252)."""

import base64
import secrets

import pytest

from authgate.errors import RedirectError, RegistrationError, SealError
from authgate.facade.redirects import check_redirect_uri, redirect_matches
from authgate.facade.registration import register, registered_client, secret_matches
from authgate.sealing import SealingKeys

ISSUER, POLICY = "https://mcp.example.com", "uid-1"
SCOPES = frozenset({"mcp:read", "mcp:write"})


def new_key(kid: str) -> dict:
    return {"kty": "oct", "kid": kid, "k": base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()}


@pytest.fixture
def keys() -> SealingKeys:
    return SealingKeys.parse({"keys": [new_key("k1")]})


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb",
        "https://app.example.com/cb?x=1",
        "http://127.0.0.1:33418/callback",
        "http://[::1]:8080/cb",
        "http://localhost/cb",
    ],
)
def test_allowed_redirect_uris(uri):
    check_redirect_uri(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example.com/cb",
        "https://app.example.com/cb#frag",
        "javascript:alert(1)",
        "data:text/html,x",
        "file:///etc/passwd",
        "com.example.app:/callback",
        "https://user:pw@app.example.com/cb",
        "https:///cb",
        "https://app.example.com/c b",
        "http://127.0.0.1.evil.com/cb",
        "http://[::1].evil.example/cb",  # the bracketed host is not the whole host
        "http://[::1]evil.example/cb",
        "http://localhost.evil.example/cb",
        "http://127.1/cb",
        "http://[::1]@evil.example/cb",
        "https://app.example.com\\@evil.example/cb",
        "",
        "https://app.example.com:99999/",
    ],
)
def test_refused_redirect_uris(uri):
    with pytest.raises(RedirectError):
        check_redirect_uri(uri)


def test_loopback_redirects_match_any_port_and_nothing_else():
    registered = "http://127.0.0.1:1234/callback"
    assert redirect_matches(registered, "http://127.0.0.1:55555/callback")
    assert not redirect_matches(registered, "http://127.0.0.1:55555/other")
    assert not redirect_matches(registered, "http://localhost:55555/callback")
    assert not redirect_matches(registered, "http://127.0.0.1:55555/callback", mode="exact")
    assert redirect_matches("https://a.example.com/cb", "https://a.example.com/cb")
    assert not redirect_matches("https://a.example.com/cb", "https://a.example.com:8443/cb")


def test_a_public_client_registers_and_is_read_back(keys):
    request = {
        "redirect_uris": ["http://127.0.0.1:3000/cb"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
        "client_name": "Inspector",
        "grant_types": ["authorization_code", "refresh_token"],
    }
    result = register(keys, ISSUER, POLICY, request, SCOPES)
    assert result.client_secret is None and "client_secret" not in result.metadata
    assert result.metadata["client_name"] == "Inspector"
    stored = registered_client(keys, ISSUER, POLICY, result.client_id)
    assert stored["redirect_uris"] == ["http://127.0.0.1:3000/cb"]
    with pytest.raises(SealError):  # another facade or policy cannot use it
        registered_client(keys, "https://other.example.com", POLICY, result.client_id)


def test_a_confidential_client_gets_a_verifiable_secret_that_survives_rotation(keys):
    result = register(keys, ISSUER, POLICY, {"redirect_uris": ["https://app.example.com/cb"]}, SCOPES)
    assert result.client_secret and result.metadata["token_endpoint_auth_method"] == "client_secret_basic"
    assert secret_matches(keys, ISSUER, POLICY, result.client_id, result.client_secret)
    assert not secret_matches(keys, ISSUER, POLICY, result.client_id, "guess")
    rotated = SealingKeys(keys.keys + SealingKeys.parse({"keys": [new_key("k2")]}).keys)
    assert secret_matches(rotated, ISSUER, POLICY, result.client_id, result.client_secret)
    assert registered_client(rotated, ISSUER, POLICY, result.client_id)["redirect_uris"]


def test_identical_registrations_are_different_clients(keys):
    request = {"redirect_uris": ["https://app.example.com/cb"]}
    assert (
        register(keys, ISSUER, POLICY, request, SCOPES).client_id
        != register(keys, ISSUER, POLICY, request, SCOPES).client_id
    )


@pytest.mark.parametrize(
    ("request_body", "error"),
    [
        ({}, "invalid_client_metadata"),
        ({"redirect_uris": []}, "invalid_redirect_uri"),
        ({"redirect_uris": ["javascript:x"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://127.0.0.1/cb"], "application_type": "web"}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://127.0.0.1/cb", "https://a.example/cb"]}, "invalid_redirect_uri"),  # mixed: web
        (
            {"redirect_uris": ["https://a.example.com/cb"], "grant_types": ["client_credentials"]},
            "invalid_client_metadata",
        ),
        ({"redirect_uris": ["https://a.example.com/cb"], "response_types": ["token"]}, "invalid_client_metadata"),
        (
            {"redirect_uris": ["https://a.example.com/cb"], "token_endpoint_auth_method": "private_key_jwt"},
            "invalid_client_metadata",
        ),
        ({"redirect_uris": ["https://a.example.com/cb"], "scope": "admin"}, "invalid_client_metadata"),
        ({"redirect_uris": ["https://a.example.com/cb"], "logo_uri": "http://x"}, "invalid_client_metadata"),
        ([], "invalid_client_metadata"),
    ],
)
def test_bad_registrations_are_refused_with_the_rfc_error(keys, request_body, error):
    with pytest.raises(RegistrationError) as refused:
        register(keys, ISSUER, POLICY, request_body, SCOPES)
    assert refused.value.error == error
