"""nginx `auth_request` and ingress-nginx `auth-url`: the original request is in
`X-Original-URL` (absolute; never a fallback to Host) and `X-Original-Method`."""

from __future__ import annotations

from authgate.check.request import CheckRequest
from authgate.errors import BadRequest, TargetError
from authgate.server.dialects.headers import method
from authgate.urls import split_absolute_url

WANTED = frozenset({b"x-original-url", b"x-original-method"})


def parse(headers: dict[bytes, str], common: dict) -> CheckRequest:
    url = headers.get(b"x-original-url")
    if url is None:
        raise BadRequest("X-Original-URL header missing")
    try:
        scheme, host, path = split_absolute_url(url)
    except TargetError as error:
        raise BadRequest(f"X-Original-URL: {error}") from None
    return CheckRequest(
        host=host,
        path=path,
        method=method(headers.get(b"x-original-method"), "X-Original-Method"),
        scheme=scheme,
        **common,
    )
