"""Where a bearer token may come from: the Authorization header, and nowhere else.

RFC 6750 §2.1; the query string (§2.3) and form bodies are never read.
"""

from __future__ import annotations

from authgate.errors import TokenError
from authgate.outbound.oauth_client import is_b64token


def bearer_token(authorization: str | None) -> str | None:
    """The token, or None when no bearer credentials were sent at all.

    Another scheme (Basic, DPoP...) counts as no bearer token; `Bearer` with a malformed
    value is an invalid token.
    """
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    if not value or not is_b64token(value):
        raise TokenError("malformed bearer credentials")
    return value
