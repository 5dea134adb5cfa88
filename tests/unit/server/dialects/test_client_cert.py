"""The client certificate from the proxy's header: Envoy XFCC, nginx escaped PEM, Traefik."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import quote

import pytest

from authgate.errors import BadRequest
from authgate.server.dialects.client_cert import certificate_digest

DER = b"0\x82\x01\x0a not a real certificate, only its bytes are hashed"
BODY = base64.b64encode(DER).decode()
PEM = f"-----BEGIN CERTIFICATE-----\n{BODY[:40]}\n{BODY[40:]}\n-----END CERTIFICATE-----\n"
DIGEST = hashlib.sha256(DER).digest()


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-ssl-client-cert", quote(PEM)),  # nginx $ssl_client_escaped_cert
        ("x-forwarded-tls-client-cert", quote(BODY)),  # Traefik passTLSClientCert (pem: true)
        ("x-forwarded-tls-client-cert", f"{quote(BODY)},{quote(base64.b64encode(b'issuer').decode())}"),
        ("x-forwarded-client-cert", f'By=spiffe://proxy;Hash={DIGEST.hex()};Subject="CN=a, O=b; c"'),
        ("x-forwarded-client-cert", f"Cert={quote(PEM)}"),
        ("x-forwarded-client-cert", f'Hash={DIGEST.hex().upper()};Cert="{quote(PEM)}";DNS=client.example'),
    ],
)
def test_every_format_gives_the_der_digest(header, value):
    assert certificate_digest(header, value) == DIGEST


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("x-forwarded-client-cert", f"Hash={DIGEST.hex()},Hash={DIGEST.hex()}", "exactly one element"),
        ("x-forwarded-client-cert", "By=spiffe://proxy", "neither Cert nor Hash"),
        ("x-forwarded-client-cert", f"Hash={DIGEST.hex()};Hash={'0' * 64}", "given twice"),
        ("x-forwarded-client-cert", "Hash=abc", "not a hex SHA-256"),
        ("x-forwarded-client-cert", 'Subject="unterminated', "unterminated quote"),
        ("x-forwarded-client-cert", "garbage", "malformed element"),
        ("x-forwarded-client-cert", f"Hash={'0' * 64};Cert={quote(PEM)}", "disagree"),
        ("x-ssl-client-cert", quote("-----BEGIN CERTIFICATE-----\nAAAA"), "end line"),
        ("x-ssl-client-cert", "not base64!", "not base64"),
    ],
)
def test_malformed_certificate_headers_are_bad_requests(header, value, reason):
    with pytest.raises(BadRequest, match=reason):
        certificate_digest(header, value)
