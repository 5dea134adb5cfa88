"""The authorization request once the client and its redirect_uri are known good (OAuth 2.1
draft 16 §3.1, §4.1.1, §4.1.2.1; RFC 7636 §4.4.1; RFC 8707 §2): every other problem goes back to
the client's redirect_uri as an error, with its state and the facade's iss."""

from __future__ import annotations

import httpx
from tests.support.facade import (
    CLIENT_STATE,
    ERROR_TEXT,
    FACADE_ISSUER,
    FACADE_RESOURCE,
    LOOPBACK_REDIRECT,
    FacadeHarness,
    Registered,
    authorize,
    is_consent_page,
    query_of,
    redirect_params,
    shown_error,
)


def authorize_pairs(facade: FacadeHarness, client: Registered, *extra: tuple[str, str]) -> httpx.Response:
    """An authorization request with `extra` pairs added (a parameter may then appear twice)."""
    params, _, _ = facade.authorize_params(client, state=CLIENT_STATE)
    return facade.request("GET", f"{FACADE_ISSUER}/oauth2/authorize", params=[*params.items(), *extra])


def client_error(response: httpx.Response) -> dict[str, str]:
    """An error sent back to the client: to its redirect_uri, with its state and our iss."""
    assert response.headers.get("location", "").startswith(LOOPBACK_REDIRECT + "?"), response.text[:300]
    params = redirect_params(response)
    assert "code" not in params
    assert params.get("state") == CLIENT_STATE and params.get("iss") == FACADE_ISSUER, params
    for field in ("error", "error_description"):  # §4.1.2.1: %x20-21 / %x23-5B / %x5D-7E only
        assert ERROR_TEXT.fullmatch(params.get(field, "")), params
    return params


def outcome(response: httpx.Response) -> str:
    """What the user or the client sees, in a few words."""
    if is_consent_page(response):
        return "consent page"
    if response.is_redirect:
        return f"redirected with error={query_of(response.headers['location']).get('error')}"
    return f"{response.status_code} error page"


def test_only_response_type_code_is_accepted(facade: FacadeHarness, client: Registered) -> None:
    for response_type in ("token", "id_token", "code id_token", "code token", "CODE", "none"):
        assert client_error(authorize(facade, client, response_type=response_type))["error"] == (
            "unsupported_response_type"
        ), response_type
    for missing in (None, ""):
        error = client_error(authorize(facade, client, response_type=missing))["error"]
        assert error in ("invalid_request", "unsupported_response_type"), error


def test_a_request_without_a_code_challenge_is_refused_for_every_client(
    facade: FacadeHarness, client: Registered
) -> None:
    confidential = facade.register(token_endpoint_auth_method="client_secret_basic")
    for who in (client, confidential):
        response = authorize(facade, who, code_challenge=None, code_challenge_method=None)
        assert client_error(response)["error"] == "invalid_request"


def test_a_code_challenge_method_other_than_s256_is_refused_with_invalid_request(
    facade: FacadeHarness, client: Registered
) -> None:
    plain = "p" * 43  # `plain`: the challenge is the verifier itself
    cases = [
        {"code_challenge": plain, "code_challenge_method": None},  # absent means plain (RFC 7636 §4.3)
        {"code_challenge": plain, "code_challenge_method": "plain"},
        {"code_challenge_method": "S512"},
        {"code_challenge_method": "s256"},
        {"code_challenge": "too-short"},
    ]
    for overrides in cases:
        assert client_error(authorize(facade, client, **overrides))["error"] == "invalid_request", overrides


def test_a_parameter_sent_twice_is_refused(facade: FacadeHarness, client: Registered) -> None:
    for name, value in (
        ("state", "other"),
        ("scope", "mcp:write"),
        ("response_type", "code"),
        ("code_challenge", "x" * 43),
        ("code_challenge_method", "S256"),
        ("resource", FACADE_RESOURCE),
    ):
        response = authorize_pairs(facade, client, (name, value))
        assert client_error(response)["error"] == "invalid_request", name
    # Sent twice, the client or its redirect_uri cannot be trusted: shown, not redirected.
    shown_error(authorize_pairs(facade, client, ("client_id", client.client_id)))
    shown_error(authorize_pairs(facade, client, ("redirect_uri", "https://attacker.example/cb")))


def test_unrecognized_parameters_are_ignored(facade: FacadeHarness, client: Registered) -> None:
    response = authorize_pairs(facade, client, ("x-vendor", "1"), ("ui_theme", "dark"), ("foo", ""))
    assert is_consent_page(response), response.text[:300]


def test_parameters_sent_without_a_value_are_treated_as_omitted(facade: FacadeHarness, client: Registered) -> None:
    # The client registered one redirect_uri, and the policy has one resource: both may be omitted.
    assert is_consent_page(authorize(facade, client, resource=None, redirect_uri=None))
    outcomes = {
        name: outcome(response)
        for name, response in (
            ("resource=", authorize(facade, client, resource="")),
            ("redirect_uri=", authorize(facade, client, redirect_uri="")),
        )
    }
    assert outcomes == {"resource=": "consent page", "redirect_uri=": "consent page"}


def test_a_resource_other_than_the_policys_is_refused_with_invalid_target(
    facade: FacadeHarness, client: Registered
) -> None:
    for resource in (
        "https://other.example.com/mcp",
        FACADE_RESOURCE + "/",
        FACADE_RESOURCE + "/admin",
        FACADE_RESOURCE + "#fragment",
        "https://mcp.example.com",
        "mcp.example.com/mcp",
    ):
        assert client_error(authorize(facade, client, resource=resource))["error"] == "invalid_target", resource
    assert is_consent_page(authorize(facade, client, resource=FACADE_RESOURCE))


def test_a_scope_beyond_the_policys_is_refused_with_invalid_scope(facade: FacadeHarness, client: Registered) -> None:
    for scope in ("mcp:admin", "mcp:read openid", "profile", "mcp:read mcp:write email"):
        assert client_error(authorize(facade, client, scope=scope))["error"] == "invalid_scope", scope
    reader = facade.register(scope="mcp:read")  # registered for less than the policy offers
    assert client_error(authorize(facade, reader, scope="mcp:read mcp:write"))["error"] == "invalid_scope"
    assert is_consent_page(authorize(facade, client, scope="mcp:read mcp:write offline_access"))
