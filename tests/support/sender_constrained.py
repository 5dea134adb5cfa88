"""What the sender-constrained token tests (RFC 9449 DPoP, RFC 8705 certificate-bound
tokens) through the example proxies share: the policies, the certificate header each
proxy writes, the client-side forgeries of that header, and the client's view of a
proxy's TLS listener.

Each proxy hands the client certificate to authgate in its own header, and which header
authgate trusts is service configuration (`--client-cert-header`, one per process): so
one authgate runs behind each proxy, started with the header that proxy writes.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.infra.tls import IssuedCert, TestCA
from tests.infra.upstream import EchoUpstream
from tests.support.authgate import Authgate
from tests.support.dpop import PROOF_ALGORITHMS, certificate_hex_hash

HOST = "mcp.example.com"
ORIGIN = f"https://{HOST}"
RESOURCE = f"{ORIGIN}/mcp"

# The header each example proxy writes the verified client certificate into, and so the
# one its authgate is told to trust. Over gRPC authgate reads attributes.source.certificate
# (include_peer_certificate); it is started with Envoy's header name all the same, so that
# a client-sent copy of that header is what a forgery would try.
CERT_HEADERS = {
    "nginx": "X-SSL-Client-Cert",
    "envoy-http": "x-forwarded-client-cert",
    "envoy-grpc": "x-forwarded-client-cert",
    "envoy-grpc-raw-headers": "x-forwarded-client-cert",  # header_map, raw bytes (encode_raw_headers)
    "traefik": "X-Forwarded-Tls-Client-Cert",
}
PROXIES = tuple(CERT_HEADERS)


def forged_cert_header(proxy: str, certificate: Path) -> tuple[str, str]:
    """What a client would send to claim `certificate` (whose thumbprint is readable in a
    stolen token) without holding its key: the proxy's own header, in the proxy's format."""
    pem = certificate.read_text()
    name = CERT_HEADERS[proxy]
    if name == "x-forwarded-client-cert":
        cert = urllib.parse.quote(pem, safe="")
        return name, f'Hash={certificate_hex_hash(certificate)};Cert="{cert}"'
    if proxy == "nginx":
        return name, urllib.parse.quote(pem, safe="")
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return name, body


def policies(issuer: str, *, short_nonce_seconds: int) -> str:
    """The policies on mcp.example.com, one per path prefix, all trusting the IdP's tokens for
    RESOURCE (the others list it in `audiences`):

        /mcp            DPoP and mTLS Optional, proof algorithms ES256 EdDSA RS256, scope mcp:read
        /nonce          DPoP nonces (300 s)          /other-nonce   another policy's nonces
        /short-nonce    nonces living `short_nonce_seconds`
        /dpop-required  senderConstraint.dpop Required     /dpop-disabled  dpop Disabled
        /mtls-required  senderConstraint.mtls Required
    """
    algorithms = ", ".join(PROOF_ALGORITHMS)

    def policy(name: str, issuer_extra: str = "", spec_extra: str = "") -> str:
        return f"""\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  resource: {ORIGIN}/{name}
  issuers:
    - issuer: "{issuer}"
      audiences: ["{RESOURCE}"]
{issuer_extra}
  dpop:
    algorithms: [{algorithms}]
    proofLifetimeSeconds: 60
{spec_extra}
"""

    documents = [
        policy(
            "mcp",
            spec_extra='  scopeRoles: [{scope: "mcp:read", role: reader}]\n'
            '  rules: [{pathPrefix: /mcp, requireScopes: ["mcp:read"]}]',
        ),
        policy("nonce", spec_extra="    nonce: {lifetimeSeconds: 300}"),
        policy("other-nonce", spec_extra="    nonce: {lifetimeSeconds: 300}"),
        policy("short-nonce", spec_extra=f"    nonce: {{lifetimeSeconds: {short_nonce_seconds}}}"),
        policy("dpop-required", issuer_extra="      senderConstraint: {dpop: Required}"),
        policy("dpop-disabled", issuer_extra="      senderConstraint: {dpop: Disabled}"),
        policy("mtls-required", issuer_extra="      senderConstraint: {mtls: Required}"),
    ]
    return "---\n".join(documents)


@dataclass
class SecureEdge:
    """A client of one example proxy's TLS listener (SNI and Host mcp.example.com, the
    proxy's CA trusted), with or without a client certificate; the authgate behind it and
    the app. `name` is the proxy's (PROXIES)."""

    name: str
    proxy: Any
    authgate: Authgate
    app: EchoUpstream
    ca: TestCA
    _clients: dict[Path | None, httpx.Client] = field(default_factory=dict)
    seen: int = 0

    def client(self, cert: IssuedCert | None) -> httpx.Client:
        key = cert.cert if cert else None
        if key not in self._clients:
            self._clients[key] = httpx.Client(verify=self.ca.ssl_context(cert), trust_env=False, timeout=10)
        return self._clients[key]

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: list[tuple[str, str]] | None = None,
        cert: IssuedCert | None = None,
    ) -> httpx.Response:
        """`path` (with its query) on the TLS listener; remembers where the app's log stood."""
        self.seen = len(self.app.requests)
        return self.client(cert).request(
            method,
            f"{self.proxy.tls_url}{path}",
            headers=[("Host", HOST), *(headers or [])],
            extensions={"sni_hostname": HOST},
        )

    def new_app_requests(self) -> list[dict]:
        return self.app.requests[self.seen :]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def challenge_error(response: httpx.Response) -> str | None:
    """The `error` of the one WWW-Authenticate field (None without one)."""
    fields = response.headers.get_list("www-authenticate")
    assert len(fields) <= 1, f"more than one WWW-Authenticate field: {fields}"
    if not fields:
        return None
    _, found, rest = fields[0].partition('error="')
    return rest.split('"', 1)[0] if found else None


def challenges(response: httpx.Response) -> dict[str, str]:
    """The one WWW-Authenticate field, split by scheme: {"Bearer": 'scope="...", ...', "DPoP": ...}."""
    [value] = response.headers.get_list("www-authenticate")
    parts = re.split(r"(?:^|,\s*)(Bearer|DPoP)\s+", value)
    assert parts[0] == "", value
    return dict(zip(parts[1::2], parts[2::2], strict=True))
