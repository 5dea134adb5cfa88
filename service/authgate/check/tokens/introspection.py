"""RFC 7662 introspection of opaque access tokens.

Only for issuer entries that declare `introspection`, and only to their endpoint; the
answer is checked like a JWT's claims (active, iss, aud, exp, scope). Positive answers are
cached for at most min(exp, 60 s) so that revocation takes effect; negative ones briefly.
"""

from __future__ import annotations

import logging

from authgate.errors import EgressError, KeysUnavailable
from authgate.outbound.egress import EgressClient
from authgate.outbound.oauth_client import post_form
from authgate.policy.snapshot import CompiledIssuer

log = logging.getLogger("authgate.introspection")
MAX_RESPONSE_BYTES = 64 * 1024
POSITIVE_TTL = 60.0
NEGATIVE_TTL = 5.0


async def introspect(egress: EgressClient, entry: CompiledIssuer, token: str) -> dict:
    """The introspection response (a JSON object); KeysUnavailable (503) when it cannot be had."""
    client = entry.introspection
    assert client is not None
    try:
        form = {"token": token, "token_type_hint": "access_token"}
        response = await post_form(
            egress, client.endpoint, form, client.client_id, client.client_secret, MAX_RESPONSE_BYTES
        )
        if response.status_code != 200:
            raise KeysUnavailable(entry.issuer, f"introspection answered {response.status_code}")
        return response.json_object()
    except EgressError as error:
        log.warning("introspection failed", extra={"issuer": entry.issuer, "reason": error.reason})
        raise KeysUnavailable(entry.issuer, f"introspection failed ({error.reason})") from None
