"""A small issuer (discovery + JWKS) whose faults tests can switch on.

The real identity provider in tests is oidc-provider (tests/support/idp.py). This one
exists for what a real IdP cannot be made to do on demand: count every JWKS fetch,
go down, answer slowly, answer garbage, rotate keys at a precise moment. It is a real
Uvicorn server on 127.0.0.1, run in a thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.support.keys import SigningKey
from tests.support.ports import free_port


class JwksServer:
    """Attributes tests change at will: `keys`, `mode` (ok | down | garbage | slow | huge),
    `delay` (seconds, for slow). `fetches` counts JWKS requests."""

    def __init__(self, keys: list[SigningKey], path: str = "") -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}{path}"
        self.jwks_uri = f"http://127.0.0.1:{self.port}/jwks"
        self.keys = list(keys)
        self.mode = "ok"
        self.delay = 2.0
        self.fetches = 0
        self.discoveries = 0
        self._lock = threading.Lock()
        routes = [
            Route(f"{path}/.well-known/openid-configuration", self._discovery),
            Route("/jwks", self._jwks),
        ]
        config = uvicorn.Config(
            Starlette(routes=routes),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    async def _discovery(self, request: Request) -> Response:
        self.discoveries += 1
        if self.mode == "down":
            return Response("down", 503)
        return JSONResponse({"issuer": self.issuer, "jwks_uri": self.jwks_uri})

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
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("JWKS test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
