"""The client certificate the proxy terminated TLS with (RFC 8705 §3), as a SHA-256 digest.

Read from the one header `--client-cert-header` names (never policy: whoever can get
their own copy of that header to authgate forges every binding, so it is trusted only
when the operator says the proxy overwrites it), or over gRPC from Envoy's own
`attributes.source.certificate` (`include_peer_certificate: true`). Formats:

- `x-forwarded-client-cert`: Envoy's XFCC. Exactly one element (the proxy's own, with
  `forward_client_cert_details: SANITIZE_SET`); its `Cert` (URL-encoded PEM) or `Hash`
  (hex SHA-256 of the DER). When both are there they must agree.
- any other header: a URL-escaped PEM certificate (nginx `$ssl_client_escaped_cert`), or
  the PEM body without its armor (Traefik `passTLSClientCert`, comma-separated when it
  sends the chain: the first is the client's).

Hand-written: XFCC is Envoy's own format (quoted values with `\\"` escapes, `;` and `,`
separators), and a PEM's base64 body is all the rest needs; no certificate is parsed,
only its DER bytes hashed (the proxy verified it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import unquote

from authgate.errors import BadRequest

XFCC = "x-forwarded-client-cert"
_BEGIN, _END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
_HEX = frozenset("0123456789abcdefABCDEF")


def _split(text: str, separator: str) -> list[str]:
    """Split on `separator` outside double quotes (XFCC §: values may be quoted, `\\"` escapes)."""
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise BadRequest("x-forwarded-client-cert: unterminated quote")
    parts.append("".join(current))
    return parts


def _der_digest(pem_text: str, what: str) -> bytes:
    text = pem_text.strip()
    if text.startswith(_BEGIN):
        end = text.find(_END)
        if end < 0:
            raise BadRequest(f"{what}: PEM certificate without its end line")
        text = text[len(_BEGIN) : end]
    body = "".join(text.split())
    if not body:
        raise BadRequest(f"{what}: empty certificate")
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what}: certificate is not base64") from None
    return hashlib.sha256(der).digest()


def from_pem(value: str, what: str) -> bytes:
    """URL-escaped PEM (or its bare body); the first certificate of a comma-separated chain."""
    return _der_digest(unquote(value).split(",", 1)[0], what)


def from_xfcc(value: str) -> bytes:
    elements = _split(value, ",")
    if len(elements) != 1:
        raise BadRequest("x-forwarded-client-cert must hold exactly one element")
    cert = digest = None
    seen: set[str] = set()
    for pair in _split(elements[0], ";"):
        key, sep, raw = pair.strip().partition("=")
        if not sep:
            raise BadRequest("x-forwarded-client-cert: malformed element")
        if key.lower() in ("cert", "hash"):
            if key.lower() in seen:
                raise BadRequest(f"x-forwarded-client-cert: {key} given twice")
            seen.add(key.lower())
        raw = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
        if key.lower() == "cert":
            cert = _der_digest(unquote(raw), XFCC)
        elif key.lower() == "hash":
            if len(raw) != 64 or not _HEX.issuperset(raw):
                raise BadRequest("x-forwarded-client-cert: Hash is not a hex SHA-256")
            digest = bytes.fromhex(raw)
    if cert is not None and digest is not None and not hmac.compare_digest(cert, digest):
        raise BadRequest("x-forwarded-client-cert: Cert and Hash disagree")
    found = cert or digest
    if found is None:
        raise BadRequest("x-forwarded-client-cert has neither Cert nor Hash")
    return found


def certificate_digest(header: str, value: str) -> bytes:
    """SHA-256 of the client certificate's DER from the trusted header (BadRequest if malformed)."""
    return from_xfcc(value) if header == XFCC else from_pem(value, header)
