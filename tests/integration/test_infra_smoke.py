"""The test infrastructure itself works: the IdP, nginx and Envoy examples, processes.

Everything here is real: node running oidc-provider, Debian nginx, the Envoy
binary, uvicorn. authgate is not started: where the examples would call it, the
check port is left closed, which they must turn into a fail-closed 503.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from jwcrypto import jwk, jwt
from tests.infra.envoy import Envoy
from tests.infra.idp import (
    ADMIN_CLAIMS,
    ADMIN_SERVICE_CLIENT,
    CONFIDENTIAL_CLIENT,
    DEFAULT_USER,
    PUBLIC_CLIENT,
    RESOURCES_BY_ALG,
    SERVICE_CLIENT,
    IdpError,
    OidcProvider,
    install_problem,
)
from tests.infra.nginx import Nginx
from tests.infra.ports import free_port
from tests.infra.processes import LinePrefix, Process, ProcessError, TcpPort
from tests.infra.tls import TestCA
from tests.infra.upstream import EchoUpstream

pytestmark = pytest.mark.integration

EXTRA_CLAIMS = {"tenant": "smoke"}


def require_idp() -> None:
    """Skip locally when the IdP is not installed; in CI that is a failure, never a skip."""
    problem = install_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{problem}: CI must run `make tools` before the tests")
    pytest.skip(problem)


@pytest.fixture(scope="module", params=["http", "https"])
def idp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    require_idp()
    work_dir = tmp_path_factory.mktemp(f"idp-{request.param}")
    ca = TestCA(work_dir / "pki") if request.param == "https" else None
    with OidcProvider(work_dir, ca=ca, extra_token_claims=EXTRA_CLAIMS) as provider:
        yield provider


def verify_jwt(provider: OidcProvider, token: str, alg: str) -> tuple[dict, dict]:
    """(header, claims) of `token`, its signature checked against the IdP's JWKS."""
    keys = jwk.JWKSet.from_json(json.dumps(provider.jwks()))
    verified = jwt.JWT(jwt=token, key=keys, algs=[alg], expected_type="JWS")
    return verified.token.jose_header, json.loads(verified.claims)


def test_idp_publishes_one_key_per_algorithm(idp: OidcProvider) -> None:
    assert idp.discovery["issuer"] == idp.issuer
    assert idp.jwks_uri.startswith(idp.issuer)
    keys = idp.jwks()["keys"]
    assert sorted(key["alg"] for key in keys) == ["ES256", "EdDSA", "RS256"]
    assert all(key.get("kid") and "d" not in key for key in keys)  # public halves only
    assert {(key["kty"], key.get("crv")) for key in keys} == {
        ("RSA", None),
        ("EC", "P-256"),
        ("OKP", "Ed25519"),
    }


@pytest.mark.parametrize("alg", sorted(RESOURCES_BY_ALG))
def test_client_credentials_token_is_a_jwt_for_the_resource(idp: OidcProvider, alg: str) -> None:
    resource = RESOURCES_BY_ALG[alg]
    token = idp.client_credentials_token(SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, resource, "mcp:read")
    header, claims = verify_jwt(idp, token, alg)
    assert header["alg"] == alg
    assert header["typ"] == "at+jwt"  # RFC 9068
    assert claims["aud"] == resource
    assert claims["iss"] == idp.issuer
    assert claims["client_id"] == claims["sub"] == SERVICE_CLIENT.client_id
    assert claims["scope"] == "mcp:read"
    assert claims["tenant"] == EXTRA_CLAIMS["tenant"]


def test_client_metadata_adds_claims_to_that_clients_tokens(idp: OidcProvider) -> None:
    resource = RESOURCES_BY_ALG["RS256"]
    admin = idp.client_credentials_token(
        ADMIN_SERVICE_CLIENT.client_id, ADMIN_SERVICE_CLIENT.client_secret, resource, "mcp:write"
    )
    plain = idp.client_credentials_token(SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, resource, "mcp:write")
    _, admin_claims = verify_jwt(idp, admin, "RS256")
    _, plain_claims = verify_jwt(idp, plain, "RS256")
    assert admin_claims["realm_access"] == ADMIN_CLAIMS["realm_access"]
    assert "realm_access" not in plain_claims


def test_unknown_resource_is_refused(idp: OidcProvider) -> None:
    with pytest.raises(IdpError, match="invalid_target"):
        idp.client_credentials_token(SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, "https://nowhere.example/")


@pytest.mark.parametrize("client", [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT], ids=lambda c: c.client_id)
def test_authorization_code_with_pkce_completes(idp: OidcProvider, client) -> None:
    resource = RESOURCES_BY_ALG["ES256"]
    body = idp.authorization_code_flow(client, resource=resource, scope="openid mcp:read")
    header, claims = verify_jwt(idp, body["access_token"], "ES256")
    assert header["alg"] == "ES256"
    assert claims["sub"] == DEFAULT_USER["sub"]
    assert claims["aud"] == resource
    assert claims["client_id"] == client.client_id
    assert claims["scope"] == "mcp:read"
    assert claims["realm_access"] == DEFAULT_USER["claims"]["realm_access"]
    assert claims["tenant"] == EXTRA_CLAIMS["tenant"]
    assert body["id_token"]


def test_authorization_request_without_pkce_is_refused(idp: OidcProvider) -> None:
    params = {
        "response_type": "code",
        "client_id": PUBLIC_CLIENT.client_id,
        "redirect_uri": PUBLIC_CLIENT.redirect_uri,
        "scope": "openid mcp:read",
        "resource": RESOURCES_BY_ALG["RS256"],
        "state": "s",
    }
    with idp.http_client() as client:
        response = client.get(idp.authorization_endpoint, params=params)
    assert response.is_redirect
    location = response.headers["location"]
    assert location.startswith(PUBLIC_CLIENT.redirect_uri)
    assert "error=invalid_request" in location
    assert "code=" not in location


@pytest.fixture
def app() -> EchoUpstream:
    with EchoUpstream() as upstream:
        yield upstream


@pytest.fixture
def authgate_public() -> EchoUpstream:
    """Stands where authgate's public port would be, to see what is routed there."""
    with EchoUpstream() as upstream:
        yield upstream


def test_nginx_example_routes_by_host_and_fails_closed(
    tmp_path: Path, app: EchoUpstream, authgate_public: EchoUpstream
) -> None:
    closed_check_port = free_port()  # authgate is not running: nothing listens here
    nginx = Nginx(
        tmp_path / "nginx",
        check_port=closed_check_port,
        public_port=authgate_public.port,
        app_port=app.port,
    )
    nginx.validate()
    with nginx:
        # A Host the example does not name reaches nothing (444: connection closed).
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{nginx.url}/mcp", headers={"Host": "forged.example.com"})
        # Discovery goes to authgate's public port without a check.
        response = httpx.get(f"{nginx.url}/.well-known/oauth-protected-resource/mcp", headers={"Host": nginx.host})
        assert response.status_code == 200
        assert response.json()["path"] == "/.well-known/oauth-protected-resource/mcp"
        # Protected paths need the check; with authgate down that is a 503, never the app.
        response = httpx.get(f"{nginx.url}/mcp", headers={"Host": nginx.host})
        assert response.status_code == 503
        assert response.json() == {"error": "temporarily_unavailable"}
    assert app.requests == []


def test_envoy_example_validates(tmp_path: Path) -> None:
    # Rendered: the example's TLS listener reads certificate files from /etc/envoy/tls/.
    envoy = Envoy(tmp_path / "envoy", check_port=free_port(), public_port=free_port(), app_port=free_port())
    assert "OK" in envoy.validate()


def test_envoy_example_routes_by_host_and_fails_closed(
    tmp_path: Path, app: EchoUpstream, authgate_public: EchoUpstream
) -> None:
    envoy = Envoy(
        tmp_path / "envoy",
        check_port=free_port(),
        public_port=authgate_public.port,
        app_port=app.port,
    )
    envoy.validate()
    with envoy:
        response = httpx.get(f"{envoy.url}/mcp", headers={"Host": "forged.example.com"})
        assert response.status_code == 404
        response = httpx.get(f"{envoy.url}/oauth2/authorize", headers={"Host": envoy.host})
        assert response.status_code == 200
        assert response.json()["path"] == "/oauth2/authorize"
        response = httpx.get(f"{envoy.url}/mcp", headers={"Host": envoy.host})
        assert response.status_code == 503
    assert app.requests == []


def test_process_that_dies_early_reports_its_log(tmp_path: Path) -> None:
    process = Process("dies", ["sh", "-c", "echo boom >&2; exit 3"], log_dir=tmp_path)
    with pytest.raises(ProcessError, match=r"(?s)exited with 3.*boom"):
        process.start(LinePrefix("READY"), timeout=5)


def test_process_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    process = Process("sleeper", ["sleep", "60"], log_dir=tmp_path)
    with pytest.raises(ProcessError, match="not ready"):
        process.start(TcpPort(free_port()), timeout=0.5)
    assert not process.running
