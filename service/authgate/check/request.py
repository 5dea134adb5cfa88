"""The one shape every ext-authz dialect is translated into."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CheckRequest:
    host: str  # normalized (urls.normalize_host)
    path: str  # normalized (urls.normalize_path)
    method: str  # uppercase
    authorization: str | None = None
    mcp_method: str | None = None
    mcp_name: str | None = None
    origin: str | None = None
    access_control_request_method: str | None = None
    request_id: str = ""
    policy_ref: str | None = None  # "namespace/name", when the gateway names the policy
    scheme: str | None = None  # http or https; None when the dialect does not say (Envoy HTTP)
    dpop: str | None = None  # the one DPoP proof header (RFC 9449 §4.1)
    client_cert_sha256: bytes | None = None  # of the DER certificate the proxy's TLS verified (RFC 8705)
