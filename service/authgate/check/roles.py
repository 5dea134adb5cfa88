"""Roles of a verified token under a policy: from its scopes and from its claims."""

from __future__ import annotations

from typing import Any

from authgate.policy.snapshot import CompiledPolicy


def claim_at(claims: dict[str, Any], path: tuple[str, ...]) -> Any:
    """Value at a dot path (`realm_access.roles`), or None."""
    value: Any = claims
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def roles_for(policy: CompiledPolicy, scopes: frozenset[str], claims: dict[str, Any]) -> frozenset[str]:
    roles: set[str] = set()
    for scope in scopes:
        roles.update(policy.scope_roles.get(scope, ()))
    for mapping in policy.claim_roles:
        value = claim_at(claims, mapping.path)
        if value == mapping.value or (isinstance(value, list) and mapping.value in value):
            roles.add(mapping.role)
    return frozenset(roles)
