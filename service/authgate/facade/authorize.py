"""/oauth2/authorize: GET checks the request and shows the consent page (its checked request
sealed into the form, bound to the browser); POST is the user's decision, and approval
sends the browser to the upstream's authorization endpoint with the facade's own client,
PKCE pair and a sealed transaction as `state`.
"""

from __future__ import annotations

import logging
import secrets

from starlette.responses import RedirectResponse, Response

from authgate.errors import OAuthError, RedirectableError, SealError, ShowError, UnknownClient, UpstreamUnavailable
from authgate.facade.answers import NO_STORE
from authgate.facade.authorization_request import AuthorizationRequest, check_authorization_request, s256, with_params
from authgate.facade.browser import (
    BROWSER_COOKIE,
    browser_cookie,
    browser_id,
    digest,
    remember_cookie,
    remembered,
    same_browser,
)
from authgate.facade.clients import Client, allowed_scopes
from authgate.facade.context import Call
from authgate.facade.pages import consent_page, error_page
from authgate.facade.params import MAX_FORM_BYTES, media_type, parse_pairs, query, read_body
from authgate.facade.records import ConsentForm, Transaction
from authgate.facade.upstream import Endpoints
from authgate.urls import parse_url

log = logging.getLogger("authgate.facade")


async def consent(call: Call) -> Response:
    """GET: the request checked (errors shown until the client and redirect_uri are known
    good, redirected after), then the consent page, or with remembered consent the upstream."""
    params, duplicated = query(call.request)
    if duplicated & {"client_id", "redirect_uri"}:
        return error_page("client_id and redirect_uri may each be sent only once")
    facade, policy = call.facade, call.policy
    client: Client | None = None
    try:
        client = await call.clients.find(policy, facade, params.get("client_id", ""))
    except UnknownClient:
        pass  # check_authorization_request says so
    metadata = None if client is None else client.metadata
    authorization = check_authorization_request(
        params, metadata, policy.resource, allowed_scopes(policy), facade.redirect_uris
    )
    if duplicated:
        raise RedirectableError(
            authorization.redirect_uri, "invalid_request", "a parameter was sent twice", authorization.state
        )
    assert client is not None
    browser, new_browser = browser_id(call.request)
    if facade.consent == "remember" and remembered(
        call.keys, facade.issuer, policy.uid, call.request, browser, authorization
    ):
        return await _to_upstream(call, authorization, browser, [browser_cookie(browser)] if new_browser else [])
    endpoints = await _endpoints(call, authorization)
    return consent_page(
        action=facade.endpoint("authorize"),
        client_name=client.display_name,
        client_id_shown=client.client_id if client.from_document else client.log_id,
        redirect_uri=authorization.redirect_uri,
        resource=policy.resource,
        scopes=authorization.scope,
        sealed_request=call.seal(ConsentForm(authorization, digest(browser))),
        remember=facade.consent == "remember",
        set_cookie=browser_cookie(browser),
        form_targets=(_origin(endpoints.authorization), _origin(authorization.redirect_uri)),
        provenance="metadata published by that site" if client.from_document else "name not verified",
    )


async def decision(call: Call) -> Response:
    """POST: the consent form, from this facade's page, in the browser that was asked."""
    facade, request = call.facade, call.request
    origin = request.headers.get("origin")
    if origin is not None and origin != _origin(facade.issuer):
        return error_page("The approval did not come from this page.", 403)
    if media_type(request) != "application/x-www-form-urlencoded":
        raise ShowError("Unexpected form submission")
    try:
        form, duplicated = parse_pairs((await read_body(request, MAX_FORM_BYTES)).decode("latin-1"))
    except OAuthError:
        raise ShowError("Unexpected form submission") from None
    if duplicated:
        raise ShowError("Unexpected form submission")
    try:
        sealed = call.open(ConsentForm, form.get("consent", ""))
    except SealError:
        raise ShowError("This approval page has expired. Start the sign-in again from the application") from None
    if not same_browser(request, sealed.browser_hash):
        return error_page("This approval did not come from the browser that was asked.", 403)
    browser, authorization = request.cookies[BROWSER_COOKIE], sealed.request
    choice = form.get("decision")
    if choice == "deny":
        log.info("facade consent denied", extra={"policy": call.policy.ref})
        raise RedirectableError(
            authorization.redirect_uri, "access_denied", "the user denied access", authorization.state
        )
    if choice != "approve":
        raise ShowError("Choose Allow or Deny")
    cookies: list[str] = []
    if facade.consent == "remember":
        cookies.append(remember_cookie(call.keys, facade.issuer, call.policy.uid, request, browser, authorization))
    return await _to_upstream(call, authorization, browser, cookies)


async def _to_upstream(call: Call, authorization: AuthorizationRequest, browser: str, cookies: list[str]) -> Response:
    facade, policy = call.facade, call.policy
    endpoints = await _endpoints(call, authorization)
    verifier = secrets.token_urlsafe(48)
    transaction = call.seal(Transaction(authorization, verifier, digest(browser)))
    scopes = list(dict.fromkeys([*facade.upstream.scopes, *authorization.scope]))
    params = {
        "response_type": "code",
        "client_id": facade.upstream.client_id,
        "redirect_uri": facade.endpoint("callback"),
        "scope": " ".join(scopes),
        "state": transaction,
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "resource": policy.resource,
    }
    if "offline_access" in scopes:
        params["prompt"] = "consent"  # OpenID Connect Core §11: offline_access needs it
    response = RedirectResponse(with_params(endpoints.authorization, params), status_code=303, headers=NO_STORE)
    for cookie in cookies:
        response.headers.append("Set-Cookie", cookie)
    log.info("facade authorization started", extra={"policy": policy.ref, "scopes": " ".join(authorization.scope)})
    return response


async def _endpoints(call: Call, authorization: AuthorizationRequest) -> Endpoints:
    """The upstream's endpoints; once the redirect_uri is known good, its absence goes there."""
    try:
        return await call.state.upstream.endpoints(call.facade.upstream)
    except UpstreamUnavailable:
        raise RedirectableError(
            authorization.redirect_uri,
            "temporarily_unavailable",
            "the identity provider is unavailable",
            authorization.state,
        ) from None


def _origin(url: str) -> str:
    return parse_url(url).origin  # URLs the policy, the egress client or redirect rules accepted
