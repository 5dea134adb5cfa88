"""Consent `remember` mode (RFC 6749 §10.12: no client obtains authorization without the resource
owner's awareness and explicit consent): an approval is remembered in one browser, for one
client and the scopes approved, and nothing else skips the consent page."""

from __future__ import annotations

import pytest
from tests.infra.idp import OidcProvider
from tests.support.facade import (
    FacadeHarness,
    Flow,
    Registered,
    cookie_attributes,
    facade_policy,
    redirect_params,
    start_in,
)

BROWSER_COOKIE = "__Host-authgate-browser"
REMEMBER_COOKIE = "__Host-authgate-consent"


@pytest.fixture(scope="module")
def facade(start_shared_facade, idp: OidcProvider) -> FacadeHarness:
    return start_shared_facade(facade_policy(idp.issuer, consent="remember"))


def approved_browser(facade: FacadeHarness, client: Registered, scope: str = "mcp:read") -> Flow:
    """A browser that approved `client` once (its cookies are in the returned flow)."""
    flow = facade.start(client, scope=scope)
    redirect = facade.through_upstream(facade.decide(flow, "approve"), flow)
    answer = sorted(redirect_params(redirect))
    assert "code" in answer, answer
    assert REMEMBER_COOKIE in flow.cookies
    return flow


def shows_consent(flow: Flow) -> bool:
    assert flow.consent_page is not None
    if flow.consent_page.status_code == 303:
        return False  # straight to the upstream: consent was taken as given
    assert flow.consent_page.status_code == 200, flow.consent_page.text[:300]
    return 'name="consent"' in flow.consent_page.text


def test_a_remembered_consent_skips_the_page_in_the_same_browser_for_the_same_client(
    facade: FacadeHarness, client: Registered
) -> None:
    browser = approved_browser(facade, client)
    again = start_in(facade, client, browser.cookies)
    assert not shows_consent(again)
    assert again.consent_page is not None
    response = facade.redeem(client, again, facade.through_upstream(again.consent_page, again))
    assert response.status_code == 200, response.text


def test_a_remembered_consent_is_not_used_by_another_browser(facade: FacadeHarness, client: Registered) -> None:
    victim = approved_browser(facade, client)
    fresh = facade.start(client)  # a browser without cookies
    assert shows_consent(fresh)
    # The remember cookie alone, carried into a browser with a browser id of its own.
    attacker = facade.start(client)
    stolen = {BROWSER_COOKIE: attacker.cookies[BROWSER_COOKIE], REMEMBER_COOKIE: victim.cookies[REMEMBER_COOKIE]}
    flow = start_in(facade, client, stolen)
    assert shows_consent(flow)


def test_a_remembered_consent_is_not_used_by_another_client(facade: FacadeHarness, client: Registered) -> None:
    browser = approved_browser(facade, client)
    other = facade.register(client_name="Another app")
    flow = start_in(facade, other, browser.cookies)
    assert shows_consent(flow)


def test_a_remembered_consent_does_not_cover_more_scope(facade: FacadeHarness, client: Registered) -> None:
    browser = approved_browser(facade, client, scope="mcp:read")
    wider = start_in(facade, client, browser.cookies, scope="mcp:read mcp:write")
    same = start_in(facade, client, browser.cookies, scope="mcp:read")
    assert shows_consent(wider)
    assert not shows_consent(same)


def test_a_denied_consent_is_not_remembered(facade: FacadeHarness) -> None:
    client = facade.register(client_name="Denied app")
    flow = facade.start(client)
    denied = facade.decide(flow, "deny")
    assert redirect_params(denied)["error"] == "access_denied"
    again = start_in(facade, client, flow.cookies)
    assert shows_consent(again)


def test_the_remember_cookie_is_a_host_only_secure_httponly_lax_cookie(
    facade: FacadeHarness, client: Registered
) -> None:
    decision = facade.decide(facade.start(client), "approve")
    attributes = cookie_attributes(decision, REMEMBER_COOKIE)
    assert "domain" not in attributes, "a __Host- cookie must not name a Domain"
    assert attributes.get("path") == "/"
    assert "secure" in attributes and "httponly" in attributes
    assert attributes.get("samesite", "").lower() == "lax"
