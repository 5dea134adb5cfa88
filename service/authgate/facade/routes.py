"""Which policy's facade endpoint a public-port request names, and the one dispatch table.

    /.well-known/oauth-authorization-server<issuer path>   RFC 8414 metadata
    /.well-known/openid-configuration<issuer path>         the same, where MCP clients look
    <issuer path>/.well-known/openid-configuration         (OpenID Connect Discovery form)
    <issuer path>/oauth2/register                          RFC 7591
    <issuer path>/oauth2/authorize                         GET: checks, then consent; POST: the decision
    <issuer path>/oauth2/callback                          the upstream's redirect back
    <issuer path>/oauth2/token                             authorization_code, refresh_token
    <issuer path>/oauth2/introspect, /oauth2/revoke        proxied upstream (RFC 7662, RFC 7009)

`Facade.handle` answers CORS preflights, the method, sealing-key and rate-limit checks,
then calls the endpoint's handler for the method; whatever a handler raises is answered
by `answers.error_answer`, the one error mapping.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from authgate.errors import OAuthError, TargetError
from authgate.facade import authorize, callback, introspect, metadata, register, revoke, token
from authgate.facade.answers import ANSWERED, error_answer
from authgate.facade.context import Call, FacadeDeps, FacadeState
from authgate.facade.guards import RATE_LIMITS
from authgate.policy.snapshot import CompiledFacade, CompiledPolicy
from authgate.urls import normalize_host

Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    handlers: Mapping[str, Handler]  # by method (HEAD is answered as GET)
    page: bool = False  # a browser endpoint: errors are pages or redirects, not JSON
    preflight: bool = True  # answers CORS preflights (browser-based MCP clients call it)
    needs_keys: bool = True  # without sealing keys: 503


ENDPOINTS: Mapping[str, Endpoint] = {
    "metadata": Endpoint({"GET": metadata.handle}, needs_keys=False),
    "register": Endpoint({"POST": register.handle}),
    "authorize": Endpoint({"GET": authorize.consent, "POST": authorize.decision}, page=True, preflight=False),
    "callback": Endpoint({"GET": callback.handle}, page=True, preflight=False),
    "token": Endpoint({"POST": token.handle}),
    "introspect": Endpoint({"POST": introspect.handle}),
    "revoke": Endpoint({"POST": revoke.handle}),
}
_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, MCP-Protocol-Version",
    "Access-Control-Max-Age": "600",
}


@dataclass(frozen=True)
class Route:
    policy: CompiledPolicy
    facade: CompiledFacade
    endpoint: str  # a name in ENDPOINTS


def endpoint_name(facade: CompiledFacade, path: str) -> str | None:
    base = facade.path
    if path in (
        "/.well-known/oauth-authorization-server" + base,
        "/.well-known/openid-configuration" + base,
        base + "/.well-known/openid-configuration",
    ):
        return "metadata"
    prefix = base + "/oauth2/"
    name = path[len(prefix) :] if path.startswith(prefix) else None
    return name if name in ENDPOINTS and name != "metadata" else None


class Facade:
    """Every policy's facade endpoints (one per process); stateless apart from its guards."""

    def __init__(self, deps: FacadeDeps) -> None:
        self.deps = deps
        self.state = FacadeState.build(deps)

    def route(self, host_header: str, path: str) -> Route | None:
        try:
            host = normalize_host(host_header, None)
        except TargetError:
            return None
        for policy in self.deps.snapshot().facades.get(host, ()):
            assert policy.facade is not None
            name = endpoint_name(policy.facade, path)
            if name is not None:
                return Route(policy, policy.facade, name)
        return None

    async def handle(self, request: Request, route: Route) -> Response:
        endpoint = ENDPOINTS[route.endpoint]
        cors = _cors_headers(request, route.policy)
        if request.method == "OPTIONS":
            if not endpoint.preflight:
                return Response(status_code=405)
            return Response(status_code=204, headers=cors | _PREFLIGHT_HEADERS)
        call = Call(request, route.policy, route.facade, self.deps.sealing_keys(), cors, self.state)
        try:
            handler = self._admit(request, route, endpoint, call)
            return await handler(call)
        except ANSWERED as error:
            return error_answer(error, route.facade.issuer, cors, endpoint.page)

    def _admit(self, request: Request, route: Route, endpoint: Endpoint, call: Call) -> Handler:
        """The handler for this request, once it has keys, an allowed method and rate."""
        if call.sealing is None and endpoint.needs_keys:
            raise OAuthError(503, "temporarily_unavailable", "the facade has no sealing keys")
        method = "GET" if request.method == "HEAD" else request.method
        handler = endpoint.handlers.get(method)
        if handler is None:
            raise OAuthError(405, "invalid_request", "method not allowed")
        address = _client_address(request, self.deps.forwarded_for_hops)
        if route.endpoint in RATE_LIMITS and not self.state.limiter.allow(route.endpoint, address):
            raise OAuthError(429, "slow_down", "too many requests; retry later")
        return handler


def _cors_headers(request: Request, policy: CompiledPolicy) -> dict[str, str]:
    origin = request.headers.get("origin")
    if origin is None or not policy.cors_origins:
        return {}
    if "*" in policy.cors_origins:
        return {"Access-Control-Allow-Origin": "*"}
    if origin in policy.cors_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {}


def _client_address(request: Request, hops: int) -> str:
    """The address rate limits key on: the peer, or with `hops` trusted proxies in front, the
    address the outermost of them saw (X-Forwarded-For, counted from the right: entries further
    left were written by the client and prove nothing)."""
    peer = request.client.host if request.client else "unknown"
    if hops <= 0:
        return peer
    forwarded = [entry.strip() for header in request.headers.getlist("x-forwarded-for") for entry in header.split(",")]
    return forwarded[-hops] if len(forwarded) >= hops and forwarded[-hops] else peer
