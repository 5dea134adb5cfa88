"""authgate end to end against a real identity provider: npm `oidc-provider` over https.

The IdP (tests/infra/idp.py) signs RFC 9068 JWT access tokens in RS256, ES256 and
EdDSA, one resource server per algorithm. authgate runs as the real `authgate serve`
process; its policies name only the issuer, so it discovers the JWKS URI itself and
fetches the keys over https, trusting the per-run test CA through `--ca-bundle`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.infra.availability import require_tool
from tests.infra.idp import (
    ADMIN_SERVICE_CLIENT,
    DEFAULT_USER,
    PUBLIC_CLIENT,
    RESOURCES_BY_ALG,
    SERVICE_CLIENT,
    Client,
    OidcProvider,
    install_problem,
)
from tests.infra.tls import TestCA
from tests.support.authgate import Authgate
from tests.support.leaks import MINTED_TOKENS

pytestmark = pytest.mark.integration

ALGS = sorted(RESOURCES_BY_ALG)  # EdDSA, ES256, RS256
HOSTS = {alg: httpx.URL(resource).host for alg, resource in RESOURCES_BY_ALG.items()}
SCOPES = "mcp:read mcp:write"


def remember(*tokens: str | None) -> None:
    """Every token the IdP hands out is checked for in authgate's log (conftest leak check)."""
    MINTED_TOKENS.update(token for token in tokens if token)


def jose_header(token: str) -> dict:
    segment = token.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def service_token(idp: OidcProvider, alg: str, client: Client = SERVICE_CLIENT, scope: str = SCOPES) -> str:
    assert client.client_secret is not None
    token = idp.client_credentials_token(client.client_id, client.client_secret, RESOURCES_BY_ALG[alg], scope)
    remember(token)
    assert jose_header(token)["alg"] == alg  # the IdP really signed with this algorithm
    return token


def policies(issuer: str) -> str:
    """One policy per resource server (one host each), all trusting the IdP, no jwksUri.

    `/mcp/admin` needs the admin role, mapped from the `realm_access.roles` claim; the rest
    of `/mcp` takes any valid token of the resource.
    """
    documents = []
    for alg, resource in RESOURCES_BY_ALG.items():
        documents.append(f"""\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {{name: {alg.lower()}, namespace: default}}
spec:
  resource: {resource}
  issuers:
    - issuer: {issuer}
      requireTyp: at+jwt
  claimRoles:
    - {{claim: realm_access.roles, value: admin, role: admin}}
    - {{claim: realm_access.roles, value: reader, role: reader}}
  rules:
    - {{pathPrefix: /mcp/admin, requireRoles: [admin]}}
    - {{pathPrefix: /mcp}}
""")
    return "---\n".join(documents)


def url(alg: str, path: str = "/mcp") -> str:
    return f"https://{HOSTS[alg]}{path}"


def assert_allowed(response: httpx.Response) -> None:
    assert response.status_code == 200, (response.status_code, response.text, response.headers)
    assert response.content == b""


def assert_denied(response: httpx.Response, status: int, error: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["error"] == error
    assert "x-auth-subject" not in response.headers
    return body


# -- fixtures -------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("oidc-pki"))


@pytest.fixture(scope="module")
def idp(pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    require_tool(install_problem())
    with OidcProvider(tmp_path_factory.mktemp("oidc-idp"), ca=pki) as provider:
        assert provider.issuer.startswith("https://localhost:")
        yield provider


def trusting_args(pki: TestCA) -> tuple[str, ...]:
    """https to the IdP on loopback: allowed by name, trusted through the test CA."""
    return ("--ca-bundle", str(pki.ca_path), "--egress-allow", "127.0.0.1")


@pytest.fixture
def authgate(idp: OidcProvider, pki: TestCA, start_authgate: Callable[..., Authgate]) -> Authgate:
    return start_authgate(policies(idp.issuer), *trusting_args(pki))


# -- tokens from the IdP pass -----------------------------------------------------
@pytest.mark.parametrize("alg", ALGS)
def test_client_credentials_token_is_allowed_with_identity_headers(
    idp: OidcProvider, authgate: Authgate, alg: str
) -> None:
    token = service_token(idp, alg)
    response = authgate.nginx_check(url(alg), "POST", token=token)
    assert_allowed(response)
    assert response.headers["x-auth-subject"] == SERVICE_CLIENT.client_id
    assert response.headers["x-auth-client-id"] == SERVICE_CLIENT.client_id
    assert response.headers["x-auth-scopes"] == SCOPES  # sorted, space separated
    assert response.headers["x-auth-issuer"] == idp.issuer
    assert "x-auth-roles" not in response.headers  # no role claim in a plain service token
    decisions = [d for d in authgate.decisions() if d["decision"] == "allow"]
    assert [(d["policy"], d["subject"], d["client_id"]) for d in decisions] == [
        (f"default/{alg.lower()}", SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_id)
    ]


@pytest.mark.parametrize("alg", ALGS)
def test_authorization_code_token_carries_the_user(idp: OidcProvider, authgate: Authgate, alg: str) -> None:
    body = idp.authorization_code_flow(PUBLIC_CLIENT, resource=RESOURCES_BY_ALG[alg], scope="openid mcp:read")
    remember(body.get("access_token"), body.get("id_token"), body.get("refresh_token"))
    token = body["access_token"]
    assert jose_header(token)["alg"] == alg
    response = authgate.nginx_check(url(alg, "/mcp/tools"), "GET", token=token)
    assert_allowed(response)
    assert response.headers["x-auth-subject"] == DEFAULT_USER["sub"] == "alice"
    assert response.headers["x-auth-client-id"] == PUBLIC_CLIENT.client_id
    assert response.headers["x-auth-scopes"] == "mcp:read"
    assert response.headers["x-auth-roles"] == "reader"  # alice's realm_access.roles


def test_id_token_is_not_an_access_token(idp: OidcProvider, authgate: Authgate) -> None:
    """The ID token of the same flow is signed by the same keys but is no access token."""
    body = idp.authorization_code_flow(PUBLIC_CLIENT, resource=RESOURCES_BY_ALG["RS256"], scope="openid mcp:read")
    remember(body.get("access_token"), body.get("id_token"), body.get("refresh_token"))
    assert_allowed(authgate.nginx_check(url("RS256"), token=body["access_token"]))
    response = authgate.nginx_check(url("RS256"), token=body["id_token"])
    assert_denied(response, 401, "invalid_token")


# -- roles from claims ----------------------------------------------------------------
@pytest.mark.parametrize("alg", ALGS)
def test_claim_roles_give_admin_to_admin_client_only(idp: OidcProvider, authgate: Authgate, alg: str) -> None:
    admin = service_token(idp, alg, ADMIN_SERVICE_CLIENT)
    plain = service_token(idp, alg, SERVICE_CLIENT)

    response = authgate.nginx_check(url(alg, "/mcp/admin/users"), "DELETE", token=admin)
    assert_allowed(response)
    assert response.headers["x-auth-roles"] == "admin"
    assert response.headers["x-auth-subject"] == ADMIN_SERVICE_CLIENT.client_id

    response = authgate.nginx_check(url(alg, "/mcp/admin/users"), "DELETE", token=plain)
    body = assert_denied(response, 403, "access_denied")
    assert "www-authenticate" not in response.headers  # no step-up a client could try
    assert body["error_description"] == "a required role is missing"

    # The plain token is valid: the rest of the resource lets it through.
    assert_allowed(authgate.nginx_check(url(alg, "/mcp"), "POST", token=plain))


# -- audience -------------------------------------------------------------------------
@pytest.mark.parametrize(("token_alg", "policy_alg"), [("RS256", "ES256"), ("ES256", "EdDSA"), ("EdDSA", "RS256")])
def test_token_for_another_resource_is_invalid(
    idp: OidcProvider, authgate: Authgate, token_alg: str, policy_alg: str
) -> None:
    token = service_token(idp, token_alg)
    # Refused first (nothing cached yet), then accepted where it belongs, then refused again
    # (its verified-token cache entry belongs to the other policy).
    for expected in (401, 200, 401):
        target = policy_alg if expected == 401 else token_alg
        response = authgate.nginx_check(url(target), "POST", token=token)
        if expected == 200:
            assert_allowed(response)
            continue
        body = assert_denied(response, 401, "invalid_token")
        assert body["error_description"] == "audience not accepted"
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert 'error="invalid_token"' in challenge
        metadata = f"https://{HOSTS[policy_alg]}/.well-known/oauth-protected-resource/mcp"
        assert f'resource_metadata="{metadata}"' in challenge


# -- key availability -------------------------------------------------------------------
def test_without_the_ca_bundle_keys_are_unavailable_503(
    idp: OidcProvider, start_authgate: Callable[..., Authgate]
) -> None:
    authgate = start_authgate(policies(idp.issuer), "--egress-allow", "127.0.0.1")
    token = service_token(idp, "ES256")
    for _ in range(2):  # the cold fetch, then the failure cooldown: 503 both times, never 401
        response = authgate.nginx_check(url("ES256"), "POST", token=token)
        body = assert_denied(response, 503, "temporarily_unavailable")
        assert "www-authenticate" not in response.headers
        assert body["error"] != "invalid_token"
    state = authgate.admin("GET", "/admin/v1/snapshot")
    assert state.status_code == 200
    issuers = [issuer for policy in state.json()["policies"] for issuer in policy["issuers"]]
    assert issuers
    assert all(not issuer["usable"] for issuer in issuers)
    assert any("CERTIFICATE_VERIFY_FAILED" in (issuer.get("lastError") or "") for issuer in issuers), issuers


def test_keys_stay_cached_while_the_idp_is_down(
    pki: TestCA, tmp_path: Path, start_authgate: Callable[..., Authgate]
) -> None:
    require_tool(install_problem())
    idp = OidcProvider(tmp_path / "idp-down", ca=pki).start()
    try:
        authgate = start_authgate(policies(idp.issuer), *trusting_args(pki))
        # Fresh tokens, minted while the IdP is up; authgate has seen none of them yet.
        warm, *unseen = [service_token(idp, alg) for alg in ("RS256", "ES256", "EdDSA")]
        assert_allowed(authgate.nginx_check(url("RS256"), "POST", token=warm))
    finally:
        idp.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{idp.issuer}/.well-known/openid-configuration", verify=pki.ssl_context(), timeout=2)
    # Not in the verified-token cache: these need the signing keys, which stay cached.
    for alg, token in zip(("ES256", "EdDSA"), unseen, strict=True):
        response = authgate.nginx_check(url(alg), "POST", token=token)
        assert_allowed(response)
        assert response.headers["x-auth-subject"] == SERVICE_CLIENT.client_id
    allowed = [d for d in authgate.decisions() if d["decision"] == "allow"]
    assert [d["policy"] for d in allowed] == ["default/rs256", "default/es256", "default/eddsa"]
