"""The admin port: health, readiness and the snapshot API the operator pushes to.

`PUT` is refused unless admin authentication is configured; `GET` of the snapshot is
authenticated too and reports versions and key state, never secrets.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authgate import bounded_json, metrics
from authgate.collector import collector_paused
from authgate.errors import PolicyError, StaleSnapshot
from authgate.policy import Snapshot, ValidationSettings, compile_document
from authgate.server.admin_auth import AdminAuth
from authgate.server.service import AuthService

log = logging.getLogger("authgate.admin")
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024


def _error(status: int, error: str, description: str, **extra) -> JSONResponse:
    # RFC 9110 §15.5.2: every 401 names the scheme that would be accepted.
    headers = {"WWW-Authenticate": 'Bearer realm="authgate-admin"'} if status == 401 else None
    return JSONResponse({"error": error, "error_description": description, **extra}, status, headers=headers)


def _read_and_compile(body: bytes, settings: ValidationSettings) -> Snapshot:
    with collector_paused():
        return compile_document(bounded_json.read(body, MAX_SNAPSHOT_BYTES), settings)


def create_admin_app(service: AuthService, auth: AdminAuth) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if service.draining:
            return JSONResponse({"status": "draining"}, 503)
        if service.loaded:
            return JSONResponse({"status": "ready", "generation": service.snapshot.generation})
        return JSONResponse({"status": "waiting for a policy snapshot"}, 503)

    async def snapshot(request: Request) -> Response:
        if request.method == "GET":
            if not await auth.authenticate(request.headers.get("authorization")):
                return _error(401, "unauthorized", "admin credentials required")
            if request.query_params.get("policies") == "false":  # versions only: most replicas, each round
                return JSONResponse(service.status(policies=False))
            # The whole state is megabytes at 10,000 policies: the operator asks for it again
            # with the tag it was given, and gets a 304 while nothing in it has changed.
            tag = service.status_tag()
            if tag in (t.strip() for t in request.headers.get("if-none-match", "").split(",")):
                return Response(status_code=304, headers={"ETag": tag})
            return JSONResponse(service.status(), headers={"ETag": tag})
        result, response = await push(request)
        metrics.SNAPSHOT_PUSHES.labels(result).inc()
        if result not in ("accepted", "unchanged"):
            log.warning("snapshot push refused", extra={"result": result, "status": response.status_code})
        return response

    async def push(request: Request) -> tuple[str, Response]:
        """(the push's result for the metric, the answer)."""
        if not auth.configured:
            return "disabled", _error(
                403, "forbidden", "snapshot pushes are disabled: no admin authentication is configured"
            )
        if not await auth.authenticate(request.headers.get("authorization")):
            return "unauthorized", _error(401, "unauthorized", "admin credentials required")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_SNAPSHOT_BYTES:
                return "too_large", _error(413, "too_large", "snapshot larger than 16 MiB")
        try:
            # Off the event loop: parsing and compiling 10,000 policies takes a second or
            # more, and checks go on meanwhile (the swap in `load` stays on the loop).
            compiled = await asyncio.to_thread(_read_and_compile, bytes(body), service.settings.validation)
        except bounded_json.JSONInputError as error:
            return "malformed", _error(400, "invalid_request", f"body is {error}")
        except PolicyError as error:
            issues = [str(issue) for issue in error.issues]
            return "invalid", _error(422, "invalid_snapshot", "the snapshot does not compile", issues=issues)
        try:
            changed = service.load(compiled)
        except StaleSnapshot as error:
            return "stale", _error(409, "stale_snapshot", str(error))
        answer = {"generation": compiled.generation, "version": compiled.version, "changed": changed}
        return ("accepted" if changed else "unchanged"), JSONResponse(answer)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/admin/v1/snapshot", snapshot, methods=["GET", "PUT"]),
        ]
    )
