"""authgate behind nginx `auth_request`: what nginx does its own way.

The example config (examples/nginx/nginx.conf, tests/infra/nginx.py only moves its ports)
in front of a real `authgate serve` and an echo app (tests/integration/proxies/conftest.py);
the scenarios every proxy shares are in test_through_proxies.py.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from tests.infra.jwks_server import JwksServer
from tests.support.authgate import Authgate
from tests.support.edge import OUTAGE_RESOURCE, RESOURCE, Edge

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("proxy", ["nginx"], indirect=True)]


# -- deny ------------------------------------------------------------------------------------
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


# -- path tricks -----------------------------------------------------------------------------
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
