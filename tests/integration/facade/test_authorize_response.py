"""What the authorization endpoint sends back to the client and on to the upstream (OAuth 2.1
draft 16 §3.1, §4.1.2, §4.1.2.1; RFC 9207 §2): the client's state exactly, the facade's iss in
every response, and upstream requests built only from what the facade itself decides."""

from __future__ import annotations

from tests.support.facade import (
    CALLBACK,
    FACADE_ISSUER,
    FACADE_RESOURCE,
    UPSTREAM_AUTHORIZE_PARAMS,
    UPSTREAM_CLIENT,
    FacadeHarness,
    Registered,
    authorize,
    query_of,
    redirect_params,
)


def test_state_is_returned_exactly_as_sent(facade: FacadeHarness, client: Registered) -> None:
    state = " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ 0x+%2B"
    refused = authorize(facade, client, state=state, scope="mcp:admin")
    assert redirect_params(refused)["state"] == state
    approved = facade.approve(facade.start(client, state=state))
    params = redirect_params(approved)
    assert params["state"] == state
    # No state sent: none comes back.
    assert "state" not in redirect_params(authorize(facade, client, state=None, scope="mcp:admin"))


def test_iss_is_in_every_authorization_response(facade: FacadeHarness, client: Registered) -> None:
    answers = {
        "invalid_scope": authorize(facade, client, scope="mcp:admin"),
        "unsupported_response_type": authorize(facade, client, response_type="token"),
        "denied": facade.decide(facade.start(client), "deny"),
        "code": facade.approve(facade.start(client)),
    }
    assert {name: redirect_params(answer).get("iss") for name, answer in answers.items()} == dict.fromkeys(
        answers, FACADE_ISSUER
    )


def test_parameters_smuggled_by_the_client_never_reach_the_upstream(facade: FacadeHarness, client: Registered) -> None:
    smuggled = {
        "client_secret": "smuggled-secret-1",
        "client_assertion": "smuggled-assertion-2",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "prompt": "none",
        "login_hint": "smuggled-victim-3",
        "max_age": "999999",
        "acr_values": "smuggled-acr-4",
        "claims": '{"id_token":{"smuggled-5":null}}',
        "request_uri": "https://attacker.example/smuggled-6",
        "nonce": "smuggled-nonce-7",
        "id_token_hint": "smuggled-hint-8",
        "response_mode": "fragment",
        "audience": "https://attacker.example/smuggled-9",
    }
    flow = facade.start(client, **smuggled)
    decision = facade.decide(flow)
    assert decision.status_code == 303, decision.text[:300]
    location = decision.headers["location"]
    upstream = query_of(location)
    assert set(upstream) <= UPSTREAM_AUTHORIZE_PARAMS, sorted(set(upstream) - UPSTREAM_AUTHORIZE_PARAMS)
    assert upstream["client_id"] == UPSTREAM_CLIENT.client_id
    assert upstream["redirect_uri"] == CALLBACK
    assert upstream["resource"] == FACADE_RESOURCE
    assert upstream["response_type"] == "code" and upstream["code_challenge_method"] == "S256"
    assert upstream["prompt"] == "consent"
    assert set(upstream["scope"].split()) == {"openid", "offline_access", "mcp:read"}
    assert upstream["code_challenge"] != flow.challenge, "the client's own PKCE challenge went upstream"
    leaked = [name for name, value in smuggled.items() if value in location and name not in ("response_mode",)]
    assert leaked == []
    assert "fragment" not in location
