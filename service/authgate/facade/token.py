"""POST /oauth2/token: the authorization_code and refresh_token grants.

The client's verifier is checked before the upstream code is redeemed; the upstream's
access token is checked for this policy (its audience must be the resource) before the
client sees it; its refresh token only leaves wrapped (sealed, bound to the client) and
rotates; the id_token is never handed out.
"""

from __future__ import annotations

import contextlib
import logging
import time

from starlette.responses import JSONResponse, Response

from authgate.errors import KeysUnavailable, OAuthError, SealError, TokenError, UpstreamRefused, UpstreamUnavailable
from authgate.facade.answers import NO_STORE
from authgate.facade.authorization_request import pkce_matches
from authgate.facade.clients import Client, allowed_scopes
from authgate.facade.context import Call
from authgate.facade.presented import authenticated
from authgate.facade.records import CODE_TTL, REFRESH_TTL, Code, WrappedRefresh

log = logging.getLogger("authgate.facade")


async def handle(call: Call) -> Response:
    client, form = await authenticated(call)
    grant_type = form.get("grant_type")
    if grant_type == "authorization_code":
        body = await _code_grant(call, client, form)
    elif grant_type == "refresh_token":
        body = await _refresh_grant(call, client, form)
    elif not grant_type:
        raise OAuthError(400, "invalid_request", "grant_type is required")
    else:
        raise OAuthError(400, "unsupported_grant_type", "only authorization_code and refresh_token are supported")
    return JSONResponse(body, headers=call.cors | NO_STORE)


async def _code_grant(call: Call, client: Client, form: dict[str, str]) -> dict:
    facade, policy = call.facade, call.policy
    try:
        code = call.open(Code, form.get("code", ""))
    except SealError:
        raise OAuthError(400, "invalid_grant", "the code is invalid or expired") from None
    request = code.request
    if request.client_id != client.client_id:
        raise OAuthError(400, "invalid_grant", "the code was issued to another client")
    if request.redirect_uri_given and form.get("redirect_uri") != request.redirect_uri:
        raise OAuthError(400, "invalid_grant", "redirect_uri does not match the authorization request")
    if "redirect_uri" in form and form["redirect_uri"] != request.redirect_uri:
        raise OAuthError(400, "invalid_grant", "redirect_uri does not match the authorization request")
    if not pkce_matches(form.get("code_verifier"), request.code_challenge):
        raise OAuthError(400, "invalid_grant", "code_verifier does not match the code_challenge")
    if "resource" in form and form["resource"] != request.resource:
        raise OAuthError(400, "invalid_target", "resource must be this server's resource")
    if not call.state.used.first_use("code:" + code.jti, time.time() + CODE_TTL):
        raise OAuthError(400, "invalid_grant", "the code was already used")
    upstream_form = {
        "grant_type": "authorization_code",
        "code": code.upstream_code,
        "redirect_uri": facade.endpoint("callback"),
        "code_verifier": code.upstream_verifier,
        "resource": policy.resource,
    }
    answer = await call.state.upstream.token(facade.upstream, upstream_form)
    log.info("facade token issued", extra={"policy": policy.ref, "client": client.log_id, "grant": "code"})
    return await _client_answer(call, client, answer, request.scope)


async def _refresh_grant(call: Call, client: Client, form: dict[str, str]) -> dict:
    facade, policy = call.facade, call.policy
    if "refresh_token" not in client.metadata.get("grant_types", ()):
        raise OAuthError(400, "unauthorized_client", "this client did not register the refresh_token grant")
    try:
        wrapped = call.open(WrappedRefresh, form.get("refresh_token", ""))
    except SealError:
        raise OAuthError(400, "invalid_grant", "the refresh token is invalid or expired") from None
    if wrapped.client_id != client.client_id:
        raise OAuthError(400, "invalid_grant", "the refresh token was issued to another client")
    scope = wrapped.scope
    if "scope" in form:
        scope = tuple(form["scope"].split())
        if not set(scope) <= set(wrapped.scope):
            raise OAuthError(400, "invalid_scope", "a refresh cannot widen the granted scope")
    if not call.state.used.first_use("refresh:" + wrapped.jti, time.time() + REFRESH_TTL):
        # Rotation (OAuth 2.1 §4.3.1): a wrapped refresh token works once. A second use
        # means it was copied: end the upstream grant too, so neither copy goes on.
        log.warning("facade refresh token reused", extra={"policy": policy.ref, "client": client.log_id})
        with contextlib.suppress(UpstreamUnavailable, UpstreamRefused):
            await call.state.upstream.revoke(facade.upstream, wrapped.upstream_token, "refresh_token")
        raise OAuthError(400, "invalid_grant", "the refresh token was already used")
    upstream_form = {
        "grant_type": "refresh_token",
        "refresh_token": wrapped.upstream_token,
        "resource": policy.resource,
    }
    if "scope" in form:
        upstream_form["scope"] = " ".join([*facade.upstream.scopes, *scope])
    answer = await call.state.upstream.token(facade.upstream, upstream_form)
    log.info("facade token issued", extra={"policy": policy.ref, "client": client.log_id, "grant": "refresh"})
    return await _client_answer(call, client, answer, scope, wrapped)


async def _client_answer(
    call: Call, client: Client, answer: dict, requested: tuple[str, ...], refreshed: WrappedRefresh | None = None
) -> dict:
    """What the client gets: the upstream access token once it is proven to be for this
    resource, a wrapped refresh token, never the id_token. `refreshed`: the wrapped refresh
    token just used, whose grant's scope a narrower refresh keeps (OAuth 2.1 §4.3.3)."""
    access_token = answer["access_token"]
    await _check_access_token(call, access_token)
    upstream_scope = answer.get("scope")
    if isinstance(upstream_scope, str):
        # What the upstream granted, as far as this client asked for it: the facade's own
        # upstream scopes (openid, offline_access...) are not the client's business.
        wanted = set(requested) if requested else allowed_scopes(call.policy)
        granted = tuple(s for s in upstream_scope.split() if s in wanted)
    else:
        granted = requested
    body: dict = {"access_token": access_token, "token_type": "Bearer"}
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in > 0:
        body["expires_in"] = expires_in
    body["scope"] = " ".join(granted)
    refresh = answer.get("refresh_token")
    grant_scope = granted if refreshed is None else refreshed.scope
    if refreshed is not None and (not isinstance(refresh, str) or not refresh or refresh == refreshed.upstream_token):
        refresh = refreshed.upstream_token  # the upstream does not rotate: wrap the same one again
        _warn_unrotated(call)
    if isinstance(refresh, str) and refresh and "refresh_token" in client.metadata.get("grant_types", ()):
        body["refresh_token"] = call.seal(WrappedRefresh(client.client_id, refresh, grant_scope))
    return body


async def _check_access_token(call: Call, access_token: str) -> None:
    try:
        await call.state.deps.validator.validate(access_token, call.policy)
    except TokenError as error:
        log.warning("facade upstream token refused", extra={"policy": call.policy.ref, "reason": error.reason})
        raise OAuthError(
            502, "server_error", "the identity provider issued a token not valid for this resource"
        ) from None
    except KeysUnavailable:
        raise OAuthError(503, "temporarily_unavailable", "the identity provider's keys are unavailable") from None


def _warn_unrotated(call: Call) -> None:
    """Once per policy and process: a setting to fix, not an event."""
    if call.policy.ref not in call.state.unrotated:
        call.state.unrotated.add(call.policy.ref)
        log.warning(
            "facade upstream does not rotate refresh tokens: replay across replicas is not detected",
            extra={"policy": call.policy.ref, "issuer": call.facade.upstream.issuer},
        )
