"""Envoy ext_authz over gRPC, spoken by a real gRPC client to a real `authgate serve`.

(tests/integration/test_envoy_grpc.py runs the same port behind real Envoy.)
"""

from __future__ import annotations

import grpc
import pytest
import yaml
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tests.conftest import LOCAL_EGRESS, assert_clean_log
from tests.support.authgate import Authgate

RESOURCE = "https://api.example.com/mcp"


def policy(issuer_url: str, name: str, resource: str) -> dict:
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {
            "resource": resource,
            "issuers": [{"issuer": issuer_url}],
            "rules": [
                {"pathPrefix": "/mcp/health", "anonymous": True},
                {"pathPrefix": "/mcp", "requireScopes": ["mcp:read"]},
            ],
        },
    }


@pytest.fixture(scope="module")
def service(tmp_path_factory, issuer):
    text = yaml.safe_dump_all(
        [policy(issuer.issuer, "api", RESOURCE), policy(issuer.issuer, "internal", "https://internal.example.com/mcp")]
    )
    instance = Authgate(tmp_path_factory.mktemp("grpc"), text, list(LOCAL_EGRESS)).start()
    yield instance
    instance.stop()
    assert_clean_log(instance.log(), "the service log")


@pytest.fixture(scope="module")
def stub(service):
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        yield external_auth_pb2_grpc.AuthorizationStub(channel)


def check(stub, path="/mcp/x", host="api.example.com", method="GET", token=None, policy_ref=None, **headers):
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.host, http.path, http.scheme = method, host, path, "https"
    if token is not None:
        http.headers["authorization"] = f"Bearer {token}"
    for name, value in headers.items():
        http.headers[name.replace("_", "-").lower()] = value
    if policy_ref is not None:
        request.attributes.context_extensions["policy"] = policy_ref
    return stub.Check(request, timeout=10)


def header_dict(options) -> dict[str, str]:
    return {option.header.key.lower(): option.header.value for option in options}


def test_allow_sets_identity_headers_by_overwriting(stub, mint):
    response = check(stub, token=mint(audience=RESOURCE, scope="mcp:read"))
    assert response.status.code == 0
    assert response.HasField("ok_response")
    headers = header_dict(response.ok_response.headers)
    assert headers["x-auth-subject"] == "alice" and headers["x-auth-scopes"] == "mcp:read"
    assert all(o.append_action == o.OVERWRITE_IF_EXISTS_OR_ADD for o in response.ok_response.headers)
    # roles are empty for this policy: the proxy must strip a client-sent copy instead
    assert "X-Auth-Roles" in response.ok_response.headers_to_remove


def test_no_token_is_denied_with_the_challenge(stub):
    response = check(stub)
    assert response.status.code == 16  # UNAUTHENTICATED
    denied = response.denied_response
    assert denied.status.code == 401
    challenge = header_dict(denied.headers)["www-authenticate"]
    assert 'resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp"' in challenge
    assert '"error":"unauthorized"' in denied.body


def test_missing_scope_is_403_insufficient_scope(stub, mint):
    response = check(stub, token=mint(audience=RESOURCE, scope="other"))
    assert response.status.code == 7  # PERMISSION_DENIED
    assert response.denied_response.status.code == 403
    assert 'error="insufficient_scope"' in header_dict(response.denied_response.headers)["www-authenticate"]


def test_anonymous_route_removes_every_identity_header(stub):
    response = check(stub, path="/mcp/health", x_auth_subject="forged")
    assert response.status.code == 0
    assert set(response.ok_response.headers_to_remove) >= {"X-Auth-Subject", "X-Auth-Roles", "X-Auth-Scopes"}


def test_context_extensions_name_the_policy_over_the_host(stub, mint):
    token = mint(audience="https://internal.example.com/mcp", scope="mcp:read")
    assert check(stub, token=token).status.code == 16  # by host: policy api, wrong audience
    assert check(stub, token=token, policy_ref="apps/internal").status.code == 0
    unknown = check(stub, token=token, policy_ref="apps/nope")
    assert unknown.denied_response.status.code == 403 and "no_policy" in unknown.denied_response.body


@pytest.mark.parametrize(
    ("path", "host", "policy_ref"),
    [("/mcp%2Fx", "api.example.com", None), ("/mcp", "bad host", None), ("/mcp", "api.example.com", "../etc")],
)
def test_malformed_checks_are_400_never_an_allow(stub, path, host, policy_ref):
    response = check(stub, path=path, host=host, policy_ref=policy_ref)
    assert response.status.code != 0
    assert response.denied_response.status.code == 400


def test_path_tricks_do_not_reach_the_anonymous_rule(stub):
    assert check(stub, path="/mcp/health/../admin").denied_response.status.code == 401
    assert check(stub, path="/mcp/health/%2e%2e/admin").denied_response.status.code == 401


def test_grpc_health_reports_serving(service):
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "envoy.service.auth.v3.Authorization"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_decisions_are_logged_with_the_grpc_dialect(service, stub):
    check(stub, path="/mcp/health", x_request_id="grpc-log-1")
    line = next(d for d in service.decisions() if d["request_id"] == "grpc-log-1")
    assert line["dialect"] == "envoy-grpc" and line["reason"] == "anonymous"
