"""`authgate explain` prints the steps `decide` recorded: on every decision path the two
agree, and the trace names the step that decided."""

from __future__ import annotations

import pytest

from authgate.check.explain import explain, format_trace
from authgate.check.pipeline import Trace, decide
from authgate.check.request import CheckRequest
from authgate.check.tokens.validator import VerifiedToken
from authgate.errors import KeysUnavailable, TokenError
from authgate.policy import ValidationSettings, compile_document

RESOURCE = "https://api.example.com/mcp"
ISSUER = "https://idp.example.com"


def _snapshot(**spec_extra):
    spec = {
        "resource": RESOURCE,
        "issuers": [{"issuer": ISSUER}],
        "scopeRoles": [{"scope": "mcp:read", "role": "reader"}],
        "rules": [
            {"pathPrefix": "/mcp/health", "anonymous": True},
            {"pathPrefix": "/mcp/admin", "requireRoles": ["admin"]},
            {"pathPrefix": "/mcp", "methods": ["GET", "POST"], "requireScopes": ["mcp:read"]},
        ],
        "cors": {"allowedOrigins": ["https://inspector.example.com"]},
        **spec_extra,
    }
    policy = {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": "api", "namespace": "default"},
        "spec": spec,
    }
    document = {"formatVersion": 1, "generation": 1, "policies": [policy], "secrets": []}
    return compile_document(document, ValidationSettings())


class StubValidator:
    """Tokens by name: "reader" (scope mcp:read), "bare" (no scope), "bad", "down"."""

    async def validate(self, token: str, policy) -> VerifiedToken:
        if token == "bad":
            raise TokenError("signature verification failed")
        if token == "down":
            raise KeysUnavailable(ISSUER, "connection refused")
        scopes = frozenset({"mcp:read"}) if token == "reader" else frozenset()
        return VerifiedToken(policy.issuers[0], {"sub": "alice"}, scopes, "alice", "app", 2**31)


PATHS = [  # (url, method, token, headers, status, reason, the step that decided)
    (f"{RESOURCE}/tools", "GET", "reader", [], 200, "allowed", "requirements: met"),
    ("https://other.example.com/x", "GET", "reader", [], 403, "no_policy", "route: no policy"),
    (f"{RESOURCE}/health", "GET", None, [], 200, "anonymous", "anonymous"),
    (
        f"{RESOURCE}/tools",
        "OPTIONS",
        None,
        ["Origin: https://inspector.example.com", "Access-Control-Request-Method: POST"],
        200,
        "cors_preflight",
        "preflight: a CORS preflight",
    ),
    (f"{RESOURCE}/tools", "GET", None, [], 401, "no_token", "credentials: no access token"),
    (f"{RESOURCE}/tools", "GET", "bad", [], 401, "invalid_token", "token: refused: signature"),
    (f"{RESOURCE}/tools", "GET", "down", [], 503, "keys_unavailable", "keys are unavailable"),
    (f"{RESOURCE}/tools", "GET", "bare", [], 403, "insufficient_scope", "missing scopes ['mcp:read']"),
    (f"{RESOURCE}/admin/x", "GET", "reader", [], 403, "missing_role", "none of the roles ['admin']"),
    (f"{RESOURCE}/tools", "DELETE", "reader", [], 403, "no_rule", "rule: no rule matches"),
]


def _request(url: str, method: str, token: str | None, headers: list[str]) -> CheckRequest:
    extra = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in headers)}
    host, path = url.split("://", 1)[1].split("/", 1)
    return CheckRequest(
        host=host,
        path="/" + path,
        method=method,
        authorization=f"Bearer {token}" if token else None,
        origin=extra.get("origin"),
        access_control_request_method=extra.get("access-control-request-method"),
    )


@pytest.mark.parametrize(("url", "method", "token", "headers", "status", "reason", "step"), PATHS)
async def test_explain_prints_what_decide_decided(url, method, token, headers, status, reason, step):
    snapshot, validator = _snapshot(), StubValidator()
    plain = await decide(snapshot, _request(url, method, token, headers), validator)
    lines, allowed = await explain(snapshot, validator, url, method, token, headers)
    text = "\n".join(lines)

    assert (plain.status, plain.reason, plain.allowed) == (status, reason, allowed)
    assert f"=> {'ALLOW' if allowed else 'DENY'} {status} reason={reason}" in text
    assert step in text


async def test_dry_run_is_traced_and_agrees():
    snapshot, validator = _snapshot(mode="DryRun"), StubValidator()
    trace = Trace()
    traced = await decide(snapshot, _request(f"{RESOURCE}/tools", "GET", "bad", []), validator, trace=trace)
    plain = await decide(snapshot, _request(f"{RESOURCE}/tools", "GET", "bad", []), validator)
    assert traced == plain and traced.reason == "dry_run"
    assert "Enforce would deny (invalid_token)" in "\n".join(format_trace(trace, traced))
