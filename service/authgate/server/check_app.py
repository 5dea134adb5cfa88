"""The check port: `/ext-authz/nginx`, `/ext-authz/traefik`, `/ext-authz/envoy/<path>`.

A plain ASGI application rather than a Starlette router: this is the hot path, it has
three routes, and it must read the raw (undecoded) path, which Starlette decodes.
Each dialect module turns headers into a CheckRequest; `render` turns the Decision
into the one HTTP answer all three dialects understand.
"""

from __future__ import annotations

import logging

from authgate import metrics
from authgate.check.decision import Decision, bad_request, internal_error
from authgate.check.request import CheckRequest
from authgate.errors import BadRequest
from authgate.server.dialects import envoy_http, nginx, traefik
from authgate.server.dialects.client_cert import certificate_digest
from authgate.server.dialects.headers import COMMON, collect, first_request_id, mcp_value, request_id
from authgate.server.dialects.render import render
from authgate.server.service import AuthService

log = logging.getLogger("authgate.check")

_COMMON = frozenset(name.encode() for name in COMMON)
_NOT_FOUND = [(b"content-type", b"application/json")]


def http_answer(decision: Decision, dialect: str, rid: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    rendered = render(decision)
    headers = [(b"x-request-id", rid.encode())]
    headers.extend((name.encode(), value.encode()) for name, value in rendered.headers)
    if dialect == "envoy" and rendered.remove_headers:
        # Envoy strips these from the upstream request after setting the allowed ones,
        # so the list holds only identity headers authgate did not set.
        headers.append((b"x-envoy-auth-headers-to-remove", ",".join(rendered.remove_headers).encode()))
    return rendered.status, headers, rendered.body


class CheckApp:
    def __init__(self, service: AuthService) -> None:
        self.service = service
        name = service.settings.client_cert_header
        self._cert_name = name.lower() if name else None  # the one header trusted with the client certificate
        common = _COMMON | {self._cert_name.encode()} if self._cert_name else _COMMON
        self._wanted = {
            "nginx": common | nginx.WANTED,
            "traefik": common | traefik.WANTED,
            "envoy": common | envoy_http.WANTED,
        }

    def _certificate(self, headers: dict[bytes, str]) -> bytes | None:
        if self._cert_name is None:
            return None
        value = headers.get(self._cert_name.encode())
        if value is None or not value.strip():  # (nginx sends the header empty without a certificate)
            return None
        return certificate_digest(self._cert_name, value)

    def _common(self, headers: dict[bytes, str]) -> dict:
        return {
            "authorization": headers.get(b"authorization"),
            "dpop": headers.get(b"dpop"),
            "mcp_method": mcp_value(headers.get(b"mcp-method"), "Mcp-Method"),
            "mcp_name": mcp_value(headers.get(b"mcp-name"), "Mcp-Name"),
            "origin": headers.get(b"origin"),
            "access_control_request_method": headers.get(b"access-control-request-method"),
            "request_id": request_id(headers.get(b"x-request-id")),
            "client_cert_sha256": self._certificate(headers),
        }

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw_path.split(b"?", 1)[0]
        if raw_path == b"/ext-authz/nginx":
            dialect = "nginx"
        elif raw_path == b"/ext-authz/traefik":
            dialect = "traefik"
        elif raw_path == envoy_http.PREFIX or raw_path.startswith(envoy_http.PREFIX + b"/"):
            dialect = "envoy"
        else:
            await _send(send, 404, list(_NOT_FOUND), b'{"error":"not_found"}')
            return
        rid = ""
        try:
            headers = collect(scope["headers"], self._wanted[dialect])
            common = self._common(headers)
            rid = common["request_id"]
            request = self._parse(dialect, headers, common, raw_path, scope)
        except BadRequest as error:
            decision = bad_request(str(error))
            rid = rid or first_request_id(scope["headers"])
            self.service.record(CheckRequest("", "", "", request_id=rid), decision, dialect, 0.0)
        except Exception:  # never a 500, never a trace to the client
            metrics.ERRORS.labels(where="parse").inc()
            log.exception("check request parsing failed")
            decision = internal_error()
        else:
            decision = await self.service.check(request, dialect)
        status, response_headers, body = http_answer(decision, dialect, rid or "-")
        await _send(send, status, response_headers, body)

    @staticmethod
    def _parse(dialect: str, headers: dict[bytes, str], common: dict, raw_path: bytes, scope) -> CheckRequest:
        if dialect == "nginx":
            return nginx.parse(headers, common)
        if dialect == "traefik":
            return traefik.parse(headers, common)
        return envoy_http.parse(headers, common, raw_path, scope["method"])


async def _send(send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
