"""Checks of the identity providers a policy talks to on the caller's behalf: the OAuth
facade's upstream (`spec.facade`) and RFC 8693 token exchange (`spec.tokenExchange`)."""

from __future__ import annotations

from authgate.errors import TargetError
from authgate.policy.defaults import effective_hosts, facade_issuer
from authgate.policy.model import PolicySpec
from authgate.policy.validation import Findings
from authgate.urls import normalize_host, parse_config_url

_UPSTREAM_ENDPOINTS = {
    "authorization_endpoint": "authorizationEndpoint",
    "token_endpoint": "tokenEndpoint",
    "introspection_endpoint": "introspectionEndpoint",
    "revocation_endpoint": "revocationEndpoint",
}


def check_facade(spec: PolicySpec, trusted_issuers: set[str], findings: Findings) -> None:
    facade = spec.facade
    if facade is None:
        return
    findings.url(facade.issuer, "spec.facade.issuer", https_only=True)
    issuer_host = _facade_issuer_host(spec, findings)
    owned = set()
    for host in effective_hosts(spec):
        try:
            owned.add(normalize_host(host))
        except TargetError:
            pass
    if facade.issuer is not None and issuer_host is not None and issuer_host not in owned:
        findings.emit("spec.facade.issuer", "the facade issuer's host must be one of this policy's hosts")
    upstream = facade.upstream
    findings.url(upstream.issuer, "spec.facade.upstream.issuer")
    for name, alias in _UPSTREAM_ENDPOINTS.items():
        findings.url(getattr(upstream, name), f"spec.facade.upstream.{alias}")
    if upstream.issuer not in trusted_issuers:
        findings.emit("spec.facade.upstream.issuer", "the facade's upstream issuer must be one of spec.issuers")
    findings.secret_references("spec.facade.")


def _facade_issuer_host(spec: PolicySpec, findings: Findings) -> str | None:
    issuer = facade_issuer(spec)
    assert issuer is not None
    try:
        parts = parse_config_url(issuer)
    except TargetError:
        return None  # reported by the URL check of spec.facade.issuer
    if parts.query is not None or parts.fragment is not None:
        findings.emit("spec.facade.issuer", "an issuer has no query or fragment (RFC 8414 §2)")
    return parts.host


def check_token_exchange(spec: PolicySpec, findings: Findings) -> None:
    exchange = spec.token_exchange
    if exchange is None:
        return
    findings.url(exchange.token_endpoint, "spec.tokenExchange.tokenEndpoint")
    findings.url(exchange.issuer, "spec.tokenExchange.issuer")
    if (exchange.token_endpoint is None) == (exchange.issuer is None):
        findings.emit("spec.tokenExchange", "exactly one of tokenEndpoint and issuer is required")
    if (exchange.client_secret_ref is None) == (exchange.client_certificate_secret_ref is None):
        findings.emit("spec.tokenExchange", "exactly one of clientSecretRef and clientCertificateSecretRef is required")
    findings.secret_references("spec.tokenExchange.")
    findings.url(exchange.resource, "spec.tokenExchange.resource")
