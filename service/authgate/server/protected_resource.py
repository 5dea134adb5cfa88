"""RFC 9728 OAuth 2.0 Protected Resource Metadata documents."""

from __future__ import annotations

from urllib.parse import urlsplit

from authgate.policy.snapshot import CompiledPolicy, Snapshot

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def resource_path(policy: CompiledPolicy) -> str:
    path = urlsplit(policy.resource).path
    return "" if path in ("", "/") else path


def find_policy(snapshot: Snapshot, host: str, suffix: str) -> CompiledPolicy | None:
    """The policy whose metadata lives at WELL_KNOWN + suffix on `host`.

    `suffix` is the resource's path (RFC 9728 §3.1); the root form (empty suffix) also
    answers for a host that exactly one policy owns.
    """
    on_host = [p for p in snapshot.policies if host in p.hosts]
    for policy in on_host:
        if resource_path(policy) == suffix:
            return policy
    if suffix == "" and len(on_host) == 1:
        return on_host[0]
    return None


def protected_resource_metadata(policy: CompiledPolicy) -> dict:
    document: dict = {
        "resource": policy.resource,
        "authorization_servers": list(policy.authorization_servers),
        "bearer_methods_supported": ["header"],
    }
    if policy.scopes_supported:
        document["scopes_supported"] = list(policy.scopes_supported)
    if policy.dpop.accepted:  # RFC 9728 §2 (and RFC 9449 §5.1's name for the algorithms)
        document["dpop_signing_alg_values_supported"] = sorted(policy.dpop.algorithms)
        document["dpop_bound_access_tokens_required"] = policy.dpop.required
    if policy.mtls_required:  # RFC 8705 §3.4, when the policy requires certificate-bound tokens
        document["tls_client_certificate_bound_access_tokens"] = True
    return document
