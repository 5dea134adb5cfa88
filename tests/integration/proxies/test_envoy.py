"""authgate behind Envoy's `ext_authz` filter: what Envoy does its own way.

The example configs (examples/envoy/envoy-http.yaml, envoy-grpc.yaml; tests/infra/envoy.py
only moves their ports), each test through all three: HTTP, gRPC, and gRPC with
`encode_raw_headers: true` (Envoy then sends `header_map` with raw bytes, one entry per
value, instead of the joined `headers` map), in front of a real `authgate serve` and an
echo app (tests/integration/proxies/conftest.py). The scenarios every proxy shares are in
test_through_proxies.py.

Envoy is the edge (`use_remote_address: true`), so it replaces a client's
X-Request-Id with its own; authgate logs that id and echoes it, which is how these
tests find the decision behind a response.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from tests.infra.jwks_server import JwksServer
from tests.support import proxy_cases
from tests.support.authgate import Authgate
from tests.support.edge import HOST, IDENTITY_HEADERS, OUTAGE_RESOURCE, RESOURCE, Edge

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("proxy", proxy_cases.ENVOYS, indirect=True)]


# -- client-sent identity headers ------------------------------------------------------------
def test_an_allow_names_every_identity_header_for_removal(edge: Edge, authgate: Authgate) -> None:
    """What removes a client's identity headers on the anonymous route
    (test_through_proxies.py): authgate's allow names every one of them for removal."""
    check = httpx.get(
        f"{authgate.check_url('envoy')}/mcp/health",
        headers={"Host": HOST, "X-Auth-Subject": "mallory"},
        trust_env=False,
    )
    assert check.status_code == 200
    removed = {name.strip().lower() for name in check.headers["x-envoy-auth-headers-to-remove"].split(",")}
    assert removed == set(IDENTITY_HEADERS)


# -- deny ------------------------------------------------------------------------------------
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
def test_unknown_host_never_reaches_the_app(edge: Edge, mint: Callable[..., str], authgate: Authgate) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read mcp:admin")
    checks_before = len(authgate.decisions())
    # www.example.com is public in authgate, but this proxy does not serve it.
    for host in ("forged.example.com", "mcp.example.com.evil.example", "localhost", "www.example.com"):
        response = edge.request("/mcp", token=token, host=host)
        assert response.status_code == 404
    assert edge.new_app_requests() == []
    assert len(authgate.decisions()) == checks_before  # and costs no check
