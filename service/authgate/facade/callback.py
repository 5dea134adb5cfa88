"""GET /oauth2/callback: the upstream's redirect back, in the browser that started the
sign-in; its code is sealed into the facade's own code (60 s) for the client's redirect_uri."""

from __future__ import annotations

import logging
import time

from starlette.responses import RedirectResponse, Response

from authgate.errors import RedirectableError, SealError, ShowError
from authgate.facade.answers import NO_STORE
from authgate.facade.authorization_request import with_params
from authgate.facade.browser import same_browser
from authgate.facade.context import Call
from authgate.facade.pages import error_page
from authgate.facade.params import query
from authgate.facade.records import TRANSACTION_TTL, Code, Transaction

log = logging.getLogger("authgate.facade")

# RFC 6749 §4.1.2.1 codes an upstream error may be relayed as; anything else is server_error.
AUTHORIZE_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "invalid_target",
        "login_required",
        "consent_required",
        "interaction_required",
    }
)


async def handle(call: Call) -> Response:
    facade, policy = call.facade, call.policy
    params, duplicated = query(call.request)
    if duplicated:
        raise ShowError("The identity provider's answer is malformed")
    try:
        transaction = call.open(Transaction, params.get("state", ""))
    except SealError:
        raise ShowError("This sign-in has expired or is not valid. Start again from the application") from None
    if not same_browser(call.request, transaction.browser_hash):
        return error_page("This sign-in was started in another browser.", 403)
    endpoints = await call.state.upstream.endpoints(facade.upstream)  # unavailable: a 503 page
    issuer = params.get("iss")
    if (issuer is not None and issuer != facade.upstream.issuer) or (issuer is None and endpoints.iss_parameter):
        log.warning("facade callback from another issuer", extra={"policy": policy.ref})
        raise ShowError("The answer did not come from the expected identity provider")
    if not call.state.used.first_use("tx:" + transaction.jti, time.time() + TRANSACTION_TTL):
        raise ShowError("This sign-in was already completed. Start again from the application")
    authorization = transaction.request
    if "error" in params:
        error = params["error"] if params["error"] in AUTHORIZE_ERRORS else "server_error"
        log.info("facade upstream authorization failed", extra={"policy": policy.ref, "error": error})
        raise RedirectableError(authorization.redirect_uri, error, "the identity provider refused", authorization.state)
    upstream_code = params.get("code")
    if not upstream_code:
        raise ShowError("The identity provider's answer has no code")
    code = call.seal(Code(authorization, upstream_code, transaction.upstream_verifier))
    answer = {"code": code}
    if authorization.state is not None:
        answer["state"] = authorization.state
    answer["iss"] = facade.issuer
    return RedirectResponse(with_params(authorization.redirect_uri, answer), status_code=302, headers=NO_STORE)
