"""A small issuer (discovery + JWKS) whose faults tests can switch on.

The real identity provider in tests is oidc-provider (tests/infra/idp.py). This one
exists for what a real IdP cannot be made to do on demand: count every JWKS fetch,
go down, answer slowly, answer garbage, rotate keys at a precise moment. It is a real
Uvicorn server on 127.0.0.1, run in a thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.infra.keys import SigningKey
from tests.infra.threaded_server import ThreadedServer


class JwksServer:
    """Attributes tests change at will: `keys`, `mode` (ok | down | garbage | slow | huge),
    `delay` (seconds, for slow), `discovery_extra` (more discovery fields). `fetches`
    counts JWKS requests."""

    def __init__(self, keys: list[SigningKey], path: str = "") -> None:
        routes = [
            Route(f"{path}/.well-known/openid-configuration", self._discovery),
            Route("/jwks", self._jwks),
        ]
        self._http = ThreadedServer(Starlette(routes=routes), name="JWKS test server")
        self.port = self._http.port
        self.issuer = f"http://127.0.0.1:{self.port}{path}"
        self.jwks_uri = f"http://127.0.0.1:{self.port}/jwks"
        self.keys = list(keys)
        self.mode = "ok"
        self.delay = 2.0
        self.discovery_extra: dict[str, Any] = {}
        self.fetches = 0
        self.discoveries = 0
        self._lock = threading.Lock()

    async def _discovery(self, request: Request) -> Response:
        self.discoveries += 1
        if self.mode == "down":
            return Response("down", 503)
        return JSONResponse({"issuer": self.issuer, "jwks_uri": self.jwks_uri, **self.discovery_extra})

    async def _jwks(self, request: Request) -> Response:
        with self._lock:
            self.fetches += 1
        mode = self.mode
        if mode == "down":
            return Response("down", 503)
        if mode == "garbage":
            return Response(b"\x00not json{", 200, media_type="application/json")
        if mode == "huge":
            return Response(b'{"keys":[' + b'{"kty":"oct","k":"AAAA"},' * 40000 + b"{}]}", 200)
        if mode == "slow":
            await asyncio.sleep(self.delay)
        return JSONResponse({"keys": [key.public_jwk() for key in self.keys]})

    def reset_counts(self) -> None:
        with self._lock:
            self.fetches = 0
            self.discoveries = 0

    def start(self) -> JwksServer:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop(5)

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
