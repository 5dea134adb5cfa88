"""Reading the request headers an adapter needs, refusing ambiguous ones."""

from __future__ import annotations

import re
import secrets

from authgate.errors import AuthgateError

MAX_HEADER_VALUE = 16 * 1024

# Sent twice, these would let a client and the proxy disagree about the request.
SINGLE_VALUED = frozenset(
    {
        b"authorization",
        b"host",
        b"x-original-url",
        b"x-original-method",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-uri",
        b"x-forwarded-method",
        b"mcp-method",
        b"mcp-name",
        b"origin",
    }
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class BadRequest(AuthgateError):
    """The check request itself is malformed; answered with 400."""


def collect(raw_headers: list[tuple[bytes, bytes]], wanted: frozenset[bytes]) -> dict[bytes, str]:
    """The wanted headers (names lowercased by the ASGI server) decoded as latin-1."""
    found: dict[bytes, str] = {}
    for name, value in raw_headers:
        if name not in wanted:
            continue
        if name in found and name in SINGLE_VALUED:
            raise BadRequest(f"{name.decode()} header sent more than once")
        if len(value) > MAX_HEADER_VALUE:
            raise BadRequest(f"{name.decode()} header too large")
        found[name] = value.decode("latin-1")
    return found


def mcp_value(value: str | None, header: str) -> str | None:
    """An MCP routing header (Mcp-Method, Mcp-Name) must be one value. Proxies join repeated
    headers with "," (Envoy does), which would let `search,admin_reset` slip past a rule."""
    if value is not None and ("," in value or not value.strip()):
        raise BadRequest(f"{header} must be a single value")
    return value


def request_id(candidate: str | None) -> str:
    """The proxy's request id when it is sane (it ties our log line to the proxy's), else a new one."""
    if candidate is not None and _REQUEST_ID.match(candidate):
        return candidate
    return secrets.token_hex(8)


_METHOD = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$")


def method(value: str | None, header: str) -> str:
    if value is None:
        raise BadRequest(f"{header} header missing")
    if not _METHOD.match(value):
        raise BadRequest(f"{header} is not an HTTP method")
    return value.upper()
