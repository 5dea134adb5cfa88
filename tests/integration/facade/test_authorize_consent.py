"""The consent page and the decision posted from it (RFC 6749 §10.12 CSRF, OAuth 2.1 draft 16
§7.10, §7.11 clickjacking, §7.5.3, §7.12, §4.1.2.1; RFC 6265bis `__Host-` cookies).

The browser's `__Host-authgate-browser` cookie is the CSRF token: the sealed consent form only
opens for the browser that was shown it, and only from the facade's own origin."""

from __future__ import annotations

from tests.support.facade import (
    FACADE_ISSUER,
    LOOPBACK_REDIRECT,
    FacadeHarness,
    Registered,
    cookie_attributes,
    redirect_params,
    shown_error,
)

BROWSER_COOKIE = "__Host-authgate-browser"


def assert_not_framable(response) -> None:
    policy = response.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in policy, policy
    assert response.headers.get("x-frame-options") == "DENY"


def test_a_decision_without_the_browser_cookie_is_refused(facade: FacadeHarness, client: Registered) -> None:
    flow = facade.start(client)
    assert BROWSER_COOKIE in flow.cookies
    response = facade.decide(flow, cookies={})
    shown_error(response)
    assert response.status_code == 403


def test_a_decision_with_another_browsers_cookie_is_refused(facade: FacadeHarness, client: Registered) -> None:
    attacker = facade.start(client)  # the attacker's own consent form ...
    victim = facade.start(client)  # ... posted from the victim's browser, which has its own cookie
    assert attacker.cookies[BROWSER_COOKIE] != victim.cookies[BROWSER_COOKIE]
    response = facade.decide(attacker, cookies=victim.cookies)
    shown_error(response)
    assert response.status_code == 403


def test_a_cross_origin_decision_is_refused(facade: FacadeHarness, client: Registered) -> None:
    flow = facade.start(client)
    for origin in ("https://attacker.example", "null", "http://mcp.example.com", "https://mcp.example.com.evil.test"):
        response = facade.decide(flow, headers={"Origin": origin})
        shown_error(response)
        assert response.status_code == 403, origin
    # The same form from the facade's own origin goes on: the refusals were about the origin.
    same_origin = facade.decide(flow, headers={"Origin": FACADE_ISSUER})
    assert same_origin.status_code == 303


def test_a_tampered_or_foreign_consent_form_is_refused(facade: FacadeHarness, client: Registered) -> None:
    flow = facade.start(client)
    value = flow.consent_value
    tampered = value[:-6] + ("AAAAAA" if not value.endswith("AAAAAA") else "BBBBBB")
    for consent in (tampered, "", "not-sealed", client.client_id):  # the client_id is sealed, for another purpose
        response = facade.decide(flow, consent=consent)
        shown_error(response)


def test_no_authorization_is_given_without_an_explicit_approval(facade: FacadeHarness, client: Registered) -> None:
    flow = facade.start(client)
    assert flow.consent_page is not None and flow.consent_page.status_code == 200
    for decision in ("", "yes", "Approve", "approve "):
        shown_error(facade.decide(flow, decision))


def test_the_consent_and_error_pages_cannot_be_framed(facade: FacadeHarness, client: Registered) -> None:
    flow = facade.start(client)
    assert flow.consent_page is not None
    assert_not_framable(flow.consent_page)
    assert_not_framable(facade.decide(flow, cookies={}))
    assert_not_framable(facade.request("GET", f"{FACADE_ISSUER}/oauth2/authorize?client_id=nobody"))


def test_the_browser_cookie_is_a_host_only_secure_httponly_lax_cookie(
    facade: FacadeHarness, client: Registered
) -> None:
    flow = facade.start(client)
    assert flow.consent_page is not None
    attributes = cookie_attributes(flow.consent_page, BROWSER_COOKIE)
    assert "domain" not in attributes, "a __Host- cookie must not name a Domain"
    assert attributes.get("path") == "/"
    assert "secure" in attributes and "httponly" in attributes
    assert attributes.get("samesite", "").lower() == "lax"


def test_client_supplied_text_is_escaped_on_the_consent_page(facade: FacadeHarness) -> None:
    client = facade.register(
        client_name="<script>alert('name')</script>",
        redirect_uris=['https://app.example.com/cb?q="><svg/onload=alert(1)>'],
    )
    flow = facade.start(client, state='"><img src=x onerror=alert(2)>')
    assert flow.consent_page is not None and flow.consent_page.status_code == 200
    page = flow.consent_page.text
    for markup in ("<script>", "<svg", "<img", "onerror=", "onload="):
        assert markup not in page, markup
    assert "&lt;script&gt;" in page, "the client name is not shown escaped"


def test_deny_sends_access_denied_to_the_client(facade: FacadeHarness, client: Registered) -> None:
    flow = facade.start(client, state="deny-state")
    response = facade.decide(flow, "deny")
    assert response.headers["location"].startswith(LOOPBACK_REDIRECT + "?")
    params = redirect_params(response)
    assert params["error"] == "access_denied"
    assert params["state"] == "deny-state" and params["iss"] == FACADE_ISSUER
    assert "code" not in params


def test_no_redirect_after_the_consent_form_is_a_307(facade: FacadeHarness, client: Registered) -> None:
    approved = facade.decide(facade.start(client), "approve")
    denied = facade.decide(facade.start(client), "deny")
    # 303 turns the form POST into a GET for certain; a 307 would re-post the form elsewhere.
    assert approved.status_code == 303
    assert denied.status_code in (302, 303)
