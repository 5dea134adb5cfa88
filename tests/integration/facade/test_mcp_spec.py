"""The MCP authorization spec's requirements on an authorization server, revisions 2025-11-25
(basic/authorization) and 2026-07-28 (basic/authorization/: index, authorization-server-
discovery, client-registration, security-considerations), proven against the facade in front of
the real oidc-provider. Discovery, registration and client metadata documents have modules of
their own (test_discovery, test_registration, test_cimd); docs/facade-conformance.md
maps every requirement to its test.

The facade here runs with `consent: remember`, the mode in which "consent for each dynamically
registered client" can go wrong; a first authorization in a browser still asks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from tests.infra.idp import OidcProvider
from tests.support.facade import (
    FACADE_ISSUER,
    FACADE_RESOURCE,
    LOOPBACK_REDIRECT,
    UPSTREAM_CLIENT,
    FacadeHarness,
    Flow,
    authorization_code,
    callback_url,
    client_post,
    code_grant,
    facade_from,
    facade_policy,
    fingerprint,
    is_consent_page,
    jwt_claims,
    loopback_address,
    oauth_error,
    query_of,
    redirect_params,
    set_cookies,
    shown_error,
    start_in,
)

from authgate.policy import ValidationSettings, compile_loaded, load_files

GRANTS = ["authorization_code", "refresh_token"]
ATTACKER = "https://attacker.example/cb"
METADATA_URLS = [
    f"{FACADE_ISSUER}/.well-known/oauth-authorization-server",
    f"{FACADE_ISSUER}/.well-known/openid-configuration",
]


@pytest.fixture(scope="module")
def gate(start_shared_facade: Callable[..., FacadeHarness], idp: OidcProvider) -> FacadeHarness:
    return start_shared_facade(facade_policy(idp.issuer, consent="remember"))


@pytest.fixture
def facade(gate: FacadeHarness) -> Iterator[FacadeHarness]:
    """The module's facade from a source address of this test's own (per-address rate limits)."""
    harness = facade_from(gate, loopback_address())
    yield harness
    harness.close()


def error_redirect(response: httpx.Response) -> dict[str, str]:
    """An authorization error sent back to the client's redirect_uri (OAuth 2.1 §4.1.2.1)."""
    assert response.status_code in (302, 303), f"{response.status_code}: {response.text[:300]}"
    assert response.headers["location"].startswith(LOOPBACK_REDIRECT + "?"), urlsplit(response.headers["location"])
    params = query_of(response.headers["location"])
    assert "error" in params and "code" not in params, sorted(params)
    return params


@pytest.mark.parametrize("method", ["none", "client_secret_basic", "client_secret_post"])
def test_mcp_authorization_server_implements_oauth21_for_public_and_confidential_clients(
    facade: FacadeHarness, method: str
) -> None:
    """MCP 2025-11-25 / 2026-07-28 Overview 1: authorization servers MUST implement OAuth 2.1
    with appropriate security measures for both confidential and public clients: each kind
    gets a token for the resource through the authorization code flow with PKCE, and the token
    passes the resource's check."""
    client = facade.register(token_endpoint_auth_method=method)
    tokens = facade.login(client)
    assert tokens["token_type"] == "Bearer"
    check = facade.authgate.nginx_check(FACADE_RESOURCE, "POST", token=tokens["access_token"])  # type: ignore[attr-defined]
    assert check.status_code == 200, check.status_code


@pytest.mark.parametrize(
    "pkce",
    [
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge_method": None},
        {"code_challenge_method": "plain"},
        {"code_challenge": "too-short", "code_challenge_method": "S256"},
    ],
    ids=["absent", "method-absent", "plain", "not-an-s256-challenge"],
)
def test_mcp_pkce_with_s256_is_required_for_every_authorization_request(facade: FacadeHarness, pkce: dict) -> None:
    """MCP "Authorization Code Protection" (clients MUST use PKCE with S256; the server's
    metadata advertises S256, test_discovery) and OAuth 2.1 §4.1.1/§7.5.2: an authorization
    request without an S256 code_challenge is refused with invalid_request, before any consent."""
    client = facade.register()
    response = facade.start(client, **pkce).consent_page
    assert response is not None
    assert error_redirect(response)["error"] == "invalid_request"


@pytest.mark.parametrize("verifier", ["absent", "another-flows", "the-challenge-itself"])
def test_mcp_pkce_code_verifier_must_match_before_a_token_is_issued(facade: FacadeHarness, verifier: str) -> None:
    """MCP "Authorization Code Protection" (PKCE prevents code interception and injection) and
    OAuth 2.1 §4.1.3: the token endpoint issues nothing unless the code_verifier matches the
    code_challenge of the authorization request."""
    client = facade.register()
    flow, code = authorization_code(facade, client)
    other, _ = authorization_code(facade, client)
    data = code_grant(flow, code)
    if verifier == "absent":
        del data["code_verifier"]
    elif verifier == "another-flows":
        data["code_verifier"] = other.verifier
    else:
        data["code_verifier"] = flow.challenge
    assert oauth_error(client_post(facade, "token", data, client)) == "invalid_grant"


@pytest.mark.parametrize("where", ["authorization-request", "token-request"])
def test_mcp_resource_parameter_for_another_resource_is_refused_with_invalid_target(
    facade: FacadeHarness, where: str
) -> None:
    """MCP "Resource Parameter Implementation" / "Token Audience Binding" (RFC 8707 §2): the
    resource a client names in the authorization or token request is honoured; a resource this
    authorization server does not issue tokens for is refused with invalid_target."""
    client = facade.register()
    other = "https://es256.example.com/mcp"  # a real resource of the same upstream
    if where == "authorization-request":
        response = facade.start(client, resource=other).consent_page
        assert response is not None
        assert error_redirect(response)["error"] == "invalid_target"
    else:
        flow, code = authorization_code(facade, client)
        refused = client_post(facade, "token", code_grant(flow, code, resource=other), client)
        assert oauth_error(refused) == "invalid_target"


@pytest.mark.parametrize("resource", [FACADE_RESOURCE, None], ids=["named", "omitted"])
def test_mcp_issued_access_token_is_audience_bound_to_the_mcp_server(
    facade: FacadeHarness, resource: str | None
) -> None:
    """MCP "Token Audience Binding and Validation" / "Access Token Privilege Restriction"
    (RFC 8707, RFC 9068 `aud`): the token is bound to the MCP server's canonical URI, whether
    or not the client named it, and so it is accepted there and nowhere else."""
    client = facade.register()
    tokens = facade.login(client, resource=resource)
    audience = jwt_claims(tokens["access_token"])["aud"]
    assert (audience if isinstance(audience, list) else [audience]) == [FACADE_RESOURCE]
    gate = facade.authgate  # type: ignore[attr-defined]
    assert gate.nginx_check(FACADE_RESOURCE, "POST", token=tokens["access_token"]).status_code == 200


@pytest.mark.parametrize(
    "redirect_uri",
    [
        ATTACKER,
        "http://127.0.0.1:33418/callback/",
        "http://127.0.0.1:33418/callback?next=/",
        "http://127.0.0.1:33418/Callback",
        "http://localhost:33418/callback",
        "https://127.0.0.1:33418/callback",
        "http://127.0.0.1:33418/callback#",
        "http://127.0.0.1:33418/callback#frag",
        "http://user@127.0.0.1:33418/callback",
    ],
)
def test_mcp_authorization_server_validates_exact_redirect_uris(facade: FacadeHarness, redirect_uri: str) -> None:
    """MCP "Open Redirection": authorization servers MUST validate exact redirect URIs against
    pre-registered values (loopback port aside, RFC 8252 §7.3); a mismatch is shown to the user,
    never redirected to (OAuth 2.1 §4.1.2.1)."""
    client = facade.register()
    response = facade.start(client, redirect_uri=redirect_uri).consent_page
    assert response is not None
    assert "attacker.example" not in shown_error(response)


@pytest.mark.parametrize("client_id", ["absent", "unknown", "tampered", "http-url"])
def test_mcp_no_redirect_to_an_untrusted_uri(facade: FacadeHarness, client_id: str) -> None:
    """MCP "Open Redirection": authorization servers MUST take precautions to prevent redirecting
    user agents to untrusted URIs (OAuth 2.1 §7.12.2, §4.1.2.1): without a known client, no
    redirect_uri is trusted, whatever else is wrong with the request (MCP "Error Handling": a
    malformed authorization request is a 400)."""
    registered = facade.register()
    ids = {
        "absent": None,
        "unknown": "my-app",
        "tampered": registered.client_id[:-4] + ("AAAA" if not registered.client_id.endswith("AAAA") else "BBBB"),
        "http-url": "http://attacker.example/client.json",
    }
    params, _, _ = facade.authorize_params(registered, redirect_uri=ATTACKER, client_id=ids[client_id])
    for extra in ({}, {"response_type": "token"}, {"scope": "bogus"}):
        response = facade.request("GET", f"{FACADE_ISSUER}/oauth2/authorize", params=params | extra)
        assert response.status_code == 400, response.status_code
        assert "attacker.example" not in shown_error(response)


def test_mcp_consent_is_obtained_for_each_dynamically_registered_client_before_the_upstream(
    facade: FacadeHarness,
) -> None:
    """MCP 2025-11-25 / 2026-07-28 "Confused Deputy Problem": MCP proxy servers using static
    client IDs (the facade's one upstream client) MUST obtain user consent for each dynamically
    registered client before forwarding to the third-party authorization server. A remembered
    approval of client A never lets client B through to the upstream unasked."""
    first, second = facade.register(client_name="App A"), facade.register(client_name="App B")
    flow = facade.start(first)
    assert flow.consent_page is not None and is_consent_page(flow.consent_page)
    assert "location" not in flow.consent_page.headers
    decision = facade.decide(flow, "approve")
    assert decision.status_code == 303 and decision.headers["location"].startswith(facade.idp.authorization_endpoint)
    browser = dict(flow.cookies) | set_cookies(decision)  # the same browser, with what the approval set
    remembered = start_in(facade, first, browser)
    assert remembered.consent_page is not None and remembered.consent_page.status_code == 303  # A: remembered
    other = start_in(facade, second, browser)
    assert other.consent_page is not None and is_consent_page(other.consent_page), other.consent_page.status_code
    assert "App B" in other.consent_page.text


def _authorization_responses(facade: FacadeHarness) -> dict[str, httpx.Response]:
    """One of each kind of authorization response the facade sends a client."""
    client = facade.register()
    flow = facade.start(client)
    success = facade.approve(flow)
    denied_flow = facade.start(client)
    return {
        "code": success,
        "access_denied": facade.decide(denied_flow, "deny"),
        "invalid_scope": facade.start(client, scope="mcp:admin").consent_page,  # type: ignore[dict-item]
        "unsupported_response_type": facade.start(client, response_type="token").consent_page,  # type: ignore[dict-item]
        "invalid_request": facade.start(client, code_challenge=None).consent_page,  # type: ignore[dict-item]
    }


def test_rfc9207_iss_is_in_every_authorization_response(facade: FacadeHarness) -> None:
    """RFC 9207 §2 (a server supporting it MUST include `iss` in authorization responses,
    including error responses, identical to its metadata `issuer`, §2.3) and MCP 2026-07-28
    "Authorization Response Validation" (SHOULD include it; advertised, so it must be there)."""
    issuer = facade.metadata()["issuer"]
    for kind, response in _authorization_responses(facade).items():
        params = redirect_params(response)
        assert params.get("iss") == issuer, f"{kind}: iss={params.get('iss')!r}"
        assert kind in params or params.get("error") == kind, f"{kind}: {sorted(params)}"


def test_mcp_access_tokens_never_travel_in_a_uri_query(facade: FacadeHarness) -> None:
    """MCP "Access Token Usage" 2 (access tokens MUST NOT be in the URI query string) and OAuth
    2.1 (no implicit grant): the authorization response carries only code, state and iss, a
    request for response_type=token gets no token, and the token endpoint does not answer GET."""
    for kind, response in _authorization_responses(facade).items():
        params = set(redirect_params(response))
        assert params <= {"code", "state", "iss", "error", "error_description"}, f"{kind}: {sorted(params)}"
    client = facade.register()
    flow, code = authorization_code(facade, client)
    query = code_grant(flow, code) | {"client_id": client.client_id}
    response = facade.request("GET", f"{FACADE_ISSUER}/oauth2/token", params=query)
    assert response.status_code == 405, response.status_code
    assert "access_token" not in response.text
    by_query = facade.request("POST", f"{FACADE_ISSUER}/oauth2/token", params=query)
    assert by_query.status_code == 400 and "access_token" not in by_query.json(), by_query.status_code


def test_mcp_all_authorization_server_endpoints_are_https(facade: FacadeHarness, tmp_path: Path) -> None:
    """MCP "Communication Security" (OAuth 2.1 §1.5): all authorization server endpoints MUST
    be served over HTTPS: every endpoint the metadata names is an https URL, and a policy whose
    facade issuer is http is refused, even where http is otherwise permitted."""
    for url in METADATA_URLS:
        document = facade.request("GET", url).json()
        endpoints = {name: value for name, value in document.items() if name == "issuer" or name.endswith("_endpoint")}
        assert len(endpoints) >= 5, sorted(endpoints)
        plain = sorted(name for name, value in endpoints.items() if not value.startswith("https://"))
        assert plain == [], plain
    policy = tmp_path / "http-facade.yaml"
    policy.write_text(
        facade_policy("https://idp.example.com").replace(f"issuer: {FACADE_ISSUER}", "issuer: http://mcp.example.com")
    )
    for insecure_http in (False, True):  # what `authgate serve/validate [--insecure-http]` compile
        result = compile_loaded(load_files([str(policy)]), 1, ValidationSettings(insecure_http=insecure_http))
        assert not result.accepted
        assert "spec.facade.issuer" in [issue.field for issue in result.issues], [str(i) for i in result.issues]


def test_mcp_public_client_refresh_tokens_are_rotated(facade: FacadeHarness) -> None:
    """MCP 2025-11-25 "Token Theft" / 2026-07-28 security considerations: for public clients,
    authorization servers MUST rotate refresh tokens (OAuth 2.1 §4.3.1): a refresh returns a new
    refresh token and the one it replaced no longer works."""
    client = facade.register(grant_types=GRANTS)
    first = facade.login(client, scope="mcp:read offline_access")
    assert "refresh_token" in first, sorted(first)
    refreshed = client_post(
        facade, "token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, client
    )
    assert refreshed.status_code == 200, refreshed.status_code
    assert fingerprint(refreshed.json()["refresh_token"]) != fingerprint(first["refresh_token"])
    replay = client_post(
        facade, "token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, client
    )
    assert replay.status_code == 400, f"the replaced refresh token still works ({replay.status_code})"
    assert oauth_error(replay) == "invalid_grant"


@pytest.fixture(scope="module")
def replica(start_shared_facade: Callable[..., FacadeHarness], idp: OidcProvider) -> FacadeHarness:
    """A second authgate with the same policy and sealing keys (a second replica)."""
    return start_shared_facade(facade_policy(idp.issuer, consent="remember"))


def test_mcp_public_client_refresh_token_rotation_holds_across_replicas(
    facade: FacadeHarness, replica: FacadeHarness
) -> None:
    """MCP "Token Theft" (public clients: refresh tokens MUST be rotated) with the facade's
    stateless design (DESIGN: "Any replica finishes any flow"): a refresh token replaced on one
    replica must not work on another one either."""
    client = facade.register(grant_types=GRANTS)
    first = facade.login(client, scope="mcp:read offline_access")
    refreshed = client_post(
        facade, "token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, client
    )
    assert refreshed.status_code == 200, refreshed.status_code
    other = facade_from(replica, loopback_address())
    try:
        replay = client_post(
            other, "token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, client
        )
    finally:
        other.close()
    assert replay.status_code == 400, (
        f"the replaced refresh token still works on another replica ({replay.status_code})"
    )
    assert oauth_error(replay) == "invalid_grant"


def test_mcp_tokens_codes_and_secrets_never_reach_the_log(facade: FacadeHarness) -> None:
    """MCP "Token Theft": servers MUST implement secure token storage and follow OAuth best
    practices (OAuth 2.1 §7.1): authgate's log holds no access token, refresh token, code or
    client secret of a flow, nor the upstream client's secret."""
    client = facade.register(grant_types=GRANTS, token_endpoint_auth_method="client_secret_post")
    flow, code = authorization_code(facade, client, scope="mcp:read offline_access")
    issued = client_post(facade, "token", code_grant(flow, code), client)
    assert issued.status_code == 200, issued.status_code
    refreshed = client_post(
        facade, "token", {"grant_type": "refresh_token", "refresh_token": issued.json()["refresh_token"]}, client
    )
    assert refreshed.status_code == 200, refreshed.status_code
    secrets = {
        "access token": issued.json()["access_token"],
        "access token signature": issued.json()["access_token"].rsplit(".", 1)[-1],
        "refreshed access token": refreshed.json()["access_token"],
        "refresh token": issued.json()["refresh_token"],
        "rotated refresh token": refreshed.json()["refresh_token"],
        "code": code,
        "client secret": client.client_secret or "",
        "upstream client secret": UPSTREAM_CLIENT.client_secret or "",
        "browser cookie": flow.cookies["__Host-authgate-browser"],
    }
    log = facade.authgate.log()  # type: ignore[attr-defined]
    leaked = sorted(name for name, value in secrets.items() if value and value in log)
    assert leaked == [], f"in authgate's log: {leaked}"


def test_facade_never_reveals_the_upstream_client(facade: FacadeHarness) -> None:
    """DESIGN (registration.py: "the upstream client is never revealed"), MCP "Confused Deputy
    Problem": the upstream client secret appears in no response of the facade, and the upstream
    client_id only where OAuth puts it: in the browser's redirect to the upstream's own
    authorization endpoint (RFC 6749 §4.1.1) and inside the upstream's access token (RFC 9068
    client_id claim), never in metadata, registration, consent, callback or token JSON."""
    upstream_id, upstream_secret = UPSTREAM_CLIENT.client_id, UPSTREAM_CLIENT.client_secret or ""
    seen: dict[str, str] = {}

    def keep(name: str, response: httpx.Response) -> None:
        seen[name] = " ".join([response.text, *(f"{k}: {v}" for k, v in response.headers.items())])

    for url in METADATA_URLS:
        keep(url, facade.request("GET", url))
    client = facade.register(grant_types=GRANTS, token_endpoint_auth_method="client_secret_basic")
    keep(
        "registration",
        facade.request(
            "POST",
            f"{FACADE_ISSUER}/oauth2/register",
            json={"redirect_uris": [LOOPBACK_REDIRECT], "token_endpoint_auth_method": "none"},
        ),
    )
    flow: Flow = facade.start(client, scope="mcp:read offline_access")
    assert flow.consent_page is not None
    keep("consent page", flow.consent_page)
    decision = facade.decide(flow, "approve")
    upstream_redirect = " ".join([decision.text, *decision.headers.values()])
    callback = facade.request("GET", callback_url(facade, decision, flow), cookies=flow.cookies)
    keep("callback", callback)
    code = redirect_params(callback)["code"]
    tokens = client_post(facade, "token", code_grant(flow, code), client)
    assert tokens.status_code == 200, tokens.status_code
    body = dict(tokens.json())
    access_token = body.pop("access_token")
    seen["token response (access token aside)"] = str(body) + str(dict(tokens.headers))
    refreshed = client_post(
        facade, "token", {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, client
    )
    seen["refresh response (access token aside)"] = str(
        {k: v for k, v in refreshed.json().items() if k != "access_token"}
    )
    keep("token error", client_post(facade, "token", code_grant(flow, "not-a-code"), client))
    keep("introspection", client_post(facade, "introspect", {"token": access_token}, client))

    assert upstream_secret not in upstream_redirect and upstream_secret not in access_token
    with_secret = sorted(name for name, text in seen.items() if upstream_secret in text)
    with_id = sorted(name for name, text in seen.items() if upstream_id in text)
    assert with_secret == [], f"the upstream client secret is in: {with_secret}"
    assert with_id == [], f"the upstream client_id is in: {with_id}"
