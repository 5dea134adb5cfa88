"""Checks of the headers a policy writes and answers: `spec.identityHeaders`, `spec.cors`."""

from __future__ import annotations

from authgate.policy.model import PolicySpec
from authgate.policy.validation import TOKEN_RE, Findings, check_url
from authgate.urls import parse_config_url

# Header names an identity header may never take: they would let authgate rewrite framing,
# routing or credentials of the upstream request.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "www-authenticate",
        "location",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-original-url",
        "x-original-method",
        "x-envoy-auth-headers-to-remove",
    }
)


def check_identity_headers(spec: PolicySpec, findings: Findings) -> None:
    headers = spec.identity_headers
    names = [
        ("spec.identityHeaders.subject", headers.subject),
        ("spec.identityHeaders.roles", headers.roles),
        ("spec.identityHeaders.scopes", headers.scopes),
        ("spec.identityHeaders.issuer", headers.issuer),
        ("spec.identityHeaders.clientId", headers.client_id),
    ] + [(f"spec.identityHeaders.claims.{claim}", header) for claim, header in headers.claims.items()]
    seen_headers: set[str] = set()
    for field, header in names:
        lowered = header.lower()
        if not TOKEN_RE.match(header):
            findings.emit(field, "not a valid HTTP header name")
        elif lowered in RESERVED_HEADERS or lowered.startswith(":"):
            findings.emit(field, f"{header} cannot be used as an identity header")
        elif lowered in seen_headers:
            findings.emit(field, f"header {header} is used twice")
        seen_headers.add(lowered)


def check_cors(spec: PolicySpec, findings: Findings) -> None:
    if spec.cors is None:
        return
    for index, origin in enumerate(spec.cors.allowed_origins):
        if origin != "*" and check_url(origin, "", findings.settings) is not None:
            findings.emit(
                f"spec.cors.allowedOrigins[{index}]", "must be an origin such as https://app.example.com or *"
            )
        elif origin != "*" and parse_config_url(origin).path not in ("", "/"):
            findings.emit(f"spec.cors.allowedOrigins[{index}]", "an origin has no path")
