"""authgate behind Traefik v3 ForwardAuth: what Traefik does its own way.

A client (httpx) talks to Traefik (built from Go modules by `make tools`) running
`examples/traefik/traefik.yml` + `dynamic.yml` (tests/infra/traefik.py only moves their
ports), which asks a real `authgate serve` on `/ext-authz/traefik` and routes to an echo
app that shows which headers reached it (tests/integration/proxies/conftest.py). The
scenarios Traefik shares with the other proxies are in test_through_proxies.py (the forged
identity headers among them: the example drops their underscore spellings, which Traefik
would pass on); here is what it does its own way.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.support.edge import (
    OUTAGE_RESOURCE,
    RESOURCE,
    Edge,
)

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("proxy", ["traefik"], indirect=True)]


def test_unavailable_issuer_keys_are_a_503_not_a_login(edge: Edge, mint: Callable[..., str], down_issuer) -> None:
    token = mint(audience=OUTAGE_RESOURCE, scope="mcp:read", iss=down_issuer.issuer)
    response = edge.request("/outage/x", token=token)
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert edge.new_app_requests() == []


@pytest.mark.parametrize("raw_target", ["/mcp/health/../admin", "/mcp/health/%2e%2e/admin", "/mcp/health/%2E%2E/x"])
def test_dot_segments_do_not_escape_into_the_anonymous_route(edge: Edge, raw_target: str) -> None:
    response = edge.request("/", raw_target=raw_target)
    assert response.status_code in (400, 401)
    assert edge.new_app_requests() == []


@pytest.mark.parametrize("raw_target", ["/mcp%2Fhealth", "/mcp/health%2F..%2Fadmin", "/mcp%5Cx"])
def test_encoded_separators_never_reach_the_app(edge: Edge, mint: Callable[..., str], raw_target: str) -> None:
    response = edge.request("/", raw_target=raw_target, token=mint(audience=RESOURCE, scope="mcp:read"))
    assert response.status_code == 400
    assert edge.new_app_requests() == []


def test_a_longer_name_is_not_under_the_mcp_prefix(edge: Edge, mint: Callable[..., str]) -> None:
    response = edge.request("/mcpx", token=mint(audience=RESOURCE, scope="mcp:read"))
    assert response.status_code == 403
    assert edge.decision()["reason"] == "no_policy"


def test_unknown_host_never_reaches_the_app(edge: Edge, mint: Callable[..., str]) -> None:
    response = edge.request("/mcp", host="evil.example.com", token=mint(audience=RESOURCE, scope="mcp:read"))
    assert response.status_code == 404
    assert edge.new_app_requests() == []
