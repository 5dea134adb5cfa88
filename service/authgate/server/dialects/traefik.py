"""Traefik ForwardAuth: the original request is in X-Forwarded-Proto, -Host, -Uri, -Method."""

from __future__ import annotations

from authgate.check.request import CheckRequest
from authgate.errors import BadRequest, TargetError
from authgate.server.dialects.headers import method
from authgate.urls import normalize_host, normalize_path

WANTED = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-uri", b"x-forwarded-method"})


def parse(headers: dict[bytes, str], common: dict) -> CheckRequest:
    proto = headers.get(b"x-forwarded-proto", "").lower()
    if proto not in ("http", "https"):
        raise BadRequest("X-Forwarded-Proto must be http or https")
    host, uri = headers.get(b"x-forwarded-host"), headers.get(b"x-forwarded-uri")
    if host is None or uri is None:
        raise BadRequest("X-Forwarded-Host and X-Forwarded-Uri are required")
    try:
        normalized_host, path = normalize_host(host, proto), normalize_path(uri)
    except TargetError as error:
        raise BadRequest(str(error)) from None
    return CheckRequest(
        host=normalized_host,
        path=path,
        method=method(headers.get(b"x-forwarded-method"), "X-Forwarded-Method"),
        scheme=proto,
        **common,
    )
