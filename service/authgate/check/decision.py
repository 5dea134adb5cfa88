"""The outcome of a check, independent of any proxy dialect, and how each one is built.

Every deny carries the RFC 6750 error code for the body and, where a client can do
something about it, the `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9728 §5.1): the
`Bearer` and `DPoP` (RFC 9449 §7.1) challenges the policy accepts, in one field (nginx's
auth_request passes only the first `WWW-Authenticate` field), the error on the scheme the
client used. A policy with DPoP nonces adds a fresh `DPoP-Nonce` to every 401 (§8).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from authgate.check.tokens.validator import VerifiedToken
from authgate.policy.snapshot import CompiledPolicy, CompiledRule

_UNSAFE_QUOTED = re.compile(r"[^\x20\x21\x23-\x5B\x5D-\x7E]")  # RFC 6750 §3 error_description chars


@dataclass(frozen=True)
class Decision:
    allowed: bool
    status: int
    reason: str  # for logs and metrics: allowed, anonymous, cors_preflight, no_token, ...
    error: str | None = None  # RFC error code for the body
    description: str | None = None
    www_authenticate: str | None = None
    upstream_headers: tuple[tuple[str, str], ...] = ()  # identity headers to set upstream
    remove_headers: tuple[str, ...] = ()  # identity headers the proxy must strip upstream
    policy: CompiledPolicy | None = None
    rule: CompiledRule | None = None
    token: VerifiedToken | None = None
    dry_run_reason: str | None = None  # DryRun: the denial that was not enforced
    response_headers: tuple[tuple[str, str], ...] = ()  # deny: more headers for the client (DPoP-Nonce)

    def body(self) -> bytes:
        if self.allowed or self.error is None:
            return b""
        content = {"error": self.error}
        if self.description:
            content["error_description"] = self.description
        return json.dumps(content, separators=(",", ":")).encode()


def _quoted(value: str) -> str:
    return _UNSAFE_QUOTED.sub("", value)


def challenge(
    policy: CompiledPolicy,
    rule: CompiledRule | None,
    error: str | None = None,
    description: str | None = None,
    scheme: str = "Bearer",
) -> str:
    """`Bearer` unless every issuer requires DPoP, then `DPoP` if any accepts it; `error`
    goes on the challenge of `scheme` (the one the client used) when it is offered."""
    tail = []
    if rule is not None and rule.require_scopes:
        tail.append(f'scope="{" ".join(rule.require_scopes)}"')
    tail.append(f'resource_metadata="{policy.resource_metadata_url}"')
    offered = [name for name, on in (("Bearer", not policy.dpop.required), ("DPoP", policy.dpop.accepted)) if on]
    error_on = scheme if scheme in offered else offered[0]
    challenges = []
    for name in offered:
        params = [f'algs="{" ".join(sorted(policy.dpop.algorithms))}"'] if name == "DPoP" else []
        if error and name == error_on:
            params.append(f'error="{error}"')
            if description:
                params.append(f'error_description="{_quoted(description)}"')
        challenges.append(f"{name} {', '.join(params + tail)}")
    return ", ".join(challenges)


def bad_request(description: str) -> Decision:
    return Decision(False, 400, "bad_request", "invalid_request", description)


def no_policy() -> Decision:
    return Decision(False, 403, "no_policy", "no_policy", "no policy covers this host and path")


def unauthorized(
    policy: CompiledPolicy,
    rule: CompiledRule | None,
    description: str | None,
    sent: bool,
    scheme: str = "Bearer",
    error: str = "invalid_token",
    nonce: str | None = None,
) -> Decision:
    """401: no token (no error code, RFC 6750 §3.1), an invalid one, or (`error`
    invalid_dpop_proof / use_dpop_nonce, RFC 9449 §7.1, §8) an unusable DPoP proof.
    `nonce`: a fresh DPoP-Nonce for the client (policies with nonces)."""
    extra = (("dpop-nonce", nonce),) if nonce is not None else ()
    if not sent:
        return Decision(
            False,
            401,
            "no_token",
            "unauthorized",
            "access token required",
            challenge(policy, rule),
            policy=policy,
            rule=rule,
            response_headers=extra,
        )
    return Decision(
        False,
        401,
        error,
        error,
        description,
        challenge(policy, rule, error, description, scheme),
        policy=policy,
        rule=rule,
        response_headers=extra,
    )


def insufficient_scope(
    policy: CompiledPolicy, rule: CompiledRule, token: VerifiedToken, scheme: str = "Bearer"
) -> Decision:
    return Decision(
        False,
        403,
        "insufficient_scope",
        "insufficient_scope",
        "the token lacks a required scope",
        challenge(policy, rule, "insufficient_scope", scheme=scheme),
        policy=policy,
        rule=rule,
        token=token,
    )


def access_denied(
    policy: CompiledPolicy, rule: CompiledRule | None, token: VerifiedToken | None, reason: str, description: str
) -> Decision:
    """403 without a challenge: no scope the client could ask for would help."""
    return Decision(False, 403, reason, "access_denied", description, policy=policy, rule=rule, token=token)


def unavailable(policy: CompiledPolicy | None, reason: str, description: str) -> Decision:
    return Decision(False, 503, reason, "temporarily_unavailable", description, policy=policy)


def internal_error() -> Decision:
    return Decision(False, 503, "internal_error", "temporarily_unavailable", "authorization check failed")
