"""Token exchange (RFC 8693) through the real proxies, and client-certificate rotation
under load.

One oidc-provider (token-exchange grant, RFC 8705 mTLS listener), one `authgate serve`
and one echo app serve the module. The examples run as shipped (tests/infra only moves
their ports): nginx `auth_request` (examples/nginx/nginx.conf), Envoy ext_authz over HTTP
(envoy-http.yaml) and over gRPC (envoy-grpc.yaml). Through each of them the app sees
exactly one Authorization header, the exchanged token (aud = the downstream audience,
act.sub = authgate's exchange client), never the caller's; the identity headers still
arrive; a broken exchange endpoint is a 503 to the client and nothing at the app.

Rotation: a second authgate in Kubernetes mode (no --policy, snapshots pushed to the
admin API) with a policy whose exchange authenticates by client certificate. Checks run
concurrently, each with a fresh caller token (so every one is a real exchange, slowed
down at the IdP so that some are in flight at the swap), while a snapshot with a newly
issued certificate is pushed: every check succeeds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tests.infra.availability import require_tool
from tests.infra.idp import (
    EXCHANGE_AUDIENCE,
    EXCHANGE_CLIENT,
    MTLS_EXCHANGE_CLIENT,
    MTLS_EXCHANGE_CN,
    RESOURCES_BY_ALG,
    SERVICE_CLIENT,
    OidcProvider,
    install_problem,
)
from tests.infra.tls import TestCA
from tests.support.authgate import Authgate
from tests.support.edge import HOST, IDENTITY_HEADERS, RESOURCE, Edge, values
from tests.support.leaks import assert_clean_log
from tests.support.proxy_cases import (
    basic_exchange,
    claims,
    downstream_token,
    mtls_exchange,
    service_token,
)

pytestmark = pytest.mark.integration

assert RESOURCES_BY_ALG["RS256"] == RESOURCE  # the IdP issues RS256 tokens for the edge's resource
MTLS_RESOURCE = RESOURCES_BY_ALG["ES256"]  # https://es256.example.com/mcp
PROXIES = ["nginx", "envoy-http", "envoy-grpc"]
through_every_proxy = pytest.mark.parametrize("proxy", PROXIES, indirect=True)


# -- helpers ---------------------------------------------------------------------------------
def oauth_policy(name: str, resource: str, issuer: str, exchange: dict) -> dict:
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "resource": resource,
            "issuers": [{"issuer": issuer}],
            "scopeRoles": [{"scope": "mcp:read", "role": "reader"}],
            "tokenExchange": exchange,
        },
    }


def basic_exchange_policy(idp: OidcProvider) -> tuple[dict, dict]:
    """The policy on mcp.example.com (client_secret_basic to the IdP) and its Secret."""
    exchange, credentials = basic_exchange(idp)
    return oauth_policy("mcp", RESOURCE, idp.issuer, exchange), credentials


# -- fixtures: started once per module -------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("exchange-proxies-pki"))


@pytest.fixture(scope="module")
def idp(pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    require_tool(install_problem())
    with OidcProvider(
        tmp_path_factory.mktemp("exchange-proxies-idp"), ca=pki, mtls=True, test_controls=True
    ) as provider:
        yield provider


@pytest.fixture(scope="module")
def authgate(idp: OidcProvider, pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authgate]:
    policy, credentials = basic_exchange_policy(idp)
    instance = Authgate(
        tmp_path_factory.mktemp("exchange-proxies-authgate"),
        "\n---\n".join(json.dumps(document) for document in (policy, credentials)),
        ["--ca-bundle", str(pki.ca_path), "--egress-allow", "127.0.0.1"],
    ).start()
    yield instance
    instance.stop()
    assert_clean_log(instance.log(), str(instance.process.log_path))


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:  # each check waits for an exchange at the IdP
    with httpx.Client(trust_env=False, timeout=15) as http:
        yield http


@pytest.fixture(scope="module")
def caller_token(idp: OidcProvider) -> Callable[[str], str]:
    """A fresh caller token per call: every check is a new exchange (nothing cached)."""

    def make(resource: str = RESOURCE) -> str:
        return service_token(idp, resource)

    return make


# -- through the proxies ---------------------------------------------------------------------
@through_every_proxy
def test_the_app_gets_only_the_exchanged_token(
    edge: Edge, idp: OidcProvider, caller_token: Callable[[str], str]
) -> None:
    token = caller_token()
    response = edge.request("/mcp/tools?cursor=2", method="POST", token=token, body=b"{}")

    assert response.status_code == 200, response.text
    echoed = edge.reached_app()
    assert response.json() == echoed
    sent = values(echoed, "authorization")
    assert len(sent) == 1, f"the app saw {len(sent)} Authorization headers"
    exchanged = downstream_token(sent[0])
    assert exchanged != token
    assert not any(token in value for _, value in echoed["raw_headers"]), "the caller's token reached the app"
    body, caller = claims(exchanged), claims(token)
    assert body["aud"] == EXCHANGE_AUDIENCE
    assert body["act"] == {"sub": EXCHANGE_CLIENT.client_id}
    assert body["sub"] == caller["sub"]
    assert body["scope"] == "downstream:read"
    # The identity headers describe the caller, as without an exchange.
    expected = {
        "x-auth-subject": caller["sub"],
        "x-auth-roles": "reader",
        "x-auth-scopes": "mcp:read",
        "x-auth-issuer": idp.issuer,
        "x-auth-client-id": SERVICE_CLIENT.client_id,
    }
    assert set(expected) == set(IDENTITY_HEADERS)
    for name, value in expected.items():
        assert values(echoed, name) == [value], name
    assert (echoed["method"], echoed["path"], echoed["query"]) == ("POST", "/mcp/tools", "cursor=2")
    decision = edge.decision(response)
    assert (decision["reason"], decision["host"]) == ("allowed", HOST)


@through_every_proxy
def test_a_client_sent_second_authorization_never_reaches_the_app(
    edge: Edge, caller_token: Callable[[str], str]
) -> None:
    token, other = caller_token(), caller_token()
    response = edge.request("/mcp", token=token, headers=[("Authorization", f"Bearer {other}")])
    # Two Authorization headers: refused by the proxy or authgate, or one exchanged token.
    if response.status_code == 200:
        echoed = edge.reached_app()
        sent = values(echoed, "authorization")
        assert len(sent) == 1
        exchanged = downstream_token(sent[0])
        assert exchanged not in (token, other)
        assert claims(exchanged)["aud"] == EXCHANGE_AUDIENCE
        assert not any(t in v for _, v in echoed["raw_headers"] for t in (token, other))
    else:
        assert response.status_code in (400, 401), response.text
        assert edge.new_app_requests() == []


@through_every_proxy
def test_a_broken_exchange_endpoint_is_a_503_and_reaches_nothing(
    edge: Edge, idp: OidcProvider, authgate: Authgate, caller_token: Callable[[str], str]
) -> None:
    token = caller_token()  # fresh: nothing cached for it
    idp.set_exchange_mode("error500")
    try:
        response = edge.request("/mcp/tools", method="POST", token=token, body=b"{}")
    finally:
        idp.set_exchange_mode("ok")
    assert response.status_code == 503, response.text
    # Envoy over HTTP turns any 5xx of the authorization service into status_on_error
    # (503, empty body); nginx and Envoy over gRPC pass authgate's JSON on.
    if getattr(edge.proxy, "dialect", None) != "http":
        assert response.json()["error"] == "temporarily_unavailable"
    assert "authorization" not in response.headers and "www-authenticate" not in response.headers
    assert edge.new_app_requests() == []
    # authgate's own answer (the exchange failed), not an unreachable or slow authgate.
    last = authgate.decisions()[-1]
    assert (last["status"], last["reason"]) == (503, "exchange_failed")

    # The endpoint is back: the next request is exchanged again (a failure is not cached).
    response = edge.request("/mcp/tools", method="POST", token=token, body=b"{}")
    assert response.status_code == 200, response.text
    assert claims(downstream_token(values(edge.reached_app(), "authorization")[0]))["aud"] == EXCHANGE_AUDIENCE


# -- client-certificate rotation while checks flow -------------------------------------------
def snapshot(generation: int, idp: OidcProvider, certificate_pem: str, key_pem: str) -> dict:
    mtls, mtls_secret = mtls_exchange(idp, certificate_pem, key_pem)
    basic, basic_secret = basic_exchange_policy(idp)
    return {
        "formatVersion": 1,
        "generation": generation,
        "policies": [basic, oauth_policy("mtls", MTLS_RESOURCE, idp.issuer, mtls)],
        "secrets": [basic_secret, mtls_secret],
    }


WORKERS = 6
EXCHANGE_DELAY = 0.15  # seconds the IdP holds every exchange during the rotation


@pytest.fixture(scope="module")
def kube_authgate(pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authgate]:
    """authgate as the operator runs it: no policy file, snapshots pushed to the admin API."""
    instance = Authgate(
        tmp_path_factory.mktemp("exchange-rotation-authgate"),
        None,
        ["--ca-bundle", str(pki.ca_path), "--egress-allow", "127.0.0.1"],
        name="authgate-kube",
    ).start(ready=False)
    yield instance
    instance.stop()
    assert_clean_log(instance.log(), str(instance.process.log_path))


def test_rotating_the_client_certificate_drops_no_check(
    kube_authgate: Authgate, idp: OidcProvider, pki: TestCA, caller_token: Callable[[str], str]
) -> None:
    first = pki.issue_client_cert("exchange-client-1", common_name=MTLS_EXCHANGE_CN)
    second = pki.issue_client_cert("exchange-client-2", common_name=MTLS_EXCHANGE_CN)
    assert first.cert.read_text() != second.cert.read_text()

    pushed = kube_authgate.admin(
        "PUT", "/admin/v1/snapshot", snapshot(1, idp, first.cert.read_text(), first.key.read_text())
    )
    assert pushed.status_code == 200, pushed.text
    assert httpx.get(f"http://127.0.0.1:{kube_authgate.admin_port}/readyz", timeout=5).status_code == 200

    results: list[tuple[float, float, int, str]] = []  # (started, finished, status, authorization)
    lock = threading.Lock()
    stop = threading.Event()

    def check_loop(index: int) -> None:
        # Staggered, so that exchanges start all the time and several are always in flight.
        time.sleep(index * EXCHANGE_DELAY / WORKERS)
        with httpx.Client(trust_env=False, timeout=15) as http:
            while not stop.is_set():
                token = caller_token(MTLS_RESOURCE)
                started = time.monotonic()
                response = http.get(
                    kube_authgate.check_url("nginx"),
                    headers={
                        "X-Original-URL": f"{MTLS_RESOURCE}/tools",
                        "X-Original-Method": "POST",
                        "Authorization": f"Bearer {token}",
                    },
                )
                with lock:
                    results.append(
                        (started, time.monotonic(), response.status_code, response.headers.get("authorization", ""))
                    )

    def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    # Each exchange takes at least EXCHANGE_DELAY at the IdP, so some are in flight when
    # the new certificate arrives, and some start right after it.
    idp.set_exchange_mode("ok", delay_ms=int(EXCHANGE_DELAY * 1000))
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            futures = [pool.submit(check_loop, index) for index in range(WORKERS)]
            try:
                wait_for(lambda: len(results) >= 2 * WORKERS, "checks before the rotation")
                rotated_at = time.monotonic()
                pushed = kube_authgate.admin(
                    "PUT", "/admin/v1/snapshot", snapshot(2, idp, second.cert.read_text(), second.key.read_text())
                )
                rotated_done = time.monotonic()
                assert pushed.status_code == 200, pushed.text
                assert pushed.json()["changed"] is True
                wait_for(
                    lambda: sum(1 for r in list(results) if r[0] > rotated_done) >= 3 * WORKERS,
                    "checks after the rotation",
                )
            finally:
                stop.set()
                for future in futures:
                    future.result(timeout=30)
    finally:
        idp.set_exchange_mode("ok", delay_ms=0)

    statuses = [status for _, _, status, _ in results]
    assert statuses == [200] * len(results), f"failed checks during rotation: {statuses}"
    for _, _, _, authorization in results:
        body = claims(downstream_token(authorization))
        assert body["aud"] == EXCHANGE_AUDIENCE and body["act"] == {"sub": MTLS_EXCHANGE_CLIENT.client_id}
    spanning = [r for r in results if r[0] < rotated_done and r[1] > rotated_at]
    before = [r for r in results if r[1] <= rotated_at]
    after = [r for r in results if r[0] >= rotated_done]
    assert before and after, (len(before), len(after))
    assert spanning, "no check was in flight during the push; the test proves less than it claims"
    failed = [d for d in kube_authgate.decisions() if d["decision"] != "allow"]
    assert failed == []

    # The pushed certificate really is the one presented: one the IdP does not accept
    # (another CN) fails the exchange, closed.
    stranger = pki.issue_client_cert("exchange-client-stranger", common_name="not-authgate")
    pushed = kube_authgate.admin(
        "PUT", "/admin/v1/snapshot", snapshot(3, idp, stranger.cert.read_text(), stranger.key.read_text())
    )
    assert pushed.status_code == 200, pushed.text
    response = kube_authgate.nginx_check(f"{MTLS_RESOURCE}/tools", "POST", caller_token(MTLS_RESOURCE))
    assert response.status_code == 503 and "authorization" not in response.headers
    assert kube_authgate.decisions()[-1]["reason"] == "exchange_failed"
