"""Checks of what a policy asks of a token and what a token grants: `spec.issuers`,
`spec.scopeRoles`, `spec.claimRoles`."""

from __future__ import annotations

from authgate.policy.model import PolicySpec
from authgate.policy.validation import Findings, valid_scope


def check_issuers(spec: PolicySpec, findings: Findings) -> set[str]:
    """The issuers the policy trusts (the facade's upstream must be one of them)."""
    seen_issuers: set[str] = set()
    for index, entry in enumerate(spec.issuers):
        where = f"spec.issuers[{index}]"
        findings.url(entry.issuer, f"{where}.issuer")
        if entry.issuer in seen_issuers:
            findings.emit(f"{where}.issuer", "issuer listed twice")
        seen_issuers.add(entry.issuer)
        findings.url(entry.jwks_uri, f"{where}.jwksUri")
        if entry.require_typ is not None and entry.require_typ.lower() not in ("at+jwt", "application/at+jwt"):
            findings.emit(f"{where}.requireTyp", "only at+jwt (RFC 9068) is supported")
        if entry.introspection is not None:
            findings.url(entry.introspection.endpoint, f"{where}.introspection.endpoint")
        findings.secret_references(f"{where}.")
    if spec.dpop.nonce is not None and all(entry.sender_constraint.dpop == "Disabled" for entry in spec.issuers):
        findings.emit("spec.dpop.nonce", "needs an issuer whose senderConstraint.dpop is not Disabled")
    return seen_issuers


def check_role_mappings(spec: PolicySpec, findings: Findings) -> None:
    scopes_seen: set[str] = set()
    for index, mapping in enumerate(spec.scope_roles):
        if not valid_scope(mapping.scope):
            findings.emit(f"spec.scopeRoles[{index}].scope", "not a valid scope token (RFC 6749 §3.3)")
        if mapping.scope in scopes_seen:
            findings.emit(f"spec.scopeRoles[{index}].scope", f"scope {mapping.scope!r} is mapped twice")
        scopes_seen.add(mapping.scope)
    for index, mapping in enumerate(spec.claim_roles):
        if any(not part for part in mapping.claim.split(".")):
            findings.emit(f"spec.claimRoles[{index}].claim", "empty segment in claim path")
