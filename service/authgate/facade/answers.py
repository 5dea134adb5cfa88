"""What the facade answers when a handler raises: the one error mapping.

Handlers raise errors from `authgate.errors`; `error_answer` turns each into the answer its
endpoint's surface calls for. JSON endpoints (register, token, introspect, revoke, and any
OAuthError) get RFC 6749 §5.2 JSON; browser endpoints (authorize, callback) get the error
page, or for a RedirectableError a redirect to the client's validated redirect_uri with its
`state` and the facade's `iss` (RFC 9207). A browser handler returns an error page
itself only for its 403s (the wrong browser or origin), which no error stands for.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, RedirectResponse, Response

from authgate.errors import (
    ClientError,
    KeysUnavailable,
    OAuthError,
    ProtocolError,
    RedirectableError,
    ShowError,
    UpstreamUnavailable,
)
from authgate.facade.authorization_request import with_params
from authgate.facade.pages import error_page

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# What a facade handler may raise for the mapping to answer; anything else is a bug (503, logged).
ANSWERED = (ProtocolError, UpstreamUnavailable, KeysUnavailable)


def error_answer(
    error: ProtocolError | UpstreamUnavailable | KeysUnavailable, issuer: str, cors: dict[str, str], page: bool
) -> Response:
    """The answer to `error` at a facade whose issuer is `issuer`; `page`: a browser endpoint."""
    if isinstance(error, OAuthError):
        return json_error(error, cors)
    if isinstance(error, RedirectableError):
        return redirect_error(issuer, error.redirect_uri, error.error, error.description, error.state)
    if isinstance(error, ShowError):
        return error_page(f"{error.description}.")
    if isinstance(error, ClientError):
        if page:
            return error_page(f"This application cannot sign in here: {error.description}.")
        return json_error(OAuthError(401, "invalid_client", error.description), cors)
    if isinstance(error, UpstreamUnavailable):
        if page:
            return error_page("The identity provider is unavailable. Try again later.", 503)
        return json_error(OAuthError(503, "temporarily_unavailable", error.reason), cors)
    if isinstance(error, KeysUnavailable):
        return json_error(OAuthError(503, "temporarily_unavailable", error.reason), cors)
    # UpstreamRefused, RegistrationError: the RFC code for the client
    return json_error(OAuthError(400, error.error, error.description), cors)


def json_error(error: OAuthError, cors: dict[str, str]) -> JSONResponse:
    headers = cors | NO_STORE | error.headers
    if error.status == 401:
        # RFC 9110 §15.5.2 and RFC 6749 §5.2: the scheme the client may authenticate with.
        headers.setdefault("WWW-Authenticate", 'Basic realm="authgate"')
    if error.status == 429:
        headers["Retry-After"] = "10"
    return JSONResponse(
        {"error": error.error, "error_description": error.description}, status_code=error.status, headers=headers
    )


def redirect_error(issuer: str, redirect_uri: str, error: str, description: str, state: str | None) -> Response:
    params = {"error": error, "error_description": description}
    if state is not None:
        params["state"] = state
    params["iss"] = issuer
    return RedirectResponse(with_params(redirect_uri, params), status_code=302, headers=NO_STORE)
