"""`authgate explain`: the pipeline's steps for one request, in words.

It runs the same code as a live check (routing, rule matching, real key fetching and
token validation) and prints the steps `decide` itself recorded (pipeline.Trace), so
the explanation cannot drift from the decision. It never prints the token. A `DPoP`
header makes the token a DPoP one, and its proof is checked like a live one (each
explain is its own replica: a nonce policy answers use_dpop_nonce with a fresh nonce).
"""

from __future__ import annotations

import time

from authgate.check.decision import Decision
from authgate.check.pipeline import Trace, decide
from authgate.check.request import CheckRequest
from authgate.check.tokens.dpop import ProofVerifier
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


def format_trace(trace: Trace, decision: Decision) -> list[str]:
    """The steps `decide` recorded, numbered, then the verdict as the proxy would see it."""
    lines = [f"{number}. {step.name}: {step.outcome}" for number, step in enumerate(trace.steps, start=2)]
    verdict = "ALLOW" if decision.allowed else "DENY"
    detail = f" ({decision.description})" if decision.description and not decision.allowed else ""
    lines.append(f"=> {verdict} {decision.status} reason={decision.reason}{detail}")
    if decision.dry_run_reason:
        lines.append(f"   DryRun: Enforce would deny ({decision.dry_run_reason})")
    if decision.www_authenticate:
        lines.append(f"   WWW-Authenticate: {decision.www_authenticate}")
    lines.extend(f"   {name}: {value}" for name, value in decision.upstream_headers)
    return lines


async def explain(
    snapshot: Snapshot,
    validator: TokenValidator,
    url: str,
    method: str,
    token: str | None,
    headers: list[str],
    proofs: ProofVerifier | None = None,
    client_cert_sha256: bytes | None = None,
) -> tuple[list[str], bool]:
    try:
        scheme, host, path = split_absolute_url(url)
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
        authorization=f"{'DPoP' if 'dpop' in extra else 'Bearer'} {token}" if token else None,
        dpop=extra.get("dpop"),
        scheme=scheme,
        client_cert_sha256=client_cert_sha256,
        mcp_method=extra.get("mcp-method"),
        mcp_name=extra.get("mcp-name"),
        origin=extra.get("origin"),
        access_control_request_method=extra.get("access-control-request-method"),
        request_id="explain",
    )
    lines = [f"1. request: {request.method} host={host} path={path}"]
    if token:
        lines.extend(_describe_claims(token))  # unverified, for reading; the trace says what was checked
    trace = Trace()
    decision = await decide(snapshot, request, validator, trace=trace, proofs=proofs)
    return lines + format_trace(trace, decision), decision.allowed
