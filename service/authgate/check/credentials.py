"""Where an access token may come from: the Authorization header, and nowhere else.

`Bearer` (RFC 6750 §2.1) or `DPoP` (RFC 9449 §7.1), each followed by a token68; the query
string (RFC 6750 §2.3) and form bodies are never read.
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate.errors import TokenError
from authgate.outbound.oauth_client import is_b64token

SCHEMES = {"bearer": "Bearer", "dpop": "DPoP"}


@dataclass(frozen=True, slots=True)
class Credentials:
    scheme: str  # "Bearer" or "DPoP"
    token: str


def credentials(authorization: str | None) -> Credentials | None:
    """The token and its scheme, or None when no token was sent at all.

    Another scheme (Basic...) counts as no token; a known scheme with a malformed value is
    an invalid token.
    """
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    name = SCHEMES.get(scheme.lower())
    if name is None:
        return None
    value = value.strip()
    if not value or not is_b64token(value):
        raise TokenError(f"malformed {name} credentials")
    return Credentials(name, value)
