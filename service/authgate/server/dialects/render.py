"""A Decision as the HTTP answer every dialect understands: status, headers, body.

The HTTP dialects send it as is; the gRPC dialect wraps the same parts in
OkHttpResponse / DeniedHttpResponse. One mapping, one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate.check.decision import Decision


@dataclass(frozen=True)
class Rendered:
    status: int
    headers: tuple[tuple[str, str], ...]  # on allow: upstream headers to set; on deny: client response headers
    remove_headers: tuple[str, ...]  # on allow: identity headers the proxy must strip from the upstream request
    body: bytes


_DENY_HEADERS = (("content-type", "application/json"), ("cache-control", "no-store"))


def render(decision: Decision) -> Rendered:
    if decision.allowed:
        return Rendered(200, decision.upstream_headers, decision.remove_headers, b"")
    headers = _DENY_HEADERS
    if decision.www_authenticate:
        headers = (*headers, ("www-authenticate", decision.www_authenticate))
    if decision.response_headers:
        headers = (*headers, *decision.response_headers)
    return Rendered(decision.status, headers, (), decision.body())
