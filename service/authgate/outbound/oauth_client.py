"""authgate as an OAuth client: how it authenticates (RFC 6749 §2.3) and the one form POST
it makes to an authorization server (token exchange, introspection, the facade's upstream
token, revocation and introspection calls), and the b64token syntax of the tokens it
passes on."""

from __future__ import annotations

import re
from urllib.parse import quote

from authgate.outbound.egress import EgressClient, EgressResponse

_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 §2.1 b64token


def is_b64token(value: str) -> bool:
    """Can `value` travel as a bearer token (and so in a header) as is?"""
    return bool(_B64TOKEN.match(value))


def client_secret_basic(client_id: str, client_secret: str) -> tuple[str, str]:
    """HTTP Basic credentials of an OAuth client: both parts form-urlencoded first (RFC 6749 §2.3.1)."""
    return quote(client_id, safe="").replace("%20", "+"), quote(client_secret, safe="").replace("%20", "+")


def authenticated_form(
    form: dict[str, str], client_id: str, client_secret: str | None
) -> tuple[dict[str, str], tuple[str, str] | None]:
    """How authgate authenticates as an OAuth client (RFC 6749 §2.3): (form, Basic credentials).
    With a secret, client_secret_basic; without one (a public client, or RFC 8705
    tls_client_auth), the client names itself with client_id in the body."""
    if client_secret is not None:
        return form, client_secret_basic(client_id, client_secret)
    return {**form, "client_id": client_id}, None


async def post_form(
    egress: EgressClient,
    url: str,
    form: dict[str, str],
    client_id: str,
    client_secret: str | None,
    max_bytes: int,
) -> EgressResponse:
    """POST `form` to an authorization-server endpoint as this client, asking for JSON, with
    the answer capped at `max_bytes`; EgressError when the call fails (any status returns)."""
    body, basic = authenticated_form(form, client_id, client_secret)
    return await egress.request(
        "POST", url, data=body, auth=basic, headers={"Accept": "application/json"}, max_bytes=max_bytes
    )
