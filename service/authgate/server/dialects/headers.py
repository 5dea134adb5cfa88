"""Reading the request headers an adapter needs, refusing ambiguous ones.

One rule for every dialect (`collect`), whatever form the headers arrive in: the ASGI
list of the check port (bytes), Envoy's gRPC `headers` map (repeats already joined with
",") or its `header_map` list (`encode_raw_headers`, one entry per value, raw bytes):

- a header authgate reads must come once: a repeat is refused (400), so authgate and the
  app behind it can never read different copies;
- one whose value can never hold a comma (a token, a method, an origin) must not hold
  one, which is how a repeat that a proxy joined into "a,b" shows; nor may it hold
  anything but ASCII (so a value means the same in every form: bytes read as latin-1
  over HTTP and `raw_value`, UTF-8 text in the gRPC `headers` map);
- only what authgate reads is capped per header; the headers of one check together are
  capped at MAX_HEADERS_TOTAL (the gRPC port also caps the whole message, envoy_grpc).
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Iterable
from typing import TypeVar

from authgate.errors import BadRequest

MAX_HEADER_VALUE = 16 * 1024  # one header authgate reads
MAX_HEADERS_TOTAL = 64 * 1024  # the values of every header of one check, read or not (Envoy's limit: 60 KiB)

# What every dialect reads besides its own way of naming the original request.
COMMON = (
    "authorization",
    "dpop",
    "mcp-method",
    "mcp-name",
    "origin",
    "access-control-request-method",
    "x-request-id",
)

# Values that are one token, method, origin or host: a "," in one is a repeat a proxy joined
# (RFC 9110 §5.3), and anything but ASCII is not such a value. (X-Original-URL and
# X-Forwarded-Uri may hold commas; X-Forwarded-Proto is left as proxies chain it.)
_TOKEN_VALUED_NAMES = (
    "authorization",
    "dpop",
    "mcp-method",
    "mcp-name",
    "origin",
    "access-control-request-method",
    "x-request-id",
    "host",
    "x-original-method",
    "x-forwarded-host",
    "x-forwarded-method",
)
TOKEN_VALUED: frozenset[str | bytes] = frozenset(_TOKEN_VALUED_NAMES) | {name.encode() for name in _TOKEN_VALUED_NAMES}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

Name = TypeVar("Name", str, bytes)


def _text(name: str | bytes) -> str:
    return name.decode("latin-1") if isinstance(name, bytes) else name


def collect(headers: Iterable[tuple[Name, bytes | str]], wanted: frozenset[Name]) -> dict[Name, str]:
    """The wanted headers (lowercase names), values decoded as latin-1 when they are bytes.

    Names are compared lowercased: the ASGI server and Envoy send them so, and a name in
    another case (a hand-built CheckRequest) is the same header, so a repeat.
    This runs on every check: the headers nobody reads cost a set lookup and a length.
    """
    found: dict[Name, str] = {}
    total = 0
    for name, raw in headers:
        total += len(raw)
        if name not in wanted:
            if name.islower():
                continue
            name = name.lower()
            if name not in wanted:
                continue
        if name in found:
            raise BadRequest(f"{_text(name)} header sent more than once")
        if len(raw) > MAX_HEADER_VALUE:
            raise BadRequest(f"{_text(name)} header too large")
        value = raw.decode("latin-1") if raw.__class__ is bytes else raw
        # (str.isascii is O(1); control characters are left to what reads the value)
        if name in TOKEN_VALUED and ("," in value or not value.isascii()):
            raise BadRequest(f"{_text(name)} header must be one ASCII value without commas")
        found[name] = value
    if total > MAX_HEADERS_TOTAL:
        raise BadRequest("request headers too large")
    return found


def mcp_value(value: str | None, header: str) -> str | None:
    """An MCP routing header (Mcp-Method, Mcp-Name), when sent, names something."""
    if value is not None and not value.strip():
        raise BadRequest(f"{header} must be a single value")
    return value


def first_request_id(headers: Iterable[tuple[Name, bytes | str]]) -> str:
    """For a request refused before its headers were read: the first sane X-Request-Id, so
    the refusal's log line still ties to the proxy's (else a new id)."""
    for name, raw in headers:
        if len(raw) <= 128 and _text(name).lower() == "x-request-id":
            return request_id(raw.decode("latin-1") if isinstance(raw, bytes) else raw)
    return request_id(None)


_ID_PREFIX = secrets.token_hex(4)  # this process's, so ids of two replicas never collide
_ID_COUNTER = itertools.count(1)


def request_id(candidate: str | None) -> str:
    """The proxy's request id when it is sane (it ties our log line to the proxy's), else a
    new one: unique, not secret (a counter after a per-process random prefix)."""
    if candidate is not None and _REQUEST_ID.fullmatch(candidate):
        return candidate
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")


def method(value: str | None, header: str) -> str:
    if value is None:
        raise BadRequest(f"{header} header missing")
    if not _METHOD.fullmatch(value):
        raise BadRequest(f"{header} is not an HTTP method")
    return value.upper()
