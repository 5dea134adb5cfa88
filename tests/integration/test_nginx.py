"""authgate behind nginx `auth_request`: the example config, end to end.

Everything is real: a client (httpx) talks to Debian nginx running
`examples/nginx/nginx.conf` (tests/infra/nginx.py only moves its ports), which
asks a real `authgate serve` process and proxies to an echo app that shows which
headers reached it. Tokens come from a local discovery + JWKS issuer.

One authgate, one nginx and one app serve the whole module. The policy stream has
two OAuthPolicies on mcp.example.com: `/mcp` (the MCP server) and `/outage`, whose
issuer is down from the start (cold key cache: 503, never 401), and a third for
www.example.com, a public site the same authgate serves (every path anonymous).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.infra.jwks_server import JwksServer
from tests.infra.nginx import Nginx
from tests.infra.upstream import EchoUpstream
from tests.support import proxy_cases
from tests.support.authgate import LOCAL_EGRESS, Authgate
from tests.support.edge import (
    OUTAGE_RESOURCE,
    RESOURCE,
    Edge,
    edge_authgate,
    values,
)
from tests.support.edge import (
    down_issuer as stopped_issuer,
)

pytestmark = pytest.mark.integration


# -- fixtures: started once per module ----------------------------------------------------
@pytest.fixture(scope="module")
def nginx_tool() -> None:
    proxy_cases.require_nginx()


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
    with proxy_cases.example_nginx(Path(tmp_path_factory.mktemp("nginx")), authgate, app) as proxy:
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
    _, echoed = proxy_cases.reader_reaches_the_app_with_its_identity(edge, mint, issuer)
    assert values(echoed, "x-request-id") == [edge.request_id]
    assert edge.decision()["reason"] == "allowed"


def test_roles_and_scopes_are_listed_comma_and_space_separated(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.roles_and_scopes_are_listed_comma_and_space_separated(edge, mint)


def test_admin_can_call_an_admin_tool(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.admin_can_call_an_admin_tool(edge, mint)


# -- client-sent identity headers ------------------------------------------------------------
def test_forged_identity_headers_are_overwritten_on_an_authenticated_route(
    edge: Edge, mint: Callable[..., str], issuer: JwksServer
) -> None:
    proxy_cases.forged_identity_headers_are_overwritten_on_an_authenticated_route(edge, mint, issuer)


def test_forged_identity_headers_are_removed_on_the_anonymous_route(edge: Edge) -> None:
    proxy_cases.forged_identity_headers_are_removed_on_the_anonymous_route(edge)


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
    response = edge.request("/outage/items", token=token)

    assert response.status_code == 503
    assert response.json() == {"error": "temporarily_unavailable"}
    assert "www-authenticate" not in response.headers
    assert edge.new_app_requests() == []
    assert edge.decision()["reason"] == "keys_unavailable"  # authgate's answer, not an unreachable authgate
    assert down_issuer.discoveries > 0  # authgate did ask; the issuer is what failed


def test_repeated_mcp_headers_cannot_smuggle_an_admin_tool_call(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.repeated_mcp_headers_cannot_smuggle_an_admin_tool_call(edge, mint)


# -- path tricks -----------------------------------------------------------------------------
@pytest.mark.parametrize(("raw_target", "normalized"), proxy_cases.DOT_SEGMENT_TARGETS)
def test_dot_segments_do_not_escape_into_the_anonymous_route(edge: Edge, raw_target: str, normalized: str) -> None:
    proxy_cases.dot_segments_do_not_escape_into_the_anonymous_route(edge, raw_target, normalized)


@pytest.mark.parametrize("raw_target", proxy_cases.AMBIGUOUS_PATH_TARGETS)
def test_ambiguous_path_is_refused(edge: Edge, raw_target: str) -> None:
    proxy_cases.ambiguous_path_is_refused(edge, raw_target)
    assert edge.decision()["reason"] == "bad_request"  # refused by authgate, not by nginx


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
    proxy_cases.protected_resource_metadata_is_public(edge)


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
    proxy_cases.absolute_form_request_is_judged_by_the_host_it_is_routed_to(edge)
