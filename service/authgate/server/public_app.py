"""The public port: what clients reach through the ingress. RFC 9728 protected-resource
metadata, and each policy's authorization-server facade (`authgate.facade.routes`).

It never answers ext-authz checks (those hand out identity headers).
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authgate import metrics
from authgate.errors import TargetError
from authgate.facade.context import FacadeDeps
from authgate.facade.routes import Facade
from authgate.server.protected_resource import WELL_KNOWN, find_policy, protected_resource_metadata
from authgate.server.service import AuthService
from authgate.urls import normalize_host, normalize_path

log = logging.getLogger("authgate.facade")
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET, OPTIONS"}


def _error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status, headers=_CORS)


def create_public_app(service: AuthService) -> Starlette:
    facade = Facade(
        FacadeDeps(
            egress=service.egress,
            discovery=service.discovery,
            validator=service.validator,
            snapshot=lambda: service.snapshot,
            sealing_keys=lambda: service.sealing_keys,
            forwarded_for_hops=service.settings.forwarded_for_hops,
        )
    )

    async def protected_resource(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=_CORS | {"Access-Control-Max-Age": "600"})
        raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        try:
            host = normalize_host(request.headers.get("host", ""), request.url.scheme)
            suffix = normalize_path(raw)[len(WELL_KNOWN) :]
        except TargetError:
            return _error(400, "invalid_request", "malformed host or path")
        policy = find_policy(service.snapshot, host, suffix)
        if policy is None:
            return _error(404, "not_found", "no protected resource here")
        return JSONResponse(
            protected_resource_metadata(policy), headers=_CORS | {"Cache-Control": "public, max-age=300"}
        )

    async def facade_endpoint(request: Request) -> Response:
        route = facade.route(request.headers.get("host", ""), request.url.path)
        if route is None:
            return _error(404, "not_found", "not found")
        try:
            response = await facade.handle(request, route)
        except Exception:  # never a stack trace or a 500 to a client
            metrics.ERRORS.labels(where="facade").inc()
            log.exception("facade request failed", extra={"policy": route.policy.ref, "endpoint": route.endpoint})
            response = _error(503, "temporarily_unavailable", "the request could not be completed")
        metrics.FACADE_REQUESTS.labels(route.endpoint, str(response.status_code)).inc()
        return response

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "not_found", "not found")

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, "method_not_allowed", "method not allowed")

    return Starlette(
        routes=[
            Route(WELL_KNOWN, protected_resource, methods=["GET", "OPTIONS"]),
            Route(WELL_KNOWN + "/{rest:path}", protected_resource, methods=["GET", "OPTIONS"]),
            Route("/{rest:path}", facade_endpoint, methods=["GET", "POST", "OPTIONS"]),
        ],
        exception_handlers={404: not_found, 405: method_not_allowed},
    )
