"""How the snapshot size changes the cost: compile time for 1, 100, 10,000 policies (best
of 3, one run for 10,000) from nothing and again with one policy changed since the last
compile (what a replica does on each push: policy/reuse.py), and the per-check cost
(in-process `AuthService.check`, cached ES256 token, decision log off) with 1 / 100 /
10,000 policies and with 1 / 10 / 100 issuers in the checked policy.
Compile: `compile_document` on a snapshot document (what every replica runs on an admin
PUT of the operator's snapshot, and on bootstrap). Policies are the bench
policy (bench/issuer.py) on distinct hosts `p<i>.bench.example.com`; the checked request
goes to the last one. Extra issuers are other issuer URLs with their own `jwksUri`; the
token's issuer comes last in the list, so a lookup that scans the list pays for all of them.
Only the real issuer's keys are loaded (nothing else is fetched: the service is not started).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from authgate.check.request import CheckRequest
from authgate.check.tokens.jwks import JwksSettings
from authgate.outbound.egress import EgressPolicy
from authgate.policy import reuse
from authgate.policy.compile import compile_document
from authgate.policy.snapshot import FORMAT_VERSION
from authgate.server.service import AuthService, ServiceSettings
from bench.issuer import SCOPE, StaticIssuer
from bench.micro import best_async, run_on_uvloop

POLICY_COUNTS = (1, 100, 10_000)
ISSUER_COUNTS = (1, 10, 100)


@dataclass
class ScaleResult:
    compile_s: dict[int, float]  # policies -> seconds, from nothing (nothing to reuse)
    recompile_s: dict[int, float]  # policies -> seconds, one policy changed since the last compile
    check_by_policies_us: dict[int, float]
    check_by_issuers_us: dict[int, float]


def _policy(index: int, issuer: str, extra_issuers: int = 0) -> dict:
    host = f"p{index}.bench.example.com"
    issuers = [
        {"issuer": f"https://idp{j}.example.com", "jwksUri": f"https://idp{j}.example.com/jwks"}
        for j in range(extra_issuers)
    ]
    issuers.append({"issuer": issuer, "requireTyp": "at+jwt", "requiredClaims": ["sub"]})
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": f"bench-{index}", "namespace": "default", "uid": f"uid-{index}"},
        "spec": {
            "resource": f"https://{host}/mcp",
            "issuers": issuers,
            "scopeRoles": [{"scope": "mcp:read", "role": "reader"}],
            "claimRoles": [{"claim": "realm_access.roles", "value": "admin", "role": "admin"}],
            "rules": [
                {"pathPrefix": "/mcp/health", "anonymous": True},
                {"pathPrefix": "/mcp", "requireScopes": ["mcp:read"], "requireRoles": ["reader", "admin"]},
            ],
        },
    }


def snapshot_document(policies: int, issuer: str, extra_issuers: int = 0) -> dict:
    return {
        "formatVersion": FORMAT_VERSION,
        "generation": 1,
        "policies": [_policy(i, issuer, extra_issuers) for i in range(policies)],
        "secrets": [],
    }


def _settings() -> ServiceSettings:
    return ServiceSettings(
        egress=EgressPolicy(allow=("127.0.0.1",), insecure_http=True),
        jwks=JwksSettings(refresh_interval=3600.0),
    )


async def _check_cost(issuer: StaticIssuer, policies: int, extra_issuers: int) -> float:
    settings = _settings()
    service = AuthService(settings)
    service.load(compile_document(snapshot_document(policies, issuer.issuer, extra_issuers), settings.validation))
    last = policies - 1
    policy = next(p for p in service.snapshot.policies if p.resource == f"https://p{last}.bench.example.com/mcp")
    entry = next(e for e in policy.issuers if e.issuer == issuer.issuer)
    keys = service.keys.get(entry.key_source)
    await keys.refresh()
    if keys.index is None:
        raise RuntimeError(f"keys not loaded: {keys.last_error}")
    token = issuer.token("ES256", policy.resource, SCOPE)
    request = CheckRequest(
        host=f"p{last}.bench.example.com",
        path="/mcp/tools",
        method="POST",
        authorization=f"Bearer {token}",
        request_id="bench",
    )
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.WARNING)
    try:
        decision = await service.check(request, "envoy")
        if not decision.allowed:
            raise RuntimeError(f"scale: {policies} policies, {extra_issuers + 1} issuers: not allowed: {decision}")
        us, _ = await best_async(lambda: service.check(request, "envoy"))
    finally:
        root.setLevel(saved)
        await service.stop()
    return us


def measure(issuer: StaticIssuer, policy_counts=POLICY_COUNTS, issuer_counts=ISSUER_COUNTS) -> ScaleResult:
    settings = _settings()
    compile_s, recompile_s = {}, {}
    for count in policy_counts:
        document = snapshot_document(count, issuer.issuer)
        changed = snapshot_document(count, issuer.issuer)
        changed["generation"] = 2
        changed["policies"][count // 2]["spec"]["rules"][0]["pathPrefix"] = "/mcp/healthz"
        cold = warm = float("inf")
        for _ in range(3 if count <= 1000 else 1):  # best of 3; one run for the big one
            reuse.MEMO.clear()
            start = time.perf_counter()
            compile_document(document, settings.validation)
            cold = min(cold, time.perf_counter() - start)
            start = time.perf_counter()
            compile_document(changed, settings.validation)
            warm = min(warm, time.perf_counter() - start)
        compile_s[count], recompile_s[count] = cold, warm
    reuse.MEMO.clear()
    by_policies = {count: run_on_uvloop(_check_cost(issuer, count, 0)) for count in policy_counts}
    by_issuers = {count: run_on_uvloop(_check_cost(issuer, 1, count - 1)) for count in issuer_counts}
    return ScaleResult(compile_s, recompile_s, by_policies, by_issuers)
