"""Token exchange (RFC 8693) in the request path, against the real oidc-provider with its
token-exchange grant: the allow carries a token issued for the downstream audience, never
the caller's; client_secret_basic and mutual TLS (RFC 8705); cached, single-flight, and
fail closed when the exchange endpoint answers garbage or errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.infra.availability import require_tool
from tests.infra.idp import (
    EXCHANGE_AUDIENCE,
    EXCHANGE_CLIENT,
    MTLS_EXCHANGE_CLIENT,
    MTLS_EXCHANGE_CN,
    RESOURCES_BY_ALG,
    OidcProvider,
    install_problem,
)
from tests.infra.tls import TestCA
from tests.support.authgate import Authgate
from tests.support.leaks import MINTED_TOKENS
from tests.support.proxy_cases import (
    basic_exchange,
    claims,
    downstream_token,
    mtls_exchange,
    service_token,
)

pytestmark = pytest.mark.integration

RESOURCE = RESOURCES_BY_ALG["RS256"]  # https://mcp.example.com/mcp
MTLS_RESOURCE = RESOURCES_BY_ALG["ES256"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("exchange-pki"))


@pytest.fixture(scope="module")
def idp(pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    require_tool(install_problem())
    with OidcProvider(tmp_path_factory.mktemp("exchange-idp"), ca=pki, mtls=True, test_controls=True) as provider:
        yield provider


def policies(idp: OidcProvider, pki: TestCA) -> str:
    client = pki.issue_client_cert("exchange-client", common_name=MTLS_EXCHANGE_CN)
    exchange, exchange_secret = basic_exchange(idp)
    mtls, mtls_secret = mtls_exchange(idp, client.cert.read_text(), client.key.read_text())
    documents = [
        {
            "apiVersion": "authgate.dev/v1alpha1",
            "kind": "OAuthPolicy",
            "metadata": {"name": "basic"},
            "spec": {"resource": RESOURCE, "issuers": [{"issuer": idp.issuer}], "tokenExchange": exchange},
        },
        {
            "apiVersion": "authgate.dev/v1alpha1",
            "kind": "OAuthPolicy",
            "metadata": {"name": "mtls"},
            "spec": {"resource": MTLS_RESOURCE, "issuers": [{"issuer": idp.issuer}], "tokenExchange": mtls},
        },
        exchange_secret,
        mtls_secret,
    ]
    return "\n---\n".join(json.dumps(d) for d in documents)


@pytest.fixture(scope="module")
def authgate(idp: OidcProvider, pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authgate]:
    from tests.support.leaks import assert_clean_log

    instance = Authgate(
        tmp_path_factory.mktemp("exchange-authgate"),
        policies(idp, pki),
        ["--ca-bundle", str(pki.ca_path), "--egress-allow", "127.0.0.1"],
    ).start()
    yield instance
    instance.stop()
    assert_clean_log(instance.log(), "the exchange service log")


@pytest.fixture
def caller_token(idp: OidcProvider) -> Callable[[str], str]:
    def make(resource: str = RESOURCE) -> str:
        return service_token(idp, resource)

    return make


def test_the_upstream_gets_a_token_for_the_downstream_audience(authgate: Authgate, caller_token) -> None:
    token = caller_token()
    response = authgate.nginx_check(f"{RESOURCE}/tools", "POST", token)
    assert response.status_code == 200
    exchanged = downstream_token(response.headers["authorization"])
    assert exchanged != token
    body = claims(exchanged)
    assert body["aud"] == EXCHANGE_AUDIENCE
    assert body["sub"] == claims(token)["sub"]
    assert body["act"] == {"sub": EXCHANGE_CLIENT.client_id}
    assert body["scope"] == "downstream:read"
    assert response.headers["x-auth-subject"] == claims(token)["sub"]  # identity of the caller, as before


def test_exchanged_tokens_are_cached_per_subject_token(authgate: Authgate, idp: OidcProvider, caller_token) -> None:
    token = caller_token()
    first = downstream_token(authgate.nginx_check(RESOURCE, "GET", token).headers["authorization"])
    count = idp.exchange_count()
    assert downstream_token(authgate.nginx_check(RESOURCE, "GET", token).headers["authorization"]) == first
    assert idp.exchange_count() == count  # served from the cache
    other = downstream_token(authgate.nginx_check(RESOURCE, "GET", caller_token()).headers["authorization"])
    assert other != first and idp.exchange_count() == count + 1


def test_concurrent_checks_share_one_exchange(authgate: Authgate, idp: OidcProvider, caller_token) -> None:
    token = caller_token()
    before = idp.exchange_count()

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            headers = {"X-Original-URL": RESOURCE, "X-Original-Method": "GET", "Authorization": f"Bearer {token}"}
            responses = await asyncio.gather(*(client.get(authgate.check_url(), headers=headers) for _ in range(50)))
            return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [200] * 50
    assert idp.exchange_count() == before + 1


def test_mutual_tls_client_authentication(authgate: Authgate, caller_token) -> None:
    response = authgate.nginx_check(f"{MTLS_RESOURCE}/x", "GET", caller_token(MTLS_RESOURCE))
    assert response.status_code == 200
    body = claims(downstream_token(response.headers["authorization"]))
    assert body["aud"] == EXCHANGE_AUDIENCE and body["act"] == {"sub": MTLS_EXCHANGE_CLIENT.client_id}


@pytest.mark.parametrize("mode", ["garbage", "error500"])
def test_a_broken_exchange_endpoint_fails_closed(
    authgate: Authgate, idp: OidcProvider, caller_token, mode: str
) -> None:
    idp.set_exchange_mode(mode)
    try:
        response = authgate.nginx_check(RESOURCE, "GET", caller_token())
    finally:
        idp.set_exchange_mode("ok")
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert "authorization" not in response.headers  # never a pass-through of the caller's token
    line = authgate.decisions()[-1]
    assert line["reason"] == "exchange_failed"


def test_a_slow_exchange_endpoint_times_out_into_503(
    idp: OidcProvider, pki: TestCA, start_authgate, caller_token
) -> None:
    slow = start_authgate(
        policies(idp, pki), "--ca-bundle", str(pki.ca_path), "--egress-allow", "127.0.0.1", "--egress-timeout", "0.5"
    )
    idp.set_exchange_mode("ok", delay_ms=2000)
    try:
        response = slow.nginx_check(RESOURCE, "GET", caller_token())
    finally:
        idp.set_exchange_mode("ok")
    assert response.status_code == 503
    assert "timeout" in response.json()["error_description"]


def test_an_unreachable_exchange_endpoint_fails_closed(
    idp: OidcProvider, pki: TestCA, start_authgate, caller_token
) -> None:
    text = policies(idp, pki).replace(idp.token_endpoint, "https://127.0.0.1:9/token")
    down = start_authgate(text, "--ca-bundle", str(pki.ca_path), "--egress-allow", "127.0.0.1")
    response = down.nginx_check(RESOURCE, "GET", caller_token())
    assert response.status_code == 503 and "authorization" not in response.headers


def test_the_python_api_for_mcp_servers(idp: OidcProvider, pki: TestCA, caller_token) -> None:
    from authgate.errors import ExchangeFailed
    from authgate.outbound.egress import EgressPolicy
    from authgate.outbound.exchange import exchange_token

    policy = EgressPolicy(allow=("127.0.0.1",), ca_bundle=str(pki.ca_path))
    result = asyncio.run(
        exchange_token(
            caller_token(),
            token_endpoint=idp.token_endpoint,
            client_id=EXCHANGE_CLIENT.client_id,
            client_secret=EXCHANGE_CLIENT.client_secret,
            audience=EXCHANGE_AUDIENCE,
            egress_policy=policy,
        )
    )
    MINTED_TOKENS.add(result.access_token)
    assert claims(result.access_token)["aud"] == EXCHANGE_AUDIENCE
    assert result.access_token not in repr(result)  # never printed by accident
    with pytest.raises(ExchangeFailed) as refused:
        asyncio.run(
            exchange_token(
                "not-a-token",
                token_endpoint=idp.token_endpoint,
                client_id=EXCHANGE_CLIENT.client_id,
                client_secret=EXCHANGE_CLIENT.client_secret,
                audience=EXCHANGE_AUDIENCE,
                egress_policy=policy,
            )
        )
    assert refused.value.status == 401  # invalid_grant: the subject token is bad
