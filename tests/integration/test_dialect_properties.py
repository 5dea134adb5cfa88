"""Property tests of the check, through every dialect of one real `authgate serve`.

Hypothesis draws requests (host, raw path, method, Authorization, MCP and CORS headers)
from fragments that include the hostile ones; each goes to nginx, Traefik and Envoy over
HTTP, and Envoy over gRPC. The stated invariants:

1. never a 5xx (no issuer is down here, so not even 503);
2. never an allow without a valid token for the host's policy, except on its anonymous
   route or an allowed CORS preflight;
3. a denial's reason is one of the documented ones;
4. all four dialects decide identically (status and reason).
"""

from __future__ import annotations

import itertools

import grpc
import httpx
import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.infra.jwks_server import JwksServer
from tests.infra.keys import SigningKey, claims
from tests.support.authgate import LOCAL_EGRESS, Authgate
from tests.support.leaks import MINTED_TOKENS, assert_clean_log

HOSTS = ["api.example.com", "open.example.com", "unknown.example.com", "API.example.com:443", "api.example.com."]
PATHS = [
    "/mcp",
    "/mcp/",
    "/mcp/tools",
    "/mcp/health",
    "/mcp/health/../admin",
    "/mcp/%2e%2e/x",
    "/mcp//x",
    "/mcpx",
    "/",
    "/mcp/admin;x",
    "/mcp/%2F",
    "/mcp/%25",
    "/mcp?q=1",
    "/mcp/%41",
    "/mcp/%C3%A9",
]
METHODS = ["GET", "POST", "OPTIONS", "DELETE", "get"]
TOKENS = ["valid", "read_only", "other_audience", "expired", "garbage", "none", "basic", "empty_bearer"]
ALLOWING = {"allowed", "anonymous", "cors_preflight"}
DOCUMENTED = ALLOWING | {
    "no_token",
    "invalid_token",
    "insufficient_scope",
    "missing_role",
    "no_rule",
    "no_policy",
    "bad_request",
}
RULES = [
    {"pathPrefix": "/mcp/health", "anonymous": True},
    {"pathPrefix": "/mcp", "mcpMethods": ["tools/call"], "mcpNames": ["admin_*"], "requireRoles": ["admin"]},
    {"pathPrefix": "/mcp", "methods": ["GET", "POST"], "requireScopes": ["mcp:read"]},
]


def _policy(name: str, resource: str, issuer: str, rules: list) -> dict:
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": name, "namespace": "props"},
        "spec": {
            "resource": resource,
            "issuers": [{"issuer": issuer}],
            "scopeRoles": [{"scope": "mcp:read", "role": "reader"}, {"scope": "mcp:admin", "role": "admin"}],
            "rules": rules,
            "cors": {"allowedOrigins": ["https://inspector.example.com"]},
        },
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    key = SigningKey.generate("ES256")
    with JwksServer([key]) as issuer:
        text = yaml.safe_dump_all(
            [
                _policy("api", "https://api.example.com/mcp", issuer.issuer, RULES),
                _policy("open", "https://open.example.com/", issuer.issuer, [{"pathPrefix": "/", "anonymous": True}]),
            ]
        )
        service = Authgate(tmp_path_factory.mktemp("props"), text, list(LOCAL_EGRESS)).start()
        tokens = {
            "valid": key.sign(claims(issuer.issuer, "https://api.example.com/mcp", scope="mcp:read mcp:admin")),
            "read_only": key.sign(claims(issuer.issuer, "https://api.example.com/mcp", scope="mcp:read")),
            "other_audience": key.sign(claims(issuer.issuer, "https://elsewhere.example.com/mcp", scope="mcp:read")),
            "expired": key.sign(claims(issuer.issuer, "https://api.example.com/mcp", scope="mcp:read", ttl=-600)),
        }
        MINTED_TOKENS.update(tokens.values())
        with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
            yield service, tokens, external_auth_pb2_grpc.AuthorizationStub(channel)
        service.stop()
        assert_clean_log(service.log(), "the property-test service log")


_ids = itertools.count(1)


def _authorization(kind: str, tokens: dict[str, str]) -> str | None:
    return {"garbage": "Bearer not.a.jwt", "none": None, "basic": "Basic YTpi", "empty_bearer": "Bearer"}.get(
        kind, f"Bearer {tokens.get(kind, '')}"
    )


def _ask(world, dialect: str, host: str, path: str, method: str, headers: list[tuple[str, str]]) -> tuple[int, str]:
    service, _, stub = world
    rid = f"prop-{next(_ids)}"
    headers = [*headers, ("X-Request-Id", rid)]
    if dialect == "grpc":
        request = external_auth_pb2.CheckRequest()
        http = request.attributes.request.http
        http.method, http.host, http.path, http.scheme = method, host, path, "https"
        for name, value in headers:
            http.header_map.headers.append(base_pb2.HeaderValue(key=name.lower(), raw_value=value.encode()))
        status = stub.Check(request, timeout=10).denied_response.status.code or 200
    else:
        base = f"http://127.0.0.1:{service.check_port}"
        if dialect == "nginx":
            url, sent = (
                f"{base}/ext-authz/nginx",
                [("X-Original-URL", f"https://{host}{path}"), ("X-Original-Method", method)],
            )
        elif dialect == "traefik":
            url = f"{base}/ext-authz/traefik"
            sent = [
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", host),
                ("X-Forwarded-Uri", path),
                ("X-Forwarded-Method", method),
            ]
        else:
            url, sent = f"{base}/ext-authz/envoy{path}", [("Host", host)]
        with httpx.Client(timeout=10) as client:
            request = client.build_request(method if dialect == "envoy" else "GET", url, headers=[*sent, *headers])
            if dialect == "envoy":
                request.extensions["target"] = f"/ext-authz/envoy{path}".encode()
            status = client.send(request).status_code
    found = [d for d in service.decisions() if d.get("request_id") == rid]
    return status, (found[0]["reason"] if len(found) == 1 else "missing")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    host=st.sampled_from(HOSTS),
    path=st.sampled_from(PATHS),
    method=st.sampled_from(METHODS),
    token=st.sampled_from(TOKENS),
    mcp=st.sampled_from([None, ("tools/call", "admin_reset"), ("tools/call", "search"), ("tools/list", None)]),
    preflight=st.booleans(),
)
def test_the_invariants_hold_in_every_dialect(world, host, path, method, token, mcp, preflight):
    _, tokens, _ = world
    headers: list[tuple[str, str]] = []
    if (authorization := _authorization(token, tokens)) is not None:
        headers.append(("Authorization", authorization))
    if mcp is not None:
        headers.append(("Mcp-Method", mcp[0]))
        if mcp[1] is not None:
            headers.append(("Mcp-Name", mcp[1]))
    if preflight:
        headers += [("Origin", "https://inspector.example.com"), ("Access-Control-Request-Method", "POST")]
    decided = {d: _ask(world, d, host, path, method, headers) for d in ("nginx", "traefik", "envoy", "grpc")}

    statuses = {status for status, _ in decided.values()}
    assert max(statuses) < 500, decided  # 1
    for status, reason in decided.values():
        assert reason in DOCUMENTED, decided  # 3
        if status == 200:  # 2
            assert reason in ALLOWING, decided
            if reason == "allowed":
                assert token in ("valid", "read_only"), decided
    assert len(set(decided.values())) == 1, decided  # 4
