"""POST /oauth2/introspect: RFC 7662 for confidential clients. JWT access tokens are checked
for this resource by authgate itself, wrapped refresh tokens through the upstream, and a
value that is sealed in shape but not this client's is inactive without asking anyone."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from authgate.errors import OAuthError, TokenError
from authgate.facade.answers import NO_STORE
from authgate.facade.clients import Client, allowed_scopes
from authgate.facade.context import Call
from authgate.facade.params import token_type_hint
from authgate.facade.presented import Kind, authenticated, presented
from authgate.facade.records import WrappedRefresh

INTROSPECTION_FIELDS = ("active", "scope", "exp", "iat", "nbf", "sub", "aud", "iss", "token_type", "username")
INACTIVE = {"active": False}


async def handle(call: Call) -> Response:
    client, form = await authenticated(call)
    if client.auth_method == "none":
        raise OAuthError(401, "invalid_client", "introspection needs an authenticated (confidential) client")
    token = form.get("token")
    if not token:
        raise OAuthError(400, "invalid_request", "token is required")
    token_kind = presented(call, client, token)
    if token_kind.kind is Kind.REFUSED:
        body = INACTIVE
    elif token_kind.wrapped is not None:
        body = await _wrapped(call, client, token_kind.wrapped)
    elif token.count(".") == 2:
        body = await _access_token(call, token)
    else:
        body = await _upstream(call, token, token_type_hint(form))
    return JSONResponse(body, headers=call.cors | NO_STORE)


async def _wrapped(call: Call, client: Client, wrapped: WrappedRefresh) -> dict:
    answer = await call.state.upstream.introspect(call.facade.upstream, wrapped.upstream_token, "refresh_token")
    if answer.get("active") is not True:
        return INACTIVE
    body = {"active": True, "client_id": client.client_id, "token_type": "refresh_token"}
    body |= {name: answer[name] for name in ("exp", "iat", "sub") if name in answer}
    offered = allowed_scopes(call.policy)
    body["scope"] = " ".join(s for s in wrapped.scope if s in offered)
    return body


async def _access_token(call: Call, token: str) -> dict:
    """A JWT access token (the kind the facade hands out), checked as the check port would."""
    try:
        verified = await call.state.deps.validator.validate(token, call.policy)
    except TokenError:
        return INACTIVE
    offered = allowed_scopes(call.policy)
    claims = verified.claims
    body = {"active": True, "scope": " ".join(sorted(s for s in verified.scopes if s in offered))}
    body |= {name: claims[name] for name in ("exp", "iat", "nbf", "sub", "aud", "iss") if name in claims}
    return body


async def _upstream(call: Call, token: str, hint: str | None) -> dict:
    answer = await call.state.upstream.introspect(call.facade.upstream, token, hint)
    if answer.get("active") is not True:
        return INACTIVE
    body = {name: answer[name] for name in INTROSPECTION_FIELDS if name in answer}
    if isinstance(body.get("scope"), str):
        offered = allowed_scopes(call.policy)
        body["scope"] = " ".join(s for s in body["scope"].split() if s in offered)
    return body
