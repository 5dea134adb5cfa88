"""The check port: `/ext-authz/nginx`, `/ext-authz/traefik`, `/ext-authz/envoy/<path>`.

A plain ASGI application rather than a Starlette router: this is the hot path, it has
three routes, and it must read the raw (undecoded) path, which Starlette decodes.
Each dialect module turns headers into a CheckRequest; `render` turns the Decision
into the one HTTP answer all three dialects understand, encoded once: the answer is kept
in the decision cache (server/decision_cache.py), keyed by every input the dialect read,
and a later identical request is answered from it without parsing or deciding again.
"""

from __future__ import annotations

import functools
import logging
import time

from authgate import metrics
from authgate.check.decision import Decision, bad_request, internal_error
from authgate.check.request import CheckRequest
from authgate.errors import BadRequest
from authgate.server.decision_cache import cacheable
from authgate.server.dialects import envoy_http, nginx, traefik
from authgate.server.dialects.client_cert import certificate_digest
from authgate.server.dialects.headers import COMMON, collect, first_request_id, mcp_value, request_id
from authgate.server.dialects.render import render
from authgate.server.service import AuthService

log = logging.getLogger("authgate.check")

_COMMON = frozenset(name.encode() for name in COMMON)
_NOT_FOUND = ((b"content-type", b"application/json"), (b"content-length", b"21"))


@functools.lru_cache(maxsize=4096)
def _encoded(name: str, value: str) -> tuple[bytes, bytes]:
    """One encoded header, shared by every answer that carries it (most identity headers
    but the subject repeat across users: cached answers then share them)."""
    return name.encode(), value.encode()


def http_answer(decision: Decision, dialect: str) -> tuple[int, tuple[tuple[bytes, bytes], ...], bytes]:
    """Status, every response header but x-request-id (content-length included), body."""
    rendered = render(decision)
    headers = [_encoded(name, value) for name, value in rendered.headers]
    if dialect == "envoy" and rendered.remove_headers:
        # Envoy strips these from the upstream request after setting the allowed ones,
        # so the list holds only identity headers authgate did not set.
        headers.append((b"x-envoy-auth-headers-to-remove", ",".join(rendered.remove_headers).encode()))
    headers.append((b"content-length", str(len(rendered.body)).encode()))
    return rendered.status, tuple(headers), rendered.body


class CheckApp:
    def __init__(self, service: AuthService) -> None:
        self.service = service
        name = service.settings.client_cert_header
        self._cert_name = name.lower() if name else None  # the one header trusted with the client certificate
        self._cert_key = self._cert_name.encode() if self._cert_name else None  # as collect() names it
        common = _COMMON | {self._cert_key} if self._cert_key else _COMMON
        self._wanted = {
            "nginx": common | nginx.WANTED,
            "traefik": common | traefik.WANTED,
            "envoy": common | envoy_http.WANTED,
        }

    def _certificate(self, headers: dict[bytes, str]) -> bytes | None:
        if self._cert_key is None:
            return None
        value = headers.get(self._cert_key)
        if value is None or not value.strip():  # (nginx sends the header empty without a certificate)
            return None
        return certificate_digest(self._cert_name, value)

    def _cache_key(self, dialect: str, raw_path: bytes, method: str, headers: dict[bytes, str]) -> tuple | None:
        """Every input of the check (X-Request-Id was taken out), or None when the request
        must be decided afresh: it carries a DPoP proof or a client certificate."""
        if not self.service.answers.enabled or b"dpop" in headers:
            return None
        if self._cert_key is not None and self._cert_key in headers:
            return None
        return (dialect, raw_path, method, tuple(headers.items()))

    def _common(self, headers: dict[bytes, str]) -> dict:
        return {
            "authorization": headers.get(b"authorization"),
            "dpop": headers.get(b"dpop"),
            "mcp_method": mcp_value(headers.get(b"mcp-method"), "Mcp-Method"),
            "mcp_name": mcp_value(headers.get(b"mcp-name"), "Mcp-Name"),
            "origin": headers.get(b"origin"),
            "access_control_request_method": headers.get(b"access-control-request-method"),
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
            await _send(send, 404, _NOT_FOUND, b'{"error":"not_found"}')
            return
        service = self.service
        rid = ""
        key = None
        try:
            headers = collect(scope["headers"], self._wanted[dialect])
            rid = request_id(headers.pop(b"x-request-id", None))
            key = self._cache_key(dialect, raw_path, scope["method"], headers)
            if key is not None:
                started = time.perf_counter()
                hit = service.answers.get(key, service.snapshot.generation, time.time())
                if hit is not None:
                    await _send(send, hit.status, ((b"x-request-id", rid.encode()), *hit.headers), hit.body)
                    service.record_cached(hit, rid, dialect, time.perf_counter() - started)
                    return
            request = self._parse(dialect, headers, {**self._common(headers), "request_id": rid}, raw_path, scope)
        except BadRequest as error:
            decision = bad_request(str(error))
            rid = rid or first_request_id(scope["headers"])
            service.record(CheckRequest("", "", "", request_id=rid), decision, dialect, 0.0)
        except Exception:  # never a 500, never a trace to the client
            metrics.ERRORS.labels(where="parse").inc()
            log.exception("check request parsing failed")
            decision = internal_error()
        else:
            generation = service.snapshot.generation  # the one decided under, even if a push lands meanwhile
            decision, log_fields = await service.check_and_record(request, dialect)
            if key is not None and cacheable(decision):
                status, response_headers, body = http_answer(decision, dialect)
                await _send(send, status, ((b"x-request-id", rid.encode()), *response_headers), body)
                service.remember(
                    key, request, decision, dialect, log_fields, generation, (status, response_headers, body)
                )
                return
        status, response_headers, body = http_answer(decision, dialect)
        await _send(send, status, ((b"x-request-id", (rid or "-").encode()), *response_headers), body)

    @staticmethod
    def _parse(dialect: str, headers: dict[bytes, str], common: dict, raw_path: bytes, scope) -> CheckRequest:
        if dialect == "nginx":
            return nginx.parse(headers, common)
        if dialect == "traefik":
            return traefik.parse(headers, common)
        return envoy_http.parse(headers, common, raw_path, scope["method"])


async def _send(send, status: int, headers, body: bytes) -> None:
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
