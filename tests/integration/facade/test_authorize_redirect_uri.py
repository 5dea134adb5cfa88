"""The authorization endpoint before it trusts anything (OAuth 2.1 draft 16 §2.3, §3.1, §4.1.1,
§4.1.2.1, §7.12, §7.13.2): until the client and its redirect_uri are known good, an error is shown
to the user and never redirected, so the facade cannot be used as an open redirector."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from tests.infra.idp import OidcProvider
from tests.support.facade import (
    FACADE_ISSUER,
    LOOPBACK_REDIRECT,
    POLICY_UID,
    FacadeHarness,
    Registered,
    facade_policy,
    pkce_pair,
    redirect_params,
    sealing_keys_file,
    shown_error,
)

from authgate.sealing import SealingKeys

ATTACKER = "https://attacker.example/callback"
WEB_REDIRECTS = ["https://app.example.com/cb", "https://app.example.com/other"]
INSPECTOR = "https://inspector.example.com"


@pytest.fixture(scope="module")
def facade(start_shared_facade, idp: OidcProvider) -> FacadeHarness:
    # CORS on for the policy, so that its absence at the authorization endpoint means something.
    return start_shared_facade(facade_policy(idp.issuer, extra_spec=f"  cors: {{allowedOrigins: [{INSPECTOR}]}}"))


@pytest.fixture(scope="module")
def native(facade: FacadeHarness) -> Registered:
    return facade.register()


@pytest.fixture(scope="module")
def web(facade: FacadeHarness) -> Registered:
    return facade.register(redirect_uris=WEB_REDIRECTS)


def authorize(facade: FacadeHarness, params: dict[str, str] | list[tuple[str, str]], **kwargs) -> httpx.Response:
    return facade.request("GET", f"{FACADE_ISSUER}/oauth2/authorize", params=params, **kwargs)


def request_for(client_id: str | None, redirect_uri: str | None, **overrides: str) -> dict[str, str]:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "mcp:read",
        "state": "client-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def test_an_unknown_or_missing_client_id_is_shown_never_redirected(facade: FacadeHarness, tmp_path: Path) -> None:
    # A client_id the attacker sealed with keys of their own, naming their redirect_uri.
    forged = SealingKeys.load(sealing_keys_file(tmp_path / "attacker.json")).seal(
        "client",
        FACADE_ISSUER,
        POLICY_UID,
        {"redirect_uris": [ATTACKER], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"]},
        3600,
        now=time.time(),
    )
    for client_id in (None, "", "not-a-client", "a.b.c.d.e", forged):
        for overrides in ({}, {"response_type": "token", "scope": "bogus"}):
            page = shown_error(authorize(facade, request_for(client_id, ATTACKER, **overrides)))
            assert "attacker.example" not in page, "the error page offers the unverified redirect_uri"


def test_a_redirect_uri_that_does_not_exactly_match_a_registered_one_is_shown_never_redirected(
    facade: FacadeHarness, native: Registered, web: Registered
) -> None:
    mismatches = {
        web.client_id: [
            ATTACKER,
            "https://app.example.com/cb/",
            "https://APP.example.com/cb",
            "https://app.example.com:443/cb",
            "https://app.example.com/%63b",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb#fragment",
            "http://app.example.com/cb",
            "",
        ],
        native.client_id: [
            "http://127.0.0.1:33418/callback/x",
            "http://127.0.0.1:33418/other",
            "http://localhost:33418/callback",
            "http://[::1]:33418/callback",
            "http://127.0.0.1.attacker.example:33418/callback",
            "https://127.0.0.1:33418/callback",
        ],
    }
    for client_id, uris in mismatches.items():
        for uri in uris:
            shown_error(authorize(facade, request_for(client_id, uri)))
    # Other errors in the same request are not reported to the unverified redirect_uri either.
    shown_error(authorize(facade, request_for(web.client_id, ATTACKER, response_type="token", scope="bogus")))


def test_a_client_with_several_redirect_uris_must_name_one(facade: FacadeHarness, web: Registered) -> None:
    shown_error(authorize(facade, request_for(web.client_id, None)))
    assert authorize(facade, request_for(web.client_id, WEB_REDIRECTS[1])).status_code == 200


def test_a_loopback_redirect_uri_may_use_any_port(facade: FacadeHarness, native: Registered) -> None:
    assert LOOPBACK_REDIRECT == "http://127.0.0.1:33418/callback"
    other_port = "http://127.0.0.1:50123/callback"
    flow = facade.start(native, redirect_uri=other_port)
    assert flow.consent_page is not None and flow.consent_page.status_code == 200, flow.consent_page.text[:300]
    denied = facade.decide(flow, "deny")
    assert denied.headers["location"].startswith(other_port + "?"), "the answer did not go to the port asked for"
    assert redirect_params(denied)["error"] == "access_denied"


def test_the_registered_redirect_uris_query_is_kept_when_parameters_are_added(facade: FacadeHarness) -> None:
    registered = "https://app.example.com/cb?tenant=blue"
    client = facade.register(redirect_uris=[registered])
    refused = authorize(facade, request_for(client.client_id, registered, scope="mcp:admin"))
    location = refused.headers["location"]
    assert location.startswith(registered + "&"), "the redirect_uri's own query was not kept"
    params = redirect_params(refused)
    assert (params["tenant"], params["error"], params["state"]) == ("blue", "invalid_scope", "client-state")


def test_the_authorization_endpoint_does_not_support_cors(facade: FacadeHarness, native: Registered) -> None:
    origin = {"Origin": INSPECTOR}
    # The policy allows this origin: its token endpoint answers CORS.
    preflight = facade.request("OPTIONS", f"{FACADE_ISSUER}/oauth2/token", headers=origin)
    assert preflight.headers.get("access-control-allow-origin") == INSPECTOR
    consent = authorize(facade, request_for(native.client_id, LOOPBACK_REDIRECT), headers=origin)
    refused = authorize(facade, request_for(native.client_id, LOOPBACK_REDIRECT, scope="bogus"), headers=origin)
    unknown = authorize(facade, request_for("nobody", LOOPBACK_REDIRECT), headers=origin)
    options = facade.request("OPTIONS", f"{FACADE_ISSUER}/oauth2/authorize", headers=origin)
    assert consent.status_code == 200 and refused.status_code == 302 and unknown.status_code == 400
    assert not 200 <= options.status_code < 300, options.status_code
    for response in (consent, refused, unknown, options):
        assert "access-control-allow-origin" not in response.headers, response.request.method


def test_a_malformed_authorization_request_is_a_4xx_never_a_5xx(facade: FacadeHarness, native: Registered) -> None:
    queries = [
        "client_id=%FF%FE&redirect_uri=%00",
        "client_id=%zz&response_type=%",
        "&&&=&=&client_id",
        "&".join(f"p{i}=1" for i in range(150)),
        "client_id=" + "A" * 12000,
        f"client_id={native.client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A33418%2Fcallback%00",
    ]
    for query in queries:
        response = facade.request("GET", f"{FACADE_ISSUER}/oauth2/authorize?{query}")
        assert 400 <= response.status_code < 500, f"{response.status_code} for {query[:60]}"
        assert "location" not in response.headers
