"""Reading a facade request's parameters: bounded bodies, no parameter twice, empty ones
omitted (OAuth 2.1 §3.1)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from authgate.errors import OAuthError

MAX_FORM_BYTES = 16 * 1024
MAX_JSON_BYTES = 16 * 1024


def parse_pairs(text: str) -> tuple[dict[str, str], set[str]]:
    """Query or form parameters without the empty ones; none may appear twice (OAuth 2.1
    §3.1): the names that did are returned as `duplicated`."""
    params: dict[str, str] = {}
    duplicated: set[str] = set()
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=100)
    except ValueError:
        raise OAuthError(400, "invalid_request", "too many parameters") from None
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            duplicated.add(name)
        seen.add(name)
        if value and name not in params:  # OAuth 2.1 §3.1: an empty parameter is an omitted one
            params[name] = value
    return params, duplicated


def query(request: Request) -> tuple[dict[str, str], set[str]]:
    return parse_pairs(request.scope.get("query_string", b"").decode("latin-1"))


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise OAuthError(413, "invalid_request", f"the body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise OAuthError(413, "invalid_request", f"the body exceeds {limit} bytes")
    return bytes(body)


async def form(request: Request) -> dict[str, str]:
    """A client's form (token, introspection, revocation): ASCII, URL-encoded, nothing twice."""
    if media_type(request) != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "send the parameters as application/x-www-form-urlencoded")
    body = await read_body(request, MAX_FORM_BYTES)
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise OAuthError(400, "invalid_request", "the form body is not URL-encoded ASCII") from None
    params, duplicated = parse_pairs(text)
    if duplicated:
        raise OAuthError(400, "invalid_request", "a parameter was sent twice")
    return params


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def token_type_hint(params: dict[str, str]) -> str | None:
    hint = params.get("token_type_hint")
    return hint if hint in ("access_token", "refresh_token") else None
