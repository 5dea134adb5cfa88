"""The upstream's answer at the facade's callback, where the facade is the upstream's client
(OAuth 2.1 draft 16 §2.3.4, §7.5.1.1, §7.15; RFC 9207 §2.4), and the answer the facade then
gives its own client (§4.1.2, §4.1.2.1; RFC 9207 §2).

The upstream `state` is the facade's sealed transaction, bound to the browser that approved:
it does not open if tampered with or expired, nor in another browser, nor twice."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlencode

from tests.infra.idp import OidcProvider
from tests.support.facade import (
    FACADE_ISSUER,
    LOOPBACK_REDIRECT,
    POLICY_UID,
    FacadeHarness,
    Flow,
    Registered,
    callback_url,
    jose_header,
    query_of,
    redirect_params,
    set_cookies,
    shown_error,
    upstream_callback,
)

from authgate.facade.records import TRANSACTION_TTL
from authgate.sealing import SealingKeys

# What an error page says, never what an upstream (or an attacker on its behalf) wrote.
UPSTREAM_TEXT = "Call +1-555-0100 to unlock your account <script>alert(1)</script>"


def at_callback(facade: FacadeHarness, client: Registered, **overrides: str) -> tuple[Flow, str]:
    """A flow approved and logged in at the upstream: the flow and the callback URL, not yet requested."""
    flow = facade.start(client, **overrides)
    return flow, callback_url(facade, facade.decide(flow, "approve"), flow)


def with_params(url: str, **changes: str | None) -> str:
    """`url` with its query parameters changed (None removes one)."""
    params = query_of(url) | changes
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return url.split("?", 1)[0] + "?" + query


def callback(facade: FacadeHarness, url: str, cookies: dict[str, str]):
    return facade.request("GET", url, cookies=cookies)


def test_a_tampered_state_is_refused(facade: FacadeHarness, client: Registered) -> None:
    flow, url = at_callback(facade, client)
    state = query_of(url)["state"]
    for forged in (
        state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB"),
        state.rsplit(".", 1)[0],
        flow.consent_value,  # sealed by the facade, for the same browser, but for another purpose
        "",
    ):
        shown_error(callback(facade, with_params(url, state=forged), flow.cookies))
    # Only the tampering was refused: the real answer still goes through.
    response = callback(facade, url, flow.cookies)
    assert "code" in redirect_params(response)


def test_an_expired_state_is_refused(facade: FacadeHarness, client: Registered, sealing_keys: Path) -> None:
    flow, url = at_callback(facade, client)
    keys = SealingKeys.load(sealing_keys)  # the test's own sealing keys
    transaction = keys.open("transaction", FACADE_ISSUER, POLICY_UID, query_of(url)["state"])
    expired = keys.seal(
        "transaction", FACADE_ISSUER, POLICY_UID, transaction, TRANSACTION_TTL, now=time.time() - TRANSACTION_TTL - 5
    )
    shown_error(callback(facade, with_params(url, state=expired), flow.cookies))
    response = callback(facade, url, flow.cookies)
    assert "code" in redirect_params(response)


def test_a_callback_in_another_browser_is_refused(facade: FacadeHarness, client: Registered) -> None:
    # The attacker logs in and stops before the callback; the victim's browser is sent there.
    attacker, url = at_callback(facade, client)
    victim = facade.start(client)
    for cookies in (victim.cookies, {}):
        response = callback(facade, url, cookies)
        shown_error(response)
        assert response.status_code == 403
    response = callback(facade, url, attacker.cookies)
    assert "code" in redirect_params(response)


def test_a_callback_is_used_once(facade: FacadeHarness, client: Registered) -> None:
    flow, url = at_callback(facade, client)
    response = callback(facade, url, flow.cookies)
    assert "code" in redirect_params(response)
    shown_error(callback(facade, url, flow.cookies))


def test_an_answer_naming_another_issuer_is_refused(facade: FacadeHarness, client: Registered, idp) -> None:
    flow, url = at_callback(facade, client)
    assert query_of(url)["iss"] == idp.issuer
    for issuer in ("https://attacker.example", idp.issuer + "/", FACADE_ISSUER):
        shown_error(callback(facade, with_params(url, iss=issuer), flow.cookies))
    response = callback(facade, url, flow.cookies)
    assert "code" in redirect_params(response)


def test_an_answer_without_iss_is_refused_from_an_upstream_that_sends_it(
    facade: FacadeHarness, client: Registered, idp: OidcProvider
) -> None:
    assert idp.discovery.get("authorization_response_iss_parameter_supported") is True
    flow, url = at_callback(facade, client)
    shown_error(callback(facade, with_params(url, iss=None), flow.cookies))


def test_an_upstream_error_is_relayed_with_the_clients_state_and_the_facades_iss(
    facade: FacadeHarness, client: Registered
) -> None:
    flow = facade.start(client, state="client-state")
    decision = facade.decide(flow, "approve")
    flow.cookies.update(set_cookies(decision))
    # The upstream refuses a request without PKCE: a real error, with its own description.
    upstream_request = with_params(decision.headers["location"], code_challenge=None, code_challenge_method=None)
    url = upstream_callback(facade, upstream_request)
    upstream = query_of(url)
    assert upstream["error"] == "invalid_request" and upstream.get("error_description")
    response = callback(facade, url, flow.cookies)
    assert response.headers["location"].startswith(LOOPBACK_REDIRECT + "?")
    params = redirect_params(response)
    assert params["error"] == "invalid_request"
    assert params["state"] == "client-state" and params["iss"] == FACADE_ISSUER
    assert params.get("error_description") != upstream["error_description"]
    assert "code" not in params


def test_an_upstream_error_description_is_never_relayed_verbatim(facade: FacadeHarness, client: Registered) -> None:
    for error, relayed in (("access_denied", "access_denied"), ("evil_code<b>", "server_error")):
        flow, url = at_callback(facade, client, state="client-state")
        forged = with_params(
            url, code=None, error=error, error_description=UPSTREAM_TEXT, error_uri="https://attacker.example/help"
        )
        params = redirect_params(callback(facade, forged, flow.cookies))
        assert params["error"] == relayed
        assert params["state"] == "client-state" and params["iss"] == FACADE_ISSUER
        description = params.get("error_description", "")
        assert "555" not in description and "<script>" not in description, description
        assert "error_uri" not in params


def test_each_upstream_request_has_its_own_pkce_challenge(facade: FacadeHarness, client: Registered) -> None:
    challenges = set()
    for _ in range(2):
        flow = facade.start(client)
        upstream = query_of(facade.decide(flow, "approve").headers["location"])
        assert upstream["code_challenge"] != flow.challenge
        challenges.add(upstream["code_challenge"])
    assert len(challenges) == 2


def test_the_code_does_not_reveal_the_code_challenge(facade: FacadeHarness, client: Registered) -> None:
    flow = facade.start(client)
    assert flow.consent_page is not None and flow.challenge not in flow.consent_page.text
    decision = facade.decide(flow, "approve")
    assert flow.challenge not in decision.headers["location"]
    redirect = facade.through_upstream(decision, flow)
    code = redirect_params(redirect)["code"]
    revealed = flow.challenge in redirect.headers["location"]
    assert not revealed, "the client's code_challenge is readable in the authorization response"
    header = jose_header(code)
    assert (header.get("alg"), header.get("enc")) == ("dir", "A256GCM"), "the code is not encrypted"
