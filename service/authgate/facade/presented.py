"""What a client presents at the token, introspection and revocation endpoints: its
credentials (RFC 6749 §2.3) with its form, and a token to introspect or revoke."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from authgate.errors import SealError
from authgate.facade.clients import Client
from authgate.facade.context import Call
from authgate.facade.params import form
from authgate.facade.records import WrappedRefresh


async def authenticated(call: Call) -> tuple[Client, dict[str, str]]:
    """The client the request's credentials prove, and its form (ClientError: invalid_client)."""
    params = await form(call.request)
    client = await call.clients.authenticate(
        call.policy, call.facade, call.request.headers.get("authorization"), params
    )
    return client, params


class Kind(Enum):
    UPSTREAM = "upstream"  # not a sealed value: the upstream's own token (or nothing), asked there
    REFUSED = "refused"  # sealed in shape, but does not open here or is another client's: answered locally
    WRAPPED = "wrapped"  # a wrapped refresh token of this client


@dataclass(frozen=True)
class PresentedToken:
    kind: Kind
    wrapped: WrappedRefresh | None = None  # with Kind.WRAPPED


def presented(call: Call, client: Client, token: str) -> PresentedToken:
    """Which kind of token `client` presents: a token that is ours in shape (a compact JWE)
    is never forwarded upstream unless it opens as this client's wrapped refresh token."""
    if token.count(".") != 4:
        return PresentedToken(Kind.UPSTREAM)
    try:
        wrapped = call.open(WrappedRefresh, token)
    except SealError:
        return PresentedToken(Kind.REFUSED)
    if wrapped.client_id != client.client_id:
        return PresentedToken(Kind.REFUSED)
    return PresentedToken(Kind.WRAPPED, wrapped)
