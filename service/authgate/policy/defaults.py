"""The values a policy gets when it leaves a field out (DESIGN.md): hosts and path prefixes
from the resource, the facade's issuer from the first host."""

from __future__ import annotations

from authgate.policy.model import PolicySpec
from authgate.urls import normalize_host, normalize_path, parse_config_url


def default_host(resource: str) -> str:
    return parse_config_url(resource).host


def default_prefix(resource: str) -> str:
    return normalize_path(parse_config_url(resource).path or "/")


def effective_hosts(spec: PolicySpec) -> list[str]:
    return [normalize_host(h) for h in spec.hosts] if spec.hosts else [default_host(spec.resource)]


def effective_prefixes(spec: PolicySpec) -> list[str]:
    return [normalize_path(p) for p in spec.path_prefixes] if spec.path_prefixes else [default_prefix(spec.resource)]


def facade_issuer(spec: PolicySpec) -> str | None:
    """The facade's issuer identifier: as configured (without a trailing slash), else https://<first host>."""
    if spec.facade is None:
        return None
    return (spec.facade.issuer or f"https://{effective_hosts(spec)[0]}").rstrip("/")
