"""`authgate explain`: the pipeline's steps for one request, in words.

It runs the same code as a live check (routing, rule matching, real key fetching and
token validation) and prints what each step found. It never prints the token.
"""

from __future__ import annotations

import time

from authgate.check.credentials import bearer_token
from authgate.check.pipeline import decide
from authgate.check.request import CheckRequest
from authgate.check.roles import roles_for
from authgate.check.tokens.jws import parse_compact
from authgate.check.tokens.validator import TokenValidator, token_scopes
from authgate.errors import TargetError, TokenError
from authgate.policy.snapshot import Snapshot
from authgate.urls import split_absolute_url


def _describe_claims(token: str) -> list[str]:
    try:
        jws = parse_compact(token)
    except TokenError as error:
        return [f"  token: unreadable ({error.reason})"]
    claims = jws.payload
    exp = claims.get("exp")
    expires = f"in {int(exp - time.time())} s" if isinstance(exp, int | float) else "never (refused)"
    return [
        f"  token header: alg={jws.alg} kid={jws.kid} typ={jws.header.get('typ')}",
        f"  token claims: iss={claims.get('iss')} sub={claims.get('sub')} aud={claims.get('aud')} expires {expires}",
        f"  token scopes: {' '.join(sorted(token_scopes(claims))) or '(none)'}",
    ]


async def explain(
    snapshot: Snapshot, validator: TokenValidator, url: str, method: str, token: str | None, headers: list[str]
) -> tuple[list[str], bool]:
    lines: list[str] = []
    try:
        _, host, path = split_absolute_url(url)
    except TargetError as error:
        return [f"request: invalid URL: {error} → 400"], False
    extra = {}
    for header in headers:
        name, _, value = header.partition(":")
        extra[name.strip().lower()] = value.strip()
    request = CheckRequest(
        host=host,
        path=path,
        method=method.upper(),
        authorization=f"Bearer {token}" if token else None,
        mcp_method=extra.get("mcp-method"),
        mcp_name=extra.get("mcp-name"),
        origin=extra.get("origin"),
        access_control_request_method=extra.get("access-control-request-method"),
        request_id="explain",
    )
    lines.append(f"1. request: {request.method} host={host} path={path}")
    policy = snapshot.route(host, path)
    if policy is None:
        lines.append("2. route: no policy covers this host and path")
    else:
        lines.append(
            f"2. route: policy {policy.ref} (resource {policy.resource}, mode "
            f"{'DryRun' if policy.dry_run else 'Enforce'})"
        )
        rule = policy.match_rule(path, request.method, request.mcp_method, request.mcp_name)
        if not policy.rules:
            lines.append("3. rule: the policy has no rules: any valid token passes")
        elif rule is None:
            lines.append("3. rule: no rule matches")
        else:
            needs = []
            if rule.anonymous:
                needs.append("anonymous")
            if rule.require_scopes:
                needs.append(f"all scopes {list(rule.require_scopes)}")
            if rule.require_roles:
                needs.append(f"any role of {sorted(rule.require_roles)}")
            lines.append(
                f"3. rule: spec.rules[{rule.index}] (prefix {rule.path_prefix}) needs "
                f"{', '.join(needs) or 'a valid token'}"
            )
        try:
            present = bearer_token(request.authorization) is not None
        except TokenError:
            present = True
        lines.append(f"4. credentials: {'a bearer token' if present else 'no bearer token'}")
        if token:
            lines.extend(_describe_claims(token))
            try:
                claims = parse_compact(token).payload
                roles = roles_for(policy, token_scopes(claims), claims)
                lines.append(f"5. roles (if the token is valid): {sorted(roles) or '(none)'}")
            except TokenError:
                pass
    decision = await decide(snapshot, request, validator)
    verdict = "ALLOW" if decision.allowed else "DENY"
    lines.append(
        f"=> {verdict} {decision.status} reason={decision.reason}"
        + (f" ({decision.description})" if decision.description and not decision.allowed else "")
    )
    if decision.dry_run_reason:
        lines.append(f"   DryRun: Enforce would deny ({decision.dry_run_reason})")
    if decision.www_authenticate:
        lines.append(f"   WWW-Authenticate: {decision.www_authenticate}")
    for name, value in decision.upstream_headers:
        lines.append(f"   {name}: {value}")
    return lines, decision.allowed
