"""An echo upstream: the "app" behind the proxy, showing what reached it.

A real uvicorn server in a background thread on 127.0.0.1. Every request, any
method and path, is answered 200 with JSON:

    {"method": "GET", "path": "/mcp", "query": "a=1",
     "headers": {"x-auth-subject": "alice", ...},       # lower-cased, repeats joined by ", "
     "raw_headers": [["x-auth-subject", "alice"], ...]}  # exactly as received, in order

`raw_headers` shows a header that arrived twice (a client copy that the proxy
failed to overwrite). Requests are also kept in `.requests`.

    with EchoUpstream() as app:
        ...  # point nginx / Envoy at app.port
        assert app.requests[-1]["headers"]["x-auth-subject"] == "alice"
"""

from __future__ import annotations

import json
from typing import Any

from tests.infra.threaded_server import ThreadedServer


class EchoUpstream:
    """Constructor: `host` (default 127.0.0.1), `port` (default: a free one, bound
    before the server starts, so no other process can take it). Attributes:
    `host`, `port`, `url`, `requests` (list of the echoed dicts)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadedServer(self._app, name="echo upstream", host=host, port=port)
        self.host = host
        self.port: int = self._server.port
        self.url = f"http://{host}:{self.port}"
        self.requests: list[dict[str, Any]] = []

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        while True:  # drain the body so keep-alive connections stay usable
            message = await receive()
            if not message.get("more_body"):
                break
        raw_headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        echoed = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
            "raw_headers": raw_headers,
        }
        self.requests.append(echoed)
        body = json.dumps(echoed).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def start(self, timeout: float = 10.0) -> EchoUpstream:
        self._server.start(timeout)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.stop(timeout)

    def __enter__(self) -> EchoUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
