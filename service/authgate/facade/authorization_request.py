"""The authorization request (OAuth 2.1 §4.1.1, RFC 7636, RFC 8707) checked before consent.

Errors are split the way OAuth requires: until the client and its redirect_uri are known
good, an error is shown to the user (never redirected: an open redirector otherwise);
after that, it is returned to the client's redirect_uri with the client's state (and
`iss`, RFC 9207).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from authgate.errors import RedirectableError, ShowError
from authgate.facade.redirects import redirect_matches

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 §4.1
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")  # base64url(SHA-256), no padding


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def pkce_matches(verifier: str | None, challenge: str) -> bool:
    """RFC 7636 §4.6 with S256 only (OAuth 2.1 never allows `plain` here)."""
    return verifier is not None and bool(_VERIFIER.match(verifier)) and s256(verifier) == challenge


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    client: dict  # the registered metadata
    redirect_uri: str
    scope: tuple[str, ...]
    state: str | None
    code_challenge: str
    resource: str
    redirect_uri_given: bool  # the token request must then repeat it (RFC 6749 §4.1.3)


def with_params(uri: str, params: dict[str, str]) -> str:
    """Add query parameters to a redirect URI, keeping the ones it has (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = (parts.query + "&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def check_authorization_request(
    params: dict[str, str],
    client: dict | None,
    resource: str,
    allowed_scopes: frozenset[str],
    redirect_mode: str = "loopback-any-port",
) -> AuthorizationRequest:
    """`client`: the metadata of the client `params["client_id"]` names (None: unknown)."""
    client_id = params.get("client_id")
    if not client_id:
        raise ShowError("the request names no client_id")
    if client is None:
        raise ShowError("unknown client: register it first")
    registered = client.get("redirect_uris") or []
    redirect_uri = params.get("redirect_uri")
    redirect_uri_given = redirect_uri is not None
    if redirect_uri is None:
        if len(registered) != 1:
            raise ShowError("redirect_uri is required when the client registered several")
        redirect_uri = registered[0]
    if not any(redirect_matches(r, redirect_uri, redirect_mode) for r in registered):
        raise ShowError("redirect_uri does not match a registered one")

    state = params.get("state")

    def fail(error: str, description: str) -> RedirectableError:
        return RedirectableError(redirect_uri, error, description, state)

    if params.get("response_type") != "code":
        raise fail("unsupported_response_type", "only response_type=code is supported")
    challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
    if not challenge or method != "S256":
        raise fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
    if not _CHALLENGE.match(challenge):
        raise fail("invalid_request", "code_challenge is not an S256 challenge")
    requested_resource = params.get("resource", resource)
    if requested_resource != resource:
        raise fail("invalid_target", "resource must be this server's resource")
    scopes = tuple(params.get("scope", "").split())
    if not set(scopes) <= allowed_scopes:
        raise fail("invalid_scope", "a requested scope is not offered by this resource")
    registered_scope = client.get("scope")
    if registered_scope is not None and not set(scopes) <= set(registered_scope.split()):
        raise fail("invalid_scope", "a requested scope was not registered for this client")
    return AuthorizationRequest(client_id, client, redirect_uri, scopes, state, challenge, resource, redirect_uri_given)
