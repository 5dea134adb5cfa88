"""The facade's one error mapping: what a client or a browser sees for each error a handler raises."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from authgate.errors import (
    ClientError,
    KeysUnavailable,
    OAuthError,
    RedirectableError,
    RegistrationError,
    ShowError,
    UpstreamRefused,
    UpstreamUnavailable,
)
from authgate.facade.answers import error_answer

ISSUER = "https://mcp.example.com"


def json_body(response) -> dict:
    return json.loads(response.body)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (OAuthError(429, "slow_down", "too many requests"), 429, "slow_down"),
        (ClientError("client authentication failed"), 401, "invalid_client"),
        (RegistrationError("invalid_redirect_uri", "no"), 400, "invalid_redirect_uri"),
        (UpstreamRefused("invalid_grant", "the identity provider refused the grant"), 400, "invalid_grant"),
        (UpstreamUnavailable("down"), 503, "temporarily_unavailable"),
        (KeysUnavailable("https://idp", "down"), 503, "temporarily_unavailable"),
    ],
)
def test_a_json_endpoint_answers_rfc_6749_json_that_is_never_cached(error, status, code):
    response = error_answer(error, ISSUER, {"Access-Control-Allow-Origin": "*"}, page=False)
    assert response.status_code == status
    assert json_body(response)["error"] == code
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["access-control-allow-origin"] == "*"


def test_an_unauthenticated_client_is_told_the_scheme_and_a_rate_limited_one_when_to_retry():
    assert error_answer(ClientError("x"), ISSUER, {}, page=False).headers["www-authenticate"].startswith("Basic")
    assert error_answer(OAuthError(429, "slow_down", "x"), ISSUER, {}, page=False).headers["retry-after"] == "10"


def test_a_browser_endpoint_redirects_only_to_the_validated_redirect_uri_with_state_and_iss():
    error = RedirectableError("http://127.0.0.1:5000/cb?a=1", "access_denied", "the user denied access", "xyz")
    response = error_answer(error, ISSUER, {}, page=True)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query == {"a": ["1"], "error": ["access_denied"], "error_description": ["the user denied access"],
                     "state": ["xyz"], "iss": [ISSUER]}  # fmt: skip


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        (ShowError("unknown client: register it first"), 400, "unknown client: register it first."),
        (ClientError("client metadata documents are not accepted here"), 400, "cannot sign in here"),
        (UpstreamUnavailable("down"), 503, "The identity provider is unavailable"),
    ],
)
def test_a_browser_endpoint_shows_an_error_page(error, status, text):
    response = error_answer(error, ISSUER, {}, page=True)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert text in response.body.decode()
    assert response.headers["x-frame-options"] == "DENY"
