"""authgate behind nginx `auth_request`: the example config, end to end.

Everything is real: a client (httpx) talks to Debian nginx running
`examples/nginx/nginx.conf` (tests/support/nginx.py only moves its ports), which
asks a real `authgate serve` process and proxies to an echo app that shows which
headers reached it. Tokens come from a local discovery + JWKS issuer.

One authgate, one nginx and one app serve the whole module. The policy stream has
two OAuthPolicies on mcp.example.com: `/mcp` (the MCP server) and `/outage`, whose
issuer is down from the start (cold key cache: 503, never 401), and a third for
www.example.com, a public site the same authgate serves (every path anonymous).
"""

from __future__ import annotations

import itertools
import shutil
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
from tests.support.jwks_server import JwksServer
from tests.support.nginx import Nginx
from tests.support.upstream import EchoUpstream

pytestmark = pytest.mark.integration

_request_ids = itertools.count(1)


# -- fixtures: started once per module ----------------------------------------------------
@pytest.fixture(scope="module")
def nginx_tool() -> None:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    require_tool(None if found else "nginx not installed: run make tools")


@pytest.fixture(scope="module")
def down_issuer() -> Iterator[JwksServer]:
    with stopped_issuer() as server:
        yield server


@pytest.fixture(scope="module")
def authgate(nginx_tool: None, issuer: JwksServer, down_issuer: JwksServer, tmp_path_factory) -> Iterator[Authgate]:
    with edge_authgate(
        tmp_path_factory.mktemp("authgate-nginx"), issuer.issuer, down_issuer.issuer, list(LOCAL_EGRESS)
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def app() -> Iterator[EchoUpstream]:
    with EchoUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def nginx(authgate: Authgate, app: EchoUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    proxy = Nginx(
        Path(tmp_path_factory.mktemp("nginx")),
        check_port=authgate.check_port,
        public_port=authgate.port,
        app_port=app.port,
    )
    proxy.validate()
    with proxy:
        yield proxy


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as http:
        yield http


@pytest.fixture
def edge(nginx: Nginx, client: httpx.Client, app: EchoUpstream, authgate: Authgate) -> Edge:
    return Edge(nginx, client, app, authgate)


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
    # No token exchange is configured: the example passes the caller's token on.
    assert values(echoed, "authorization") == [f"Bearer {token}"]
    assert values(echoed, "x-request-id") == [edge.request_id]
    assert edge.decision()["reason"] == "allowed"


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
    assert edge.decision()["rule"] == 1  # the admin-tool rule, not the generic /mcp one


# -- client-sent identity headers ------------------------------------------------------------
def test_forged_identity_headers_are_overwritten_on_an_authenticated_route(
    edge: Edge, mint: Callable[..., str], issuer: JwksServer
) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read", subject="alice", client_id=None)  # no client_id claim
    response = edge.request("/mcp", token=token, headers=forged_identity_headers())

    assert response.status_code == 200
    echoed = edge.reached_app()
    assert values(echoed, "x-auth-subject") == ["alice"]
    assert values(echoed, "x-auth-roles") == ["reader"]
    assert values(echoed, "x-auth-scopes") == ["mcp:read"]
    assert values(echoed, "x-auth-issuer") == [issuer.issuer]
    # authgate set no client id (the token has none): the client's copy must not survive either.
    assert values(echoed, "x-auth-client-id") == []
    assert_no_underscore_copies(echoed)


def test_forged_identity_headers_are_removed_on_the_anonymous_route(edge: Edge) -> None:
    response = edge.request("/mcp/health", headers=forged_identity_headers())

    assert response.status_code == 200
    echoed = edge.reached_app()
    assert echoed["path"] == "/mcp/health"
    for name in IDENTITY_HEADERS:
        assert values(echoed, name) == [], name
    assert_no_underscore_copies(echoed)
    assert edge.decision()["reason"] == "anonymous"


# -- deny ------------------------------------------------------------------------------------
def test_no_token_is_challenged_with_the_resource_metadata(edge: Edge) -> None:
    response = edge.request("/mcp")

    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [NO_TOKEN_CHALLENGE]
    assert "error=" not in response.headers["www-authenticate"]
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == "unauthorized"
    assert edge.new_app_requests() == []
    assert edge.decision()["reason"] == "no_token"


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
    assert edge.decision()["reason"] == "invalid_token"


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
    assert edge.decision()["reason"] == "missing_role"


def test_unavailable_issuer_keys_are_a_503_not_a_login(
    edge: Edge, mint: Callable[..., str], down_issuer: JwksServer
) -> None:
    token = mint(audience=OUTAGE_RESOURCE, scope="mcp:read", iss=down_issuer.issuer)
    response = edge.request("/outage/items", token=token)

    assert response.status_code == 503
    assert response.json() == {"error": "temporarily_unavailable"}
    assert "www-authenticate" not in response.headers
    assert edge.new_app_requests() == []
    assert edge.decision()["reason"] == "keys_unavailable"  # authgate's answer, not an unreachable authgate
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
    decision = edge.decision()
    assert (decision["path"], decision["reason"]) == (normalized, "no_token")


@pytest.mark.parametrize("raw_target", ["/mcp%2Fx", "/mcp%2fhealth", "/mcp/health%2F..%2Fadmin"])
def test_encoded_slash_is_refused_even_with_a_valid_token(
    edge: Edge, mint: Callable[..., str], raw_target: str
) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read")
    response = edge.request("/", raw_target=raw_target, token=token)

    # authgate refuses the target (400); the example keeps it a client error, not a 500.
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request"}
    assert edge.new_app_requests() == []
    assert edge.decision()["reason"] == "bad_request"


def test_a_longer_name_is_not_under_the_mcp_prefix(edge: Edge, mint: Callable[..., str]) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read mcp:admin")
    response = edge.request("/mcpx", token=token)

    assert response.status_code == 403
    assert edge.new_app_requests() == []
    assert edge.decision()["reason"] == "no_policy"


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
        # The example's default server answers 444: the connection closes without a response.
        with pytest.raises(httpx.RemoteProtocolError):
            edge.request("/mcp", token=token, host=host)
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
    decision = edge.decision()
    assert (decision["host"], decision["policy"], decision["reason"]) == (HOST, "default/mcp", "no_token")
