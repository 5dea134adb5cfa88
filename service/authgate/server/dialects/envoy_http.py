"""Envoy `ext_authz` over HTTP (`path_prefix: /ext-authz/envoy`): the check request is
the original one: its method, its Host, and the original path after the prefix. The
scheme is known only when Envoy forwards X-Forwarded-Proto (else a DPoP proof's `htu`
is held to the policy resource's scheme)."""

from __future__ import annotations

from authgate.check.request import CheckRequest
from authgate.errors import BadRequest, TargetError
from authgate.server.dialects.headers import method
from authgate.urls import normalize_host, normalize_path

PREFIX = b"/ext-authz/envoy"
WANTED = frozenset({b"host", b"x-forwarded-proto"})


def parse(headers: dict[bytes, str], common: dict, raw_path: bytes, request_method: str) -> CheckRequest:
    original = raw_path[len(PREFIX) :] or b"/"
    host = headers.get(b"host")
    if host is None:
        raise BadRequest("Host header missing")
    proto = headers.get(b"x-forwarded-proto", "").lower()
    scheme = proto if proto in ("http", "https") else None
    try:
        path = normalize_path(original.decode("latin-1"))
        normalized_host = normalize_host(host, scheme)
    except TargetError as error:
        raise BadRequest(str(error)) from None
    return CheckRequest(
        host=normalized_host, path=path, method=method(request_method, "method"), scheme=scheme, **common
    )
