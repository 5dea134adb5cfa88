"""The auth service as users meet it: a real `authgate serve` process over real sockets."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.authgate import AUTHGATE, LOCAL_EGRESS, Authgate
from tests.support.leaks import assert_clean_log

from authgate.policy.model import ASYMMETRIC_ALGORITHMS

RESOURCE = "https://api.example.com/mcp"


def policy(issuer_url: str, **spec_extra) -> dict:
    spec = {
        "resource": RESOURCE,
        "issuers": [{"issuer": issuer_url}],
        "scopeRoles": [{"scope": "mcp:read", "role": "reader"}, {"scope": "mcp:admin", "role": "admin"}],
        "claimRoles": [{"claim": "realm_access.roles", "value": "admin", "role": "admin"}],
        "rules": [
            {"pathPrefix": "/mcp/health", "anonymous": True},
            {"pathPrefix": "/mcp", "mcpMethods": ["tools/call"], "mcpNames": ["admin_*"], "requireRoles": ["admin"]},
            {"pathPrefix": "/mcp", "requireScopes": ["mcp:read"], "requireRoles": ["reader", "admin"]},
        ],
        "cors": {"allowedOrigins": ["https://inspector.example.com"]},
        "identityHeaders": {"claims": {"email": "X-Auth-Email"}},
    }
    spec.update(spec_extra)
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": "api", "namespace": "default"},
        "spec": spec,
    }


def dry_run_policy(issuer_url: str) -> dict:
    document = policy(issuer_url, resource="https://dry.example.com/mcp", mode="DryRun")
    document["metadata"]["name"] = "dry"
    return document


@pytest.fixture(scope="module")
def service(tmp_path_factory, issuer):
    directory = tmp_path_factory.mktemp("service")
    text = yaml.safe_dump_all([policy(issuer.issuer), dry_run_policy(issuer.issuer)])
    instance = Authgate(directory, text, list(LOCAL_EGRESS)).start()
    yield instance
    instance.stop()
    assert_clean_log(instance.log(), "the service log")


def www_authenticate(response: httpx.Response) -> str:
    return response.headers.get("www-authenticate", "")


# -- decisions through the nginx dialect ------------------------------------------
def test_valid_token_is_allowed_with_identity_headers(service, mint):
    token = mint(audience=RESOURCE, scope="mcp:read", email="alice@example.com")
    response = service.nginx_check(f"{RESOURCE}/tools", "POST", token)
    assert response.status_code == 200
    assert response.headers["x-auth-subject"] == "alice"
    assert response.headers["x-auth-roles"] == "reader"
    assert response.headers["x-auth-scopes"] == "mcp:read"
    assert response.headers["x-auth-client-id"] == "test-client"
    assert response.headers["x-auth-email"] == "alice@example.com"
    assert response.headers["x-auth-issuer"].startswith("http://127.0.0.1:")


def test_no_token_gets_a_challenge_naming_the_resource_metadata(service):
    response = service.nginx_check(f"{RESOURCE}/tools", "POST")
    assert response.status_code == 401
    challenge = www_authenticate(response)
    assert challenge.startswith("Bearer ")
    assert 'resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp"' in challenge
    assert 'scope="mcp:read"' in challenge
    assert "error=" not in challenge
    assert response.json()["error"] == "unauthorized"


def test_the_challenge_never_comes_from_request_headers(service):
    response = service.nginx_check(f"{RESOURCE}/x", "GET", X_Forwarded_Host="evil.example.com", Host="evil.example.com")
    assert "evil" not in www_authenticate(response)


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 100])
def test_bad_token_gets_invalid_token(service, token):
    response = service.nginx_check(f"{RESOURCE}/x", "GET", token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in www_authenticate(response)
    assert response.json()["error"] == "invalid_token"


def test_missing_scope_is_403_insufficient_scope_naming_every_required_scope(service, mint):
    response = service.nginx_check(f"{RESOURCE}/x", "GET", mint(audience=RESOURCE, scope="other"))
    assert response.status_code == 403
    metadata = 'resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp"'
    assert www_authenticate(response) == (
        f'Bearer error="insufficient_scope", scope="mcp:read", {metadata}, '
        f'DPoP algs="{" ".join(sorted(ASYMMETRIC_ALGORITHMS))}", scope="mcp:read", {metadata}'
    )


def test_missing_role_is_access_denied_without_a_challenge(service, mint):
    token = mint(audience=RESOURCE, scope="mcp:read")
    response = service.nginx_check(f"{RESOURCE}", "POST", token, Mcp_Method="tools/call", Mcp_Name="admin_reset")
    assert response.status_code == 403
    assert "www-authenticate" not in response.headers
    assert response.json() == {"error": "access_denied", "error_description": "a required role is missing"}


def test_claim_roles_grant_the_admin_tool(service, mint):
    token = mint(audience=RESOURCE, realm_access={"roles": ["admin"]})
    response = service.nginx_check(f"{RESOURCE}", "POST", token, Mcp_Method="tools/call", Mcp_Name="admin_reset")
    assert response.status_code == 200
    assert response.headers["x-auth-roles"] == "admin"


def test_other_tools_fall_through_to_the_next_rule(service, mint):
    token = mint(audience=RESOURCE, scope="mcp:read")
    response = service.nginx_check(f"{RESOURCE}", "POST", token, Mcp_Method="tools/call", Mcp_Name="search")
    assert response.status_code == 200


def test_anonymous_route_needs_no_token_and_hands_out_no_identity(service):
    response = service.nginx_check(f"{RESOURCE}/health", "GET")
    assert response.status_code == 200
    assert not any(name.startswith("x-auth-") for name in response.headers)


def test_no_policy_is_403(service, mint):
    response = service.nginx_check("https://unknown.example.com/mcp", "GET", mint(audience=RESOURCE, scope="mcp:read"))
    assert response.status_code == 403
    assert response.json()["error"] == "no_policy"


def test_a_token_for_another_audience_is_refused(service, mint):
    response = service.nginx_check(f"{RESOURCE}/x", "GET", mint(audience="https://other.example.com", scope="mcp:read"))
    assert response.status_code == 401
    assert "audience" in response.json()["error_description"]


def test_cors_preflight_from_an_allowed_origin_passes(service):
    headers = {"Origin": "https://inspector.example.com", "Access-Control-Request-Method": "POST"}
    assert service.nginx_check(f"{RESOURCE}", "OPTIONS", **headers).status_code == 200
    headers["Origin"] = "https://evil.example.com"
    assert service.nginx_check(f"{RESOURCE}", "OPTIONS", **headers).status_code == 401


def test_dry_run_allows_but_logs_the_would_be_denial(service):
    response = service.nginx_check("https://dry.example.com/mcp/x", "GET", X_Request_Id="dry-run-check-1")
    assert response.status_code == 200
    line = next(d for d in service.decisions() if d["request_id"] == "dry-run-check-1")
    assert line["decision"] == "allow" and line["reason"] == "dry_run" and line["dry_run_reason"] == "no_token"


# -- request targets ----------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        f"{RESOURCE}/health/../admin",
        f"{RESOURCE}/health/%2e%2e/admin",
        f"{RESOURCE}/health/%2E%2E/admin",
        "https://api.example.com//mcp/health/../x",
    ],
)
def test_path_tricks_do_not_reach_the_anonymous_rule(service, url):
    assert service.nginx_check(url, "GET").status_code == 401


@pytest.mark.parametrize("url", [f"{RESOURCE}%2Fhealth", f"{RESOURCE}/a%5Cb", f"{RESOURCE}/%00", "/mcp", "mcp", ""])
def test_malformed_targets_are_400(service, url):
    response = service.nginx_check(url, "GET")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_missing_original_url_is_400_never_a_fallback_to_host(service):
    response = httpx.get(service.check_url("nginx"), headers={"X-Original-Method": "GET", "Host": "api.example.com"})
    assert response.status_code == 400
    assert "X-Original-URL" in response.json()["error_description"]


def test_mcpx_is_not_covered_by_mcp(service):
    assert service.nginx_check("https://api.example.com/mcpx", "GET").json()["error"] == "no_policy"


@pytest.mark.parametrize(
    "url",
    [
        "https://API.Example.COM/mcp/health",
        "https://api.example.com./mcp/health",
        "https://api.example.com:443/mcp/health",
    ],
)
def test_host_forms_reach_the_same_policy(service, url):
    assert service.nginx_check(url, "GET").status_code == 200


def test_a_non_default_port_is_another_host(service):
    assert service.nginx_check("https://api.example.com:8443/mcp/health", "GET").json()["error"] == "no_policy"


def test_duplicate_authorization_headers_are_refused(service, mint):
    token = mint(audience=RESOURCE, scope="mcp:read")
    headers = [
        ("X-Original-URL", RESOURCE),
        ("X-Original-Method", "GET"),
        ("Authorization", f"Bearer {token}"),
        ("Authorization", "Bearer other"),
    ]
    assert httpx.get(service.check_url("nginx"), headers=headers).status_code == 400


def test_oversized_headers_never_cause_a_5xx(service):
    for size in (20_000, 70_000):
        try:
            response = service.nginx_check(f"{RESOURCE}/x", "GET", "x" * size)
        except httpx.RemoteProtocolError:
            continue  # the server may close the connection on absurd headers; that is fine
        assert 400 <= response.status_code < 500


# -- traefik and envoy dialects --------------------------------------------------------
def test_traefik_dialect(service, mint):
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example.com",
        "X-Forwarded-Uri": "/mcp/tools?x=1",
        "X-Forwarded-Method": "POST",
    }
    assert httpx.get(service.check_url("traefik"), headers=headers).status_code == 401
    headers["Authorization"] = f"Bearer {mint(audience=RESOURCE, scope='mcp:read')}"
    response = httpx.get(service.check_url("traefik"), headers=headers)
    assert response.status_code == 200 and response.headers["x-auth-subject"] == "alice"
    del headers["X-Forwarded-Uri"]
    assert httpx.get(service.check_url("traefik"), headers=headers).status_code == 400


def test_envoy_dialect_reads_the_original_request(service, mint):
    url = f"http://127.0.0.1:{service.check_port}/ext-authz/envoy/mcp/tools?cursor=1"
    token = mint(audience=RESOURCE, scope="mcp:read")
    response = httpx.post(url, headers={"Host": "api.example.com", "Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    removed = response.headers["x-envoy-auth-headers-to-remove"].lower().split(",")
    assert "x-auth-email" in removed and "x-auth-subject" not in removed
    anonymous = httpx.get(
        f"http://127.0.0.1:{service.check_port}/ext-authz/envoy/mcp/health", headers={"Host": "api.example.com"}
    )
    assert anonymous.status_code == 200
    assert "x-auth-subject" in anonymous.headers["x-envoy-auth-headers-to-remove"].lower()
    raw = httpx.get(
        f"http://127.0.0.1:{service.check_port}/ext-authz/envoy/mcp/health/%2e%2e/x",
        headers={"Host": "api.example.com"},
    )
    assert raw.status_code == 401


def test_the_public_port_never_answers_checks(service):
    response = httpx.get(
        f"http://127.0.0.1:{service.port}/ext-authz/nginx",
        headers={"X-Original-URL": f"{RESOURCE}/health", "X-Original-Method": "GET"},
    )
    assert response.status_code == 404


_header_bytes = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def raw_request(port: int, target: bytes, headers: dict[str, bytes]) -> int:
    """Send bytes a well-behaved client library would refuse to send; return the status."""
    lines = [b"GET " + target + b" HTTP/1.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    if "Host" not in headers:
        lines.append(b"Host: authgate")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        answer = connection.recv(65536)
    return int(answer.split(b" ", 2)[1])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dialect=st.sampled_from([b"nginx", b"traefik", b"envoy/mcp", b"envoy/mcp/health", b"envoy"]),
    values=st.dictionaries(
        st.sampled_from(
            [
                "X-Original-URL",
                "X-Original-Method",
                "Authorization",
                "Mcp-Method",
                "Mcp-Name",
                "Origin",
                "Access-Control-Request-Method",
                "X-Forwarded-Proto",
                "X-Forwarded-Host",
                "X-Forwarded-Uri",
                "X-Forwarded-Method",
                "Host",
                "X-Request-Id",
            ]
        ),
        _header_bytes,
    ),
)
def test_garbage_in_any_header_never_causes_a_5xx(service, dialect, values):
    status = raw_request(service.check_port, b"/ext-authz/" + dialect, values)
    assert status < 500, (status, values)


# -- RFC 9728 metadata ---------------------------------------------------------------
def test_protected_resource_metadata(service, issuer):
    response = httpx.get(
        f"http://127.0.0.1:{service.port}/.well-known/oauth-protected-resource/mcp", headers={"Host": "api.example.com"}
    )
    assert response.status_code == 200
    document = response.json()
    assert document == {
        "resource": RESOURCE,
        "authorization_servers": [issuer.issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["mcp:admin", "mcp:read"],
        "dpop_signing_alg_values_supported": sorted(ASYMMETRIC_ALGORITHMS),
        "dpop_bound_access_tokens_required": False,
    }
    root = httpx.get(
        f"http://127.0.0.1:{service.port}/.well-known/oauth-protected-resource", headers={"Host": "api.example.com"}
    )
    assert root.json() == document  # one policy owns the host: the root form answers too
    missing = httpx.get(
        f"http://127.0.0.1:{service.port}/.well-known/oauth-protected-resource/other",
        headers={"Host": "api.example.com"},
    )
    assert missing.status_code == 404


# -- admin and metrics ports -----------------------------------------------------------
def test_metrics_count_decisions(service):
    service.nginx_check(f"{RESOURCE}/health", "GET")
    text = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics").text
    assert 'authgate_checks_total{decision="allow",dialect="nginx",reason="anonymous"}' in text
    assert "authgate_jwks_fetches_total" in text and "authgate_check_duration_seconds_bucket" in text


def test_decision_log_lines_carry_the_fields_operators_need(service, mint):
    token = mint(audience=RESOURCE, scope="mcp:read")
    service.nginx_check(f"{RESOURCE}/x", "GET", token, X_Request_Id="req-fields-1")
    line = next(d for d in service.decisions() if d["request_id"] == "req-fields-1")
    for field in ("policy", "rule", "decision", "reason", "subject", "client_id", "latency_ms"):
        assert field in line
    assert line["policy"] == "default/api" and line["subject"] == "alice" and line["rule"] == 2


def test_admin_snapshot_api(start_authgate, issuer, tmp_path):
    service = start_authgate(None, *LOCAL_EGRESS, ready=False)
    admin = f"http://127.0.0.1:{service.admin_port}"
    assert httpx.get(f"{admin}/healthz").status_code == 200
    assert httpx.get(f"{admin}/readyz").status_code == 503  # Kubernetes mode: waits for a snapshot
    document = {"formatVersion": 1, "generation": 5, "policies": [policy(issuer.issuer)], "secrets": []}
    assert service.admin("PUT", "/admin/v1/snapshot", document, token=None).status_code == 401
    assert service.admin("PUT", "/admin/v1/snapshot", document, token="wrong").status_code == 401
    accepted = service.admin("PUT", "/admin/v1/snapshot", document)
    assert accepted.status_code == 200 and accepted.json()["changed"] is True
    assert httpx.get(f"{admin}/readyz").status_code == 200
    assert service.admin("PUT", "/admin/v1/snapshot", document).json()["changed"] is False  # idempotent
    older = dict(document, generation=4)
    assert service.admin("PUT", "/admin/v1/snapshot", older).status_code == 409
    broken = dict(document, generation=6, policies=[policy("http://idp.example.com", bogus=1)])
    refused = service.admin("PUT", "/admin/v1/snapshot", broken)
    assert refused.status_code == 422
    assert any("spec.bogus: unknown field" in issue for issue in refused.json()["issues"])
    assert service.admin("PUT", "/admin/v1/snapshot", b"{not json").status_code == 400
    status = service.admin("GET", "/admin/v1/snapshot").json()
    assert status["generation"] == 5  # nothing changed
    assert status["policies"][0]["policy"] == "default/api"
    assert service.admin("GET", "/admin/v1/snapshot", token=None).status_code == 401
    assert service.nginx_check(f"{RESOURCE}/health", "GET").status_code == 200


def test_snapshot_pushes_are_refused_without_admin_authentication(tmp_path, issuer):
    instance = Authgate(tmp_path, None, list(LOCAL_EGRESS), admin_token=None).start(ready=False)
    try:
        document = {"formatVersion": 1, "generation": 1, "policies": [policy(issuer.issuer)], "secrets": []}
        response = instance.admin("PUT", "/admin/v1/snapshot", document)
        assert response.status_code == 403 and "no admin authentication" in response.json()["error_description"]
    finally:
        instance.stop()


def test_bootstrap_snapshot_makes_a_new_replica_ready(start_authgate, issuer, tmp_path):
    document = {"formatVersion": 1, "generation": 3, "policies": [policy(issuer.issuer)], "secrets": []}
    path = tmp_path / "snapshot.json.gz"
    path.write_bytes(gzip.compress(json.dumps(document).encode()))
    service = start_authgate(None, *LOCAL_EGRESS, "--bootstrap-snapshot", str(path))
    assert service.admin("GET", "/admin/v1/snapshot").json()["generation"] == 3
    assert service.nginx_check(f"{RESOURCE}/health", "GET").status_code == 200


def test_serve_refuses_a_bad_policy_file_with_a_precise_error(tmp_path, issuer):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(policy(issuer.issuer, bogus=True)))
    result = subprocess.run(
        [AUTHGATE, "serve", "--policy", str(path), *LOCAL_EGRESS], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert f"{path} (document 1): spec.bogus: unknown field" in result.stderr
    assert "Traceback" not in result.stderr


# -- the CLI's offline commands ---------------------------------------------------------
def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([AUTHGATE, *args], capture_output=True, text=True, input=stdin, timeout=30)


def test_validate(tmp_path, issuer):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(policy("https://idp.example.com")))
    assert run_cli("validate", str(good)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(policy("http://idp.example.com")))
    result = run_cli("validate", str(bad))
    assert result.returncode == 1
    assert "bad.yaml (document 1): spec.issuers[0].issuer: must use https" in result.stderr


def test_explain_walks_through_the_pipeline_without_printing_the_token(tmp_path, issuer, mint):
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy(issuer.issuer)))
    token = mint(audience=RESOURCE, scope="mcp:read")
    result = run_cli("explain", "--policy", str(path), "--url", f"{RESOURCE}/x", *LOCAL_EGRESS, stdin=token)
    assert result.returncode == 0, result.stderr
    assert "route: policy default/api" in result.stdout
    assert "rule: spec.rules[2]" in result.stdout
    assert "=> ALLOW 200" in result.stdout
    assert token not in result.stdout + result.stderr
    denied = run_cli("explain", "--policy", str(path), "--url", f"{RESOURCE}/x", *LOCAL_EGRESS, stdin="")
    assert denied.returncode == 2 and "=> DENY 401" in denied.stdout


def test_the_package_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "authgate.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "serve" in result.stdout
    assert Path(AUTHGATE).exists()
