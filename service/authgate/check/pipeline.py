"""The check pipeline: route → rule → credentials → token → binding → roles → requirements → Decision.

Knows no web framework and no proxy dialect: adapters build the CheckRequest and
render the Decision. `decide` can record each step it takes in a `Trace` (what
`authgate explain` prints), so the explanation is the pipeline's own account of the
decision and can never drift from it; without a trace nothing is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from authgate.check import decision as decisions
from authgate.check.credentials import Credentials, credentials
from authgate.check.decision import Decision
from authgate.check.identity_headers import identity_headers
from authgate.check.request import CheckRequest
from authgate.check.roles import roles_for
from authgate.check.sender import check_binding
from authgate.check.tokens.dpop import ProofVerifier
from authgate.check.tokens.validator import TokenValidator, VerifiedToken
from authgate.errors import ExchangeFailed, KeysUnavailable, TokenError
from authgate.outbound.exchange import TokenExchanger
from authgate.policy.snapshot import CompiledPolicy, CompiledRule, Snapshot


@dataclass(frozen=True)
class Step:
    name: str  # route, preflight, rule, credentials, token, binding, roles, requirements, dry_run, exchange
    outcome: str  # one line a person reads


@dataclass
class Trace:
    steps: list[Step] = field(default_factory=list)

    def add(self, name: str, outcome: str) -> None:
        self.steps.append(Step(name, outcome))


def _is_allowed_preflight(policy: CompiledPolicy, request: CheckRequest) -> bool:
    return (
        request.method == "OPTIONS"
        and request.origin is not None
        and request.access_control_request_method is not None
        and bool(policy.cors_origins)
        and (request.origin in policy.cors_origins or "*" in policy.cors_origins)
    )


def _rule_needs(policy: CompiledPolicy, rule: CompiledRule | None) -> str:
    if rule is None:
        return "no rule matches" if policy.rules else "the policy has no rules: any valid token passes"
    needs = ["anonymous"] if rule.anonymous else []
    if rule.require_scopes:
        needs.append(f"all scopes {list(rule.require_scopes)}")
    if rule.require_roles:
        needs.append(f"any role of {sorted(rule.require_roles)}")
    return f"spec.rules[{rule.index}] (prefix {rule.path_prefix}) needs {', '.join(needs) or 'a valid token'}"


async def evaluate(
    policy: CompiledPolicy,
    request: CheckRequest,
    validator: TokenValidator,
    trace: Trace | None = None,
    proofs: ProofVerifier | None = None,
) -> Decision:
    """The decision of one policy, as if it were enforced. Without `proofs`, DPoP-bound
    tokens are refused (nothing that cannot check a proof accepts one)."""
    if _is_allowed_preflight(policy, request):
        if trace is not None:
            trace.add("preflight", f"a CORS preflight from an allowed origin ({request.origin})")
        return Decision(True, 200, "cors_preflight", remove_headers=policy.identity_headers.all, policy=policy)
    rule = policy.match_rule(request.path, request.method, request.mcp_method, request.mcp_name)
    if trace is not None:
        trace.add("rule", _rule_needs(policy, rule))
    if rule is not None and rule.anonymous:
        return Decision(True, 200, "anonymous", remove_headers=policy.identity_headers.all, policy=policy, rule=rule)

    nonce = _fresh_nonce(policy, proofs)
    try:
        sent = credentials(request.authorization)
    except TokenError as error:
        if trace is not None:
            trace.add("credentials", error.reason)
        return decisions.unauthorized(policy, rule, error.reason, sent=True, nonce=nonce)
    if trace is not None:
        trace.add("credentials", f"a {sent.scheme} token" if sent else "no access token")
    if sent is None:
        return decisions.unauthorized(policy, rule, None, sent=False, nonce=nonce)
    try:
        verified = await validator.validate(sent.token, policy)
    except TokenError as error:
        if trace is not None:
            trace.add("token", f"refused: {error.reason}")
        return decisions.unauthorized(policy, rule, error.reason, sent=True, scheme=sent.scheme, nonce=nonce)
    except KeysUnavailable as error:
        if trace is not None:
            trace.add("token", f"the issuer's keys are unavailable: {error.reason}")
        return decisions.unavailable(policy, "keys_unavailable", "the token issuer's signing keys are unavailable")
    if trace is not None:
        trace.add("token", _describe(verified))
    try:
        check_binding(policy, request, sent, verified, proofs)
    except TokenError as error:  # ProofError included: its `error` is the DPoP code
        if trace is not None:
            trace.add("binding", f"refused: {error.reason}")
        return decisions.unauthorized(
            policy, rule, error.reason, sent=True, scheme=sent.scheme, error=error.error, nonce=nonce
        )
    if trace is not None:
        trace.add("binding", _describe_binding(verified))
    return _requirements(policy, rule, verified, sent, trace)


def _fresh_nonce(policy: CompiledPolicy, proofs: ProofVerifier | None) -> str | None:
    """For every 401 of a policy with DPoP nonces (RFC 9449 §8): the client can retry at once."""
    if proofs is None or policy.dpop.nonce_lifetime_seconds is None or not policy.dpop.accepted:
        return None
    return proofs.fresh_nonce(policy.uid)


def _describe_binding(verified: VerifiedToken) -> str:
    held = []
    if verified.jkt is not None:
        held.append(f"DPoP proof checked (key {verified.jkt})")
    if verified.x5t is not None:
        held.append("client certificate matches cnf.x5t#S256")
    return "; ".join(held) or "a bearer token (not sender-constrained)"


def _describe(verified: VerifiedToken) -> str:
    scopes = " ".join(sorted(verified.scopes)) or "(none)"
    return f"valid: iss={verified.issuer.issuer} sub={verified.subject} client={verified.client_id} scopes {scopes}"


def _requirements(
    policy: CompiledPolicy, rule: CompiledRule | None, verified: VerifiedToken, sent: Credentials, trace: Trace | None
) -> Decision:
    roles = roles_for(policy, verified.scopes, verified.claims)
    if trace is not None:
        trace.add("roles", f"{sorted(roles) or '(none)'}")
    if rule is None and policy.rules:
        return decisions.access_denied(policy, None, verified, "no_rule", "no rule of the policy allows this request")
    if rule is not None:
        missing = [scope for scope in rule.require_scopes if scope not in verified.scopes]
        if missing:
            if trace is not None:
                trace.add("requirements", f"missing scopes {missing}")
            return decisions.insufficient_scope(policy, rule, verified, sent.scheme)
        if rule.require_roles and rule.require_roles.isdisjoint(roles):
            if trace is not None:
                trace.add("requirements", f"none of the roles {sorted(rule.require_roles)}")
            return decisions.access_denied(policy, rule, verified, "missing_role", "a required role is missing")
    if trace is not None:
        trace.add("requirements", "met")
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
    sent = credentials(request.authorization)
    assert sent is not None and policy.token_exchange is not None
    try:
        exchanged = await exchanger.exchange(policy.token_exchange, sent.token)
    except ExchangeFailed as failure:
        if failure.status == 401:
            return decisions.unauthorized(policy, decision.rule, failure.reason, sent=True)
        return decisions.unavailable(policy, "exchange_failed", failure.reason)
    headers = (*decision.upstream_headers, ("Authorization", f"Bearer {exchanged.access_token}"))
    return replace(decision, upstream_headers=headers)


def _route(snapshot: Snapshot, request: CheckRequest, trace: Trace | None) -> CompiledPolicy | None:
    if request.policy_ref is not None:  # the gateway's pick among the host's policies, never another host's
        policy = snapshot.named_on_host(request.host, request.policy_ref)
    else:
        policy = snapshot.route(request.host, request.path)
    if trace is not None:
        if policy is None:
            trace.add("route", "no policy covers this host and path")
        else:
            mode = "DryRun" if policy.dry_run else "Enforce"
            trace.add("route", f"policy {policy.ref} (resource {policy.resource}, mode {mode})")
    return policy


async def decide(
    snapshot: Snapshot,
    request: CheckRequest,
    validator: TokenValidator,
    exchanger: TokenExchanger | None = None,
    trace: Trace | None = None,
    proofs: ProofVerifier | None = None,
) -> Decision:
    policy = _route(snapshot, request, trace)
    if policy is None:
        return decisions.no_policy()
    decision = await evaluate(policy, request, validator, trace, proofs)
    if policy.dry_run and not decision.allowed:
        if trace is not None:
            trace.add("dry_run", f"Enforce would deny ({decision.reason}); DryRun allows")
        decision = _dry_run(decision)
    if decision.allowed and decision.token is not None and policy.token_exchange is not None and exchanger:
        decision = await _with_exchanged_token(decision, policy, request, exchanger)
        if trace is not None:
            trace.add("exchange", "the token was exchanged" if decision.allowed else f"failed: {decision.description}")
    return decision
