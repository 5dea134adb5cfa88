"""The operator's own admin token, checked once at start-up: every replica verifies that
it was minted for `--admin-audience` (TokenReview), so a token for another audience would
have every push refused. Only its claims are read; the replicas verify the signature."""

from __future__ import annotations

import base64
import binascii

from authgate import bounded_json

MAX_TOKEN_BYTES = 64 * 1024


class AdminTokenError(Exception):
    pass


def token_audiences(token: str) -> list[str]:
    """The `aud` claim of a JWT (RFC 7519 §4.1.3: a string or an array of strings)."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise AdminTokenError("the admin token is not a JWT (a projected ServiceAccount token is)")
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = bounded_json.read_object(payload, MAX_TOKEN_BYTES)
    except (binascii.Error, ValueError) as error:
        raise AdminTokenError(f"the admin token's claims cannot be read ({error})") from None
    audience = claims.get("aud")
    if isinstance(audience, str):
        return [audience]
    if isinstance(audience, list) and all(isinstance(a, str) for a in audience):
        return audience
    raise AdminTokenError("the admin token has no audience (aud claim)")


def check_admin_token(token: str, audience: str) -> None:
    """Raise AdminTokenError unless the token is a JWT whose audiences include `audience`."""
    audiences = token_audiences(token)
    if audience not in audiences:
        raise AdminTokenError(
            f"the admin token is for {', '.join(audiences) or 'no audience'}, not --admin-audience {audience}: "
            "every replica would refuse its pushes (mint the projected token for that audience)"
        )
