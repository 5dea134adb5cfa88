"""POST /oauth2/revoke: RFC 7009, proxied upstream. A wrapped refresh token is refused on
this replica from now on; a value sealed in shape but not this client's is a 200 that
changes nothing (RFC 7009 §2.2)."""

from __future__ import annotations

import logging
import time

from starlette.responses import Response

from authgate.errors import OAuthError
from authgate.facade.answers import NO_STORE
from authgate.facade.context import Call
from authgate.facade.params import token_type_hint
from authgate.facade.presented import Kind, authenticated, presented
from authgate.facade.records import REFRESH_TTL

log = logging.getLogger("authgate.facade")


async def handle(call: Call) -> Response:
    client, form = await authenticated(call)
    token = form.get("token")
    if not token:
        raise OAuthError(400, "invalid_request", "token is required")
    done = Response(status_code=200, headers=call.cors | NO_STORE)
    token_kind = presented(call, client, token)
    if token_kind.kind is Kind.REFUSED:
        return done  # an invalid token, or another client's: nothing to say
    if token_kind.wrapped is not None:
        # This replica refuses it from now on, whatever the upstream does.
        call.state.used.first_use("refresh:" + token_kind.wrapped.jti, time.time() + REFRESH_TTL)
        upstream_token, hint = token_kind.wrapped.upstream_token, "refresh_token"
    else:
        upstream_token, hint = token, token_type_hint(form)
    await call.state.upstream.revoke(call.facade.upstream, upstream_token, hint)
    log.info("facade token revoked", extra={"policy": call.policy.ref, "client": client.log_id})
    return done
