"""The authorization request checks that come before consent."""

import base64
import secrets

import pytest

from authgate.errors import RedirectableError, SealError, ShowError
from authgate.facade.authorization_request import check_authorization_request, pkce_matches, s256, with_params
from authgate.facade.registration import register, registered_client
from authgate.sealing import SealingKeys

ISSUER, POLICY, RESOURCE = "https://mcp.example.com", "uid-1", "https://mcp.example.com/mcp"
SCOPES = frozenset({"mcp:read", "mcp:write"})
VERIFIER = "a" * 43


@pytest.fixture
def keys() -> SealingKeys:
    k = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return SealingKeys.parse({"keys": [{"kty": "oct", "kid": "k1", "k": k}]})


@pytest.fixture
def client_id(keys) -> str:
    request = {
        "redirect_uris": ["http://127.0.0.1:5000/cb"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    }
    return register(keys, ISSUER, POLICY, request, SCOPES).client_id


def params(registered: str, /, **overrides) -> dict[str, str]:
    base = {
        "client_id": registered,
        "redirect_uri": "http://127.0.0.1:61000/cb",
        "response_type": "code",
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
        "scope": "mcp:read",
        "state": "xyz",
        "resource": RESOURCE,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def check(keys, request):
    try:
        client = registered_client(keys, ISSUER, POLICY, request.get("client_id", ""))
    except SealError:
        client = None
    return check_authorization_request(request, client, RESOURCE, SCOPES)


def test_a_good_request_passes(keys, client_id):
    request = check(keys, params(client_id))
    assert request.redirect_uri == "http://127.0.0.1:61000/cb"  # loopback: any port
    assert request.scope == ("mcp:read",) and request.state == "xyz"


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "forged"},
        {"client_id": None},
        {"redirect_uri": "https://evil.example.com/cb"},
        {"redirect_uri": "http://127.0.0.1:61000/other"},
    ],
)
def test_untrusted_client_or_redirect_is_shown_never_redirected(keys, client_id, overrides):
    with pytest.raises(ShowError):
        check(keys, params(client_id, **overrides))


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"resource": "https://other.example.com/api"}, "invalid_target"),
        ({"scope": "mcp:read admin"}, "invalid_scope"),
    ],
)
def test_errors_after_the_redirect_uri_is_trusted_go_back_to_the_client(keys, client_id, overrides, error):
    with pytest.raises(RedirectableError) as refused:
        check(keys, params(client_id, **overrides))
    assert refused.value.error == error and refused.value.state == "xyz"
    assert refused.value.redirect_uri == "http://127.0.0.1:61000/cb"


def test_pkce_s256():
    assert pkce_matches(VERIFIER, s256(VERIFIER))
    assert not pkce_matches("b" * 43, s256(VERIFIER))
    assert not pkce_matches(None, s256(VERIFIER))
    assert not pkce_matches("short", s256("short"))  # verifier shorter than RFC 7636 allows
    # RFC 7636 appendix B test vector
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_redirect_parameters_keep_the_registered_query():
    assert with_params("https://a.example.com/cb?x=1", {"code": "c", "state": "s"}) == (
        "https://a.example.com/cb?x=1&code=c&state=s"
    )
