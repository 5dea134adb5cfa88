"""Semantic validation of one OAuthPolicy: pure functions, shared by `authgate validate`,
file mode, the admin API and the operator.

One check per spec section (`validate_routing`, `validate_tokens`, `validate_headers`,
`validate_upstreams`); conflicts between policies are in `ownership.py`.
"""

from __future__ import annotations

from authgate.errors import PolicyIssue
from authgate.policy.loader import PolicySource, Secrets
from authgate.policy.validate_headers import check_cors, check_identity_headers
from authgate.policy.validate_routing import check_hosts, check_path_prefixes, check_rules
from authgate.policy.validate_tokens import check_issuers, check_role_mappings
from authgate.policy.validate_upstreams import check_facade, check_token_exchange
from authgate.policy.validation import Findings, ValidationSettings

_STRICT = ValidationSettings()


def validate_policy(
    source: PolicySource, secrets: Secrets, settings: ValidationSettings = _STRICT
) -> list[PolicyIssue]:
    """Every semantic problem of one policy; an empty list means it compiles."""
    spec = source.policy.spec
    findings = Findings(source, secrets, settings)
    findings.url(spec.resource, "spec.resource")
    if findings.issues:
        return findings.issues  # every default (hosts, prefixes, facade issuer) comes from it
    check_hosts(spec, findings)
    prefixes = check_path_prefixes(spec, findings)
    trusted_issuers = check_issuers(spec, findings)
    check_role_mappings(spec, findings)
    check_rules(spec, prefixes, findings)
    check_identity_headers(spec, findings)
    check_cors(spec, findings)
    check_facade(spec, trusted_issuers, findings)
    check_token_exchange(spec, findings)
    findings.secret_references()  # a reference in a section without its own check
    return findings.issues
