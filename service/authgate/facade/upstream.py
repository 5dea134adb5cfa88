"""The real identity provider behind a facade: its endpoints and the calls made to it.

Endpoints come from `spec.facade.upstream` or from the issuer's metadata through the shared
`outbound.discovery.Discovery` (bounded, single-flight, stale-if-error, issuer checked);
when it fails, the facade answers UpstreamUnavailable. Every call goes through the egress client
(timeouts, size caps, no redirects, SSRF screening) with the facade's own client
credentials; request parameters are built here from a fixed list, never copied from a
client's request, so nothing (client_secret, client_assertion...) can be smuggled through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from authgate.errors import DiscoveryFailed, EgressError, UpstreamRefused, UpstreamUnavailable
from authgate.outbound.discovery import Discovery
from authgate.outbound.egress import EgressClient
from authgate.outbound.oauth_client import post_form
from authgate.policy.snapshot import CompiledUpstream

log = logging.getLogger("authgate.facade")

MAX_TOKEN_RESPONSE_BYTES = 64 * 1024

# RFC 6749 §5.2 codes a client may act on; anything else the upstream says becomes invalid_grant.
_RELAYED_TOKEN_ERRORS = frozenset({"invalid_grant", "invalid_scope", "invalid_target"})


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    introspection: str | None
    revocation: str | None
    iss_parameter: bool  # RFC 9207: the upstream sends `iss` in authorization responses


class Upstream:
    """Endpoints and calls for every facade's upstream (one per process)."""

    def __init__(self, egress: EgressClient, discovery: Discovery) -> None:
        self._egress = egress
        self._discovery = discovery

    async def endpoints(self, upstream: CompiledUpstream) -> Endpoints:
        document: dict = {}
        if upstream.authorization_endpoint is None or upstream.token_endpoint is None:
            try:
                document = await self._discovery.metadata(upstream.issuer)
            except DiscoveryFailed as error:
                log.warning("upstream discovery failed", extra={"issuer": upstream.issuer, "reason": error.reason})
                raise UpstreamUnavailable("the identity provider's metadata is unavailable") from None
        authorization = upstream.authorization_endpoint or document.get("authorization_endpoint")
        token = upstream.token_endpoint or document.get("token_endpoint")
        if not isinstance(authorization, str) or not isinstance(token, str):
            raise UpstreamUnavailable("the identity provider's metadata names no authorization or token endpoint")

        def optional(configured: str | None, name: str) -> str | None:
            value = configured or document.get(name)
            return value if isinstance(value, str) else None

        return Endpoints(
            authorization=authorization,
            token=token,
            introspection=optional(upstream.introspection_endpoint, "introspection_endpoint"),
            revocation=optional(upstream.revocation_endpoint, "revocation_endpoint"),
            iss_parameter=document.get("authorization_response_iss_parameter_supported") is True,
        )

    async def _post(self, upstream: CompiledUpstream, url: str, form: dict[str, str]) -> tuple[int, dict]:
        try:
            response = await post_form(
                self._egress, url, form, upstream.client_id, upstream.client_secret, MAX_TOKEN_RESPONSE_BYTES
            )
            body = response.json_object() if response.content else {}
        except EgressError as error:
            log.warning("upstream call failed", extra={"issuer": upstream.issuer, "reason": error.reason})
            raise UpstreamUnavailable(f"the identity provider cannot be reached ({error.reason})") from None
        return response.status_code, body

    async def token(self, upstream: CompiledUpstream, form: dict[str, str]) -> dict:
        """A token request (authorization_code or refresh_token grant); the JSON answer."""
        endpoints = await self.endpoints(upstream)
        status, body = await self._post(upstream, endpoints.token, form)
        if status == 200 and isinstance(body.get("access_token"), str) and body.get("access_token"):
            token_type = body.get("token_type")
            if not isinstance(token_type, str) or token_type.lower() not in ("bearer", "n_a"):
                raise UpstreamUnavailable(f"the identity provider issued a {token_type!r} token, not a bearer token")
            return body
        error = body.get("error") if isinstance(body.get("error"), str) else None
        description = body.get("error_description")
        log.info(
            "upstream refused a token request",
            extra={
                "issuer": upstream.issuer,
                "status": status,
                "error": error,
                "error_description": description if isinstance(description, str) else None,
            },
        )
        if 400 <= status < 500 and error is not None:
            code = error if error in _RELAYED_TOKEN_ERRORS else "invalid_grant"
            raise UpstreamRefused(code, "the identity provider refused the grant")
        raise UpstreamUnavailable(f"the identity provider's token endpoint answered {status}")

    async def introspect(self, upstream: CompiledUpstream, token: str, hint: str | None) -> dict:
        endpoints = await self.endpoints(upstream)
        if endpoints.introspection is None:
            raise UpstreamUnavailable("the identity provider offers no introspection endpoint")
        form = {"token": token} | ({"token_type_hint": hint} if hint else {})
        status, body = await self._post(upstream, endpoints.introspection, form)
        if status == 400:
            return {"active": False}  # a token it will not introspect is not one it vouches for
        if status != 200 or not isinstance(body.get("active"), bool):
            raise UpstreamUnavailable(f"the identity provider's introspection answered {status}")
        return body

    async def revoke(self, upstream: CompiledUpstream, token: str, hint: str | None) -> None:
        endpoints = await self.endpoints(upstream)
        if endpoints.revocation is None:
            raise UpstreamRefused("unsupported_token_type", "the identity provider offers no revocation")
        form = {"token": token} | ({"token_type_hint": hint} if hint else {})
        status, body = await self._post(upstream, endpoints.revocation, form)
        if status == 200:
            return
        if status == 400 and body.get("error") == "unsupported_token_type":
            raise UpstreamRefused("unsupported_token_type", "the identity provider cannot revoke this kind of token")
        if status == 400:
            return  # RFC 7009 §2.2: an invalid token needs no revoking
        raise UpstreamUnavailable(f"the identity provider's revocation answered {status}")
