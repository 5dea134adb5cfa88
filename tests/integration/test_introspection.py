"""Opaque access tokens validated by RFC 7662 introspection at the real oidc-provider."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from tests.infra.availability import require_tool
from tests.infra.idp import EXCHANGE_CLIENT, OPAQUE_RESOURCE, SERVICE_CLIENT, OidcProvider, install_problem
from tests.infra.tls import TestCA
from tests.support.authgate import Authgate
from tests.support.leaks import MINTED_TOKENS, assert_clean_log

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    require_tool(install_problem())
    pki = TestCA(tmp_path_factory.mktemp("introspection-pki"))
    with OidcProvider(tmp_path_factory.mktemp("introspection-idp"), ca=pki) as provider:
        provider.pki = pki
        yield provider


def policy(idp: OidcProvider, endpoint: str) -> str:
    documents = [
        {
            "apiVersion": "authgate.dev/v1alpha1",
            "kind": "OAuthPolicy",
            "metadata": {"name": "opaque"},
            "spec": {
                "resource": OPAQUE_RESOURCE,
                "issuers": [
                    {
                        "issuer": idp.issuer,
                        "introspection": {
                            "endpoint": endpoint,
                            "clientId": EXCHANGE_CLIENT.client_id,
                            "clientSecretRef": {"name": "introspection", "key": "secret"},
                        },
                    }
                ],
                "rules": [{"pathPrefix": "/api", "requireScopes": ["mcp:read"]}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "introspection"},
            "stringData": {"secret": EXCHANGE_CLIENT.client_secret},
        },
    ]
    return "\n---\n".join(json.dumps(d) for d in documents)


@pytest.fixture(scope="module")
def authgate(idp: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authgate]:
    instance = Authgate(
        tmp_path_factory.mktemp("introspection-authgate"),
        policy(idp, idp.introspection_endpoint),
        ["--ca-bundle", str(idp.pki.ca_path), "--egress-allow", "127.0.0.1"],
    ).start()
    yield instance
    instance.stop()
    assert_clean_log(instance.log(), "the introspection service log")


def opaque_token(idp: OidcProvider, scope: str = "mcp:read") -> str:
    token = idp.client_credentials_token(SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, OPAQUE_RESOURCE, scope)
    assert token.count(".") != 2, "the IdP should issue an opaque token for this resource"
    MINTED_TOKENS.add(token)
    return token


def test_an_active_opaque_token_is_allowed(authgate: Authgate, idp: OidcProvider) -> None:
    response = authgate.nginx_check(f"{OPAQUE_RESOURCE}/items", "GET", opaque_token(idp))
    assert response.status_code == 200
    assert response.headers["x-auth-client-id"] == SERVICE_CLIENT.client_id
    assert response.headers["x-auth-scopes"] == "mcp:read"


def test_scopes_are_checked_like_a_jwt(authgate: Authgate, idp: OidcProvider) -> None:
    response = authgate.nginx_check(f"{OPAQUE_RESOURCE}/items", "GET", opaque_token(idp, scope="mcp:write"))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_a_revoked_token_is_refused(authgate: Authgate, idp: OidcProvider) -> None:
    token = opaque_token(idp)
    idp.revoke(token, SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret)
    response = authgate.nginx_check(f"{OPAQUE_RESOURCE}/items", "GET", token)
    assert response.status_code == 401
    assert response.json()["error_description"] == "token is not active"


def test_garbage_is_not_active(authgate: Authgate) -> None:
    response = authgate.nginx_check(f"{OPAQUE_RESOURCE}/items", "GET", "not-a-real-token")
    assert response.status_code == 401


def test_an_unreachable_introspection_endpoint_fails_closed(idp: OidcProvider, start_authgate) -> None:
    broken = start_authgate(
        policy(idp, "https://127.0.0.1:9/introspect"),
        "--ca-bundle",
        str(idp.pki.ca_path),
        "--egress-allow",
        "127.0.0.1",
    )
    response = broken.nginx_check(f"{OPAQUE_RESOURCE}/items", "GET", opaque_token(idp))
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
