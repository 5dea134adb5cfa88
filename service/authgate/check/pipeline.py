"""The check pipeline: route → rule → credentials → token → roles → requirements → Decision.

Knows no web framework and no proxy dialect: adapters build the CheckRequest and
render the Decision.
"""

from __future__ import annotations

from dataclasses import replace

from authgate.check import decision as decisions
from authgate.check.credentials import bearer_token
from authgate.check.decision import Decision
from authgate.check.identity_headers import identity_headers
from authgate.check.request import CheckRequest
from authgate.check.roles import roles_for
from authgate.check.tokens.validator import TokenValidator
from authgate.errors import ExchangeFailed, KeysUnavailable, TokenError
from authgate.outbound.exchange import TokenExchanger
from authgate.policy.snapshot import CompiledPolicy, Snapshot


def _is_allowed_preflight(policy: CompiledPolicy, request: CheckRequest) -> bool:
    return (
        request.method == "OPTIONS"
        and request.origin is not None
        and request.access_control_request_method is not None
        and bool(policy.cors_origins)
        and (request.origin in policy.cors_origins or "*" in policy.cors_origins)
    )


async def evaluate(policy: CompiledPolicy, request: CheckRequest, validator: TokenValidator) -> Decision:
    """The decision of one policy, as if it were enforced."""
    if _is_allowed_preflight(policy, request):
        return Decision(True, 200, "cors_preflight", remove_headers=policy.identity_headers.all, policy=policy)
    rule = policy.match_rule(request.path, request.method, request.mcp_method, request.mcp_name)
    if rule is not None and rule.anonymous:
        return Decision(True, 200, "anonymous", remove_headers=policy.identity_headers.all, policy=policy, rule=rule)

    try:
        token = bearer_token(request.authorization)
    except TokenError as error:
        return decisions.unauthorized(policy, rule, error.reason, sent=True)
    if token is None:
        return decisions.unauthorized(policy, rule, None, sent=False)
    try:
        verified = await validator.validate(token, policy)
    except TokenError as error:
        return decisions.unauthorized(policy, rule, error.reason, sent=True)
    except KeysUnavailable:
        return decisions.unavailable(policy, "keys_unavailable", "the token issuer's signing keys are unavailable")

    roles = roles_for(policy, verified.scopes, verified.claims)
    if rule is None and policy.rules:
        return decisions.access_denied(policy, None, verified, "no_rule", "no rule of the policy allows this request")
    if rule is not None:
        if any(scope not in verified.scopes for scope in rule.require_scopes):
            return decisions.insufficient_scope(policy, rule, verified)
        if rule.require_roles and rule.require_roles.isdisjoint(roles):
            return decisions.access_denied(policy, rule, verified, "missing_role", "a required role is missing")
    headers, remove = identity_headers(policy, verified, roles)
    return Decision(
        True, 200, "allowed", upstream_headers=headers, remove_headers=remove, policy=policy, rule=rule, token=verified
    )


def _dry_run(decision: Decision) -> Decision:
    """DryRun allows what Enforce would deny, and says so in the log."""
    policy = decision.policy
    assert policy is not None
    token = decision.token
    roles = roles_for(policy, token.scopes, token.claims) if token is not None else frozenset()
    headers, remove = identity_headers(policy, token, roles)
    return replace(
        decision,
        allowed=True,
        status=200,
        reason="dry_run",
        error=None,
        www_authenticate=None,
        upstream_headers=headers,
        remove_headers=remove,
        dry_run_reason=decision.reason,
    )


async def _with_exchanged_token(
    decision: Decision, policy: CompiledPolicy, request: CheckRequest, exchanger: TokenExchanger
) -> Decision:
    """RFC 8693: the upstream gets a token issued for it, never the caller's (fail closed)."""
    subject_token = bearer_token(request.authorization)
    assert subject_token is not None and policy.token_exchange is not None
    try:
        exchanged = await exchanger.exchange(policy.token_exchange, subject_token)
    except ExchangeFailed as failure:
        if failure.status == 401:
            return decisions.unauthorized(policy, decision.rule, failure.reason, sent=True)
        return decisions.unavailable(policy, "exchange_failed", failure.reason)
    headers = (*decision.upstream_headers, ("Authorization", f"Bearer {exchanged.access_token}"))
    return replace(decision, upstream_headers=headers)


async def decide(
    snapshot: Snapshot, request: CheckRequest, validator: TokenValidator, exchanger: TokenExchanger | None = None
) -> Decision:
    if request.policy_ref is not None:  # the gateway's pick among the host's policies, never another host's
        policy = snapshot.named_on_host(request.host, request.policy_ref)
    else:
        policy = snapshot.route(request.host, request.path)
    if policy is None:
        return decisions.no_policy()
    decision = await evaluate(policy, request, validator)
    if policy.dry_run and not decision.allowed:
        decision = _dry_run(decision)
    if decision.allowed and decision.token is not None and policy.token_exchange is not None and exchanger:
        decision = await _with_exchanged_token(decision, policy, request, exchanger)
    return decision
