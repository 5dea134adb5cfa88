"""The one shape every ext-authz dialect is translated into."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CheckRequest:
    host: str  # normalized (target.normalize_host)
    path: str  # normalized (target.normalize_path)
    method: str  # uppercase
    authorization: str | None = None
    mcp_method: str | None = None
    mcp_name: str | None = None
    origin: str | None = None
    access_control_request_method: str | None = None
    request_id: str = ""
    policy_ref: str | None = None  # "namespace/name", when the gateway names the policy
