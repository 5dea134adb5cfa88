"""Envoy ext_authz over gRPC, spoken by a real gRPC client to a real `authgate serve`.

Hand-built CheckRequests reach what a gateway would rarely send: repeated headers in
both forms Envoy has (`headers`, joined with ","; `header_map`, one entry per value,
`raw_value` bytes), bytes that do not decode, policy references. Where the HTTP dialect
can say the same thing, the same request also goes to `/ext-authz/envoy` of the same
instance and both dialects must decide alike. (tests/integration/test_envoy.py runs the
port behind real Envoy.)
"""

from __future__ import annotations

import concurrent.futures
import json

import grpc
import httpx
import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tests.support.authgate import LOCAL_EGRESS, Authgate
from tests.support.leaks import assert_clean_log

RESOURCE = "https://api.example.com/mcp"


INSPECTOR = "https://inspector.example.com"
MCP_RULES = [
    {"pathPrefix": "/mcp/health", "anonymous": True},
    {"pathPrefix": "/mcp", "mcpMethods": ["tools/call"], "mcpNames": ["admin_*"], "requireRoles": ["admin"]},
    {"pathPrefix": "/mcp", "requireScopes": ["mcp:read"]},
]


def policy(issuer_url: str, name: str, resource: str, namespace: str = "apps", rules=None, **spec) -> dict:
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "resource": resource,
            "issuers": [{"issuer": issuer_url}],
            "scopeRoles": [{"scope": "mcp:read", "role": "reader"}, {"scope": "mcp:admin", "role": "admin"}],
            "rules": MCP_RULES if rules is None else rules,
            **spec,
        },
    }


@pytest.fixture(scope="module")
def service(tmp_path_factory, issuer):
    anonymous = [{"pathPrefix": "/", "anonymous": True}]
    text = yaml.safe_dump_all(
        [
            policy(issuer.issuer, "api", RESOURCE, cors={"allowedOrigins": [INSPECTOR]}),
            # a second policy of the same namespace on the same host, and one on another host
            policy(issuer.issuer, "api-public", "https://api.example.com/public", rules=anonymous),
            policy(issuer.issuer, "internal", "https://internal.example.com/mcp"),
            # another namespace, its own host, every path anonymous
            policy(issuer.issuer, "open", "https://open.example.com/", namespace="other", rules=anonymous),
        ]
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
    response = check(stub, token=mint(audience=RESOURCE, scope="mcp:read", client_id=None))
    assert response.status.code == 0
    assert response.HasField("ok_response")
    headers = header_dict(response.ok_response.headers)
    assert headers["x-auth-subject"] == "alice" and headers["x-auth-scopes"] == "mcp:read"
    assert all(o.append_action == o.OVERWRITE_IF_EXISTS_OR_ADD for o in response.ok_response.headers)
    # the token has no client id: the proxy must strip a client-sent copy instead
    assert "X-Auth-Client-Id" in response.ok_response.headers_to_remove


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


# -- both dialects, one header rule --------------------------------------------------------
def grpc_request(headers, path="/mcp", host="api.example.com", method="POST", form="headers", policy_ref=None):
    """A CheckRequest as Envoy builds it: `headers` joins repeats with "," (its default),
    `header_map` has one entry per value with `raw_value` bytes (`encode_raw_headers`)."""
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.host, http.path, http.scheme = method, host, path, "https"
    for name, value in headers:
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        if form == "headers":
            key, text = name.lower(), raw.decode("latin-1")
            http.headers[key] = f"{http.headers[key]},{text}" if key in http.headers else text
        else:
            http.header_map.headers.append(base_pb2.HeaderValue(key=name.lower(), raw_value=raw))
    if policy_ref is not None:
        request.attributes.context_extensions["policy"] = policy_ref
    return request


def grpc_status(stub, request) -> int:
    """The HTTP status Envoy would answer the client with."""
    response = stub.Check(request, timeout=10)
    return 200 if response.status.code == 0 else response.denied_response.status.code


def http_status(service, headers, path="/mcp", host="api.example.com", method="POST") -> int:
    """The same request to the HTTP dialect (`/ext-authz/envoy`) of the same instance."""
    sent = [(b"host", host.encode())]
    sent += [(name.encode(), value if isinstance(value, bytes) else value.encode("latin-1")) for name, value in headers]
    return httpx.request(
        method, service.check_url("envoy") + path, headers=sent, trust_env=False, timeout=10
    ).status_code


def decided_alike(service, stub, headers, **target) -> int:
    answers = {
        "http": http_status(service, headers, **target),
        "grpc headers": grpc_status(stub, grpc_request(headers, form="headers", **target)),
        "grpc header_map": grpc_status(stub, grpc_request(headers, form="header_map", **target)),
    }
    assert len(set(answers.values())) == 1, answers
    return answers["http"]


def test_repeated_headers_authgate_reads_are_refused_in_every_form(service, stub, mint):
    reader = [("Authorization", f"Bearer {mint(audience=RESOURCE, scope='mcp:read')}")]
    call = [*reader, ("Mcp-Method", "tools/call")]
    assert decided_alike(service, stub, [*call, ("Mcp-Name", "search")]) == 200
    assert decided_alike(service, stub, [*call, ("Mcp-Name", "admin_delete")]) == 403
    # an admin tool hidden before (or after) a harmless one: the app may read either copy
    assert decided_alike(service, stub, [*call, ("Mcp-Name", "admin_delete"), ("Mcp-Name", "search")]) == 400
    assert decided_alike(service, stub, [*call, ("Mcp-Name", "search"), ("Mcp-Name", "admin_delete")]) == 400
    # a garbage token before a valid one
    assert decided_alike(service, stub, [("Authorization", "Bearer garbage"), *reader], method="GET") == 400
    # an origin that is not allowed before one that is, in a CORS preflight
    preflight = [("Access-Control-Request-Method", "POST")]
    assert decided_alike(service, stub, [("Origin", INSPECTOR), *preflight], method="OPTIONS") == 200
    evil_first = [("Origin", "https://evil.example"), ("Origin", INSPECTOR), *preflight]
    assert decided_alike(service, stub, evil_first, method="OPTIONS") == 400
    # a value that is two joined (by a proxy, or by the client) is refused the same way
    assert decided_alike(service, stub, [*call, ("Mcp-Name", "admin_delete,search")]) == 400
    assert decided_alike(service, stub, [("Origin", f"https://evil.example, {INSPECTOR}"), *preflight]) == 400


def test_a_header_in_both_grpc_forms_or_in_two_spellings_is_a_repeat(stub, mint):
    token = mint(audience=RESOURCE, scope="mcp:read")
    request = grpc_request([("Authorization", f"Bearer {token}")], method="GET")
    assert grpc_status(stub, request) == 200
    request.attributes.request.http.header_map.headers.append(base_pb2.HeaderValue(key="authorization", value="x"))
    assert grpc_status(stub, request) == 400
    request = grpc_request([("Authorization", f"Bearer {token}")], method="GET")
    request.attributes.request.http.headers["Authorization"] = "Bearer garbage"
    assert grpc_status(stub, request) == 400


def test_only_headers_authgate_reads_are_capped_and_all_of_them_together(service, stub, mint):
    reader = [("Authorization", f"Bearer {mint(audience=RESOURCE, scope='mcp:read')}")]
    large = "x" * (17 * 1024)
    assert decided_alike(service, stub, [*reader, ("Cookie", f"session={large}")], method="GET") == 200
    assert decided_alike(service, stub, [*reader, ("Mcp-Name", large)], method="GET") == 400
    fillers = [(f"X-Filler-{i}", "x" * (15 * 1024)) for i in range(5)]  # 75 KiB, none of them read
    assert decided_alike(service, stub, [*reader, *fillers], method="GET") == 400


def test_a_read_header_must_be_ascii(service, stub, mint):
    reader = [("Authorization", f"Bearer {mint(audience=RESOURCE, scope='mcp:read')}")]
    assert decided_alike(service, stub, [*reader, ("Mcp-Name", b"caf\xe9")]) == 400
    assert decided_alike(service, stub, [*reader, ("X-Note", b"caf\xe9")], method="GET") == 200  # not read


# -- messages that do not decode -----------------------------------------------------------
def _with_bytes(marker: str, replacement: bytes) -> bytes:
    request = grpc_request([("Mcp-Name", marker)], host=f"{marker}.example.com")
    raw = request.SerializeToString()
    assert raw.count(marker.encode()) == 2
    return raw.replace(marker.encode(), replacement, 1)


UNDECODABLE = {
    "bad UTF-8 in a string field": _with_bytes("zzzz", b"\xff\xfe\xfd\xfc"),
    "truncated": grpc_request([("Mcp-Name", "search")], path="/mcp/" + "x" * 64).SerializeToString()[:-20],
    "not protobuf": b"\xff" * 16,
}


def _metric(service, name: str, labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics", trust_env=False, timeout=5).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_messages_that_do_not_decode_are_400_with_one_line_and_no_traceback(service):
    errors = ("authgate_internal_errors_total", 'where="grpc-decode"')
    before, lines_before = _metric(service, *errors), len(service.decisions())
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        call = channel.unary_unary(
            "/envoy.service.auth.v3.Authorization/Check",
            request_serializer=None,
            response_deserializer=external_auth_pb2.CheckResponse.FromString,
        )
        for kind, message in UNDECODABLE.items():
            response = call(message, timeout=10)
            assert response.status.code == 3, kind  # INVALID_ARGUMENT
            assert response.denied_response.status.code == 400, kind
            assert json.loads(response.denied_response.body)["error"] == "invalid_request", kind
            assert "does not decode" in response.status.message and "parsing" not in response.status.message
    new = service.decisions()[lines_before:]
    assert [(d["status"], d["reason"]) for d in new] == [(400, "bad_request")] * len(UNDECODABLE)
    assert _metric(service, *errors) == before + len(UNDECODABLE)
    log = service.log()
    assert "Traceback" not in log and "Error parsing message" not in log and "deserializ" not in log


def test_a_message_over_the_size_cap_is_refused_by_grpc_before_any_parsing(service):
    message = grpc_request([("X-Filler", "x" * (1024 * 1024))], method="GET").SerializeToString()
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        call = channel.unary_unary("/envoy.service.auth.v3.Authorization/Check", request_serializer=None)
        with pytest.raises(grpc.RpcError) as raised:
            call(message, timeout=10)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Traceback" not in service.log()


# -- context_extensions.policy ---------------------------------------------------------------
def test_a_policy_reference_picks_among_the_policies_that_cover_the_host(service, stub, mint):
    token = mint(audience="https://internal.example.com/mcp", scope="mcp:read")
    # its own host: the reference and the host agree, and so do both dialects
    assert (
        grpc_status(
            stub,
            grpc_request(
                [("Authorization", f"Bearer {token}")],
                host="internal.example.com",
                method="GET",
                policy_ref="apps/internal",
            ),
        )
        == 200
    )
    assert (
        http_status(service, [("Authorization", f"Bearer {token}")], host="internal.example.com", method="GET") == 200
    )
    # apps/api-public also covers api.example.com: the gateway may pick it for a route there
    assert check(stub, path="/mcp/x").denied_response.status.code == 401  # by prefix: apps/api
    assert check(stub, path="/mcp/x", policy_ref="apps/api-public").status.code == 0


@pytest.mark.parametrize(
    "policy_ref",
    [
        "apps/internal",  # same namespace, another host: its token must not open api.example.com
        "other/open",  # another namespace's anonymous rule must not open api.example.com
        "apps/nope",
    ],
)
def test_a_policy_reference_to_a_policy_not_on_the_host_is_no_policy(service, stub, mint, policy_ref):
    bearer = [("Authorization", f"Bearer {mint(audience='https://internal.example.com/mcp', scope='mcp:read')}")]
    response = stub.Check(grpc_request(bearer, path="/mcp/x", method="GET", policy_ref=policy_ref), timeout=10)
    assert response.status.code == 7  # PERMISSION_DENIED
    assert response.denied_response.status.code == 403
    assert json.loads(response.denied_response.body)["error"] == "no_policy"
    # the HTTP dialect cannot name a policy: by host it is apps/api's, and the token is not for it
    assert http_status(service, bearer, path="/mcp/x", method="GET") == 401


@pytest.mark.parametrize("policy_ref", ["apps/api\n", "apps/api\n\n", "../etc", "apps/api/x", "Apps/api", "apps/", ""])
def test_a_malformed_policy_reference_is_400(stub, policy_ref):
    response = check(stub, path="/mcp/health", policy_ref=policy_ref)  # anonymous, were it accepted
    assert response.status.code == 3 and response.denied_response.status.code == 400


@pytest.mark.parametrize(("path", "host"), [("/mcp%2Fx", "api.example.com"), ("/mcp", "bad host")])
def test_malformed_checks_are_400_never_an_allow(stub, path, host):
    response = check(stub, path=path, host=host)
    assert response.status.code == 3
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


def test_concurrent_checks_from_the_worker_threads_are_each_answered_counted_and_logged_once(service, stub, mint):
    """Hits are answered in the gRPC port's worker threads, misses on the event loop: under
    concurrency every call gets its own answer, one count and one decision line."""
    readers = [mint(audience=RESOURCE, scope="mcp:read", sub=f"user{i}") for i in range(8)]
    calls = [(f"grpc-conc-{i}", readers[i % 8] if i % 3 else None) for i in range(240)]
    allows = ("authgate_checks_total", 'decision="allow",dialect="envoy-grpc",reason="allowed"')
    denials = ("authgate_checks_total", 'decision="deny",dialect="envoy-grpc",reason="no_token"')
    before = [_metric(service, *which) for which in (allows, denials)]

    def one(call):
        rid, token = call
        response = check(stub, token=token, x_request_id=rid)
        return rid, token, response

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(one, calls))
    for rid, token, response in answers:
        if token is None:
            assert response.status.code == 16
            assert header_dict(response.denied_response.headers)["x-request-id"] == rid
        else:
            assert response.status.code == 0
            assert header_dict(response.ok_response.headers)["x-auth-subject"].startswith("user")
    after = [_metric(service, *which) for which in (allows, denials)]
    assert after[0] - before[0] == sum(1 for _, token in calls if token)
    assert after[1] - before[1] == sum(1 for _, token in calls if token is None)
    logged = [d["request_id"] for d in service.decisions() if d["request_id"].startswith("grpc-conc-")]
    assert sorted(logged) == sorted(rid for rid, _ in calls)
