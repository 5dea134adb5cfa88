"""The edge every test here runs through: one `authgate serve` (the edge policies,
tests/support/edge.py), one echo app and the example proxy a test is parametrised with,
each started once per module.

    @pytest.mark.parametrize("proxy", proxy_cases.PROXIES, indirect=True)
    def test_x(edge: Edge) -> None:
        edge.request("/mcp")          # through nginx, each Envoy, Traefik in turn

The proxy's binary is checked before authgate starts: a missing one skips (locally) or
fails (CI=true) without starting anything. A module overrides `authgate` (or `client`)
for its own (test_token_exchange_proxies.py); the proxy and the edge follow.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.infra.jwks_server import JwksServer
from tests.infra.nginx import Nginx
from tests.infra.upstream import EchoUpstream
from tests.support import proxy_cases
from tests.support.authgate import LOCAL_EGRESS, Authgate
from tests.support.edge import Edge, edge_authgate
from tests.support.edge import down_issuer as stopped_issuer
from tests.support.leaks import assert_no_token_in


@pytest.fixture(scope="module")
def down_issuer() -> Iterator[JwksServer]:
    with stopped_issuer() as server:
        yield server


@pytest.fixture(scope="module")
def authgate(
    issuer: JwksServer, down_issuer: JwksServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Authgate]:
    with edge_authgate(
        tmp_path_factory.mktemp("authgate-edge"), issuer.issuer, down_issuer.issuer, list(LOCAL_EGRESS)
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def app() -> Iterator[EchoUpstream]:
    with EchoUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def proxy(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The example proxy named by the test's `proxy` parameter (proxy_cases.PROXIES)."""
    name = request.param
    proxy_cases.require_proxy(name)
    authgate, app = request.getfixturevalue("authgate"), request.getfixturevalue("app")
    work_dir = Path(tmp_path_factory.mktemp(name))
    with proxy_cases.example_proxy(name, work_dir, authgate, app) as started:
        yield started
    # A proxy logs what it was sent, too: no token may be in its log either.
    assert started.process is not None
    assert_no_token_in(started.process.read_log(), f"the {name} log")
    if isinstance(started, Nginx) and started.access_log.exists():
        assert_no_token_in(started.access_log.read_text(errors="replace"), "the nginx access log")


@pytest.fixture
def edge(
    request: pytest.FixtureRequest, proxy: Any, client: httpx.Client, app: EchoUpstream, authgate: Authgate
) -> Edge:
    name = request.node.callspec.params["proxy"]
    # Envoy is the edge (use_remote_address: true) and replaces a client's X-Request-Id.
    return Edge(proxy, client, app, authgate, send_request_id=name not in proxy_cases.ENVOYS, name=name)
