"""Shared fixtures: signing keys, a fault-injecting issuer, authgate processes (their logs
checked by tests/support/leaks.py), a control plane and network-namespace test hosts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Before anything imports them: pytest then explains a failed assert inside tests/support
# (shared scenarios such as tests/support/proxy_cases.py) and tests/infra as it does in a
# test module.
pytest.register_assert_rewrite("tests.support", "tests.infra")

from tests.infra.cluster import Cluster, session_cluster, stop_session_cluster
from tests.infra.jwks_server import JwksServer
from tests.infra.keys import SigningKey, claims
from tests.support.authgate import Authgate
from tests.support.leaks import MINTED_TOKENS, assert_clean_log


@pytest.fixture(scope="session")
def signing_keys() -> dict[str, SigningKey]:
    return {alg: SigningKey.generate(alg) for alg in ("RS256", "ES256", "EdDSA", "PS256")}


@pytest.fixture(scope="session")
def issuer(signing_keys: dict[str, SigningKey]) -> Iterator[JwksServer]:
    with JwksServer(list(signing_keys.values())) as server:
        yield server


@pytest.fixture
def mint(signing_keys: dict[str, SigningKey], issuer: JwksServer) -> Callable[..., str]:
    """mint(alg="ES256", audience=..., scope=..., **claims_or_header) → a signed token (remembered)."""

    def make(
        alg: str = "ES256",
        audience: str | list[str] = "https://api.example.com/mcp",
        header: dict | None = None,
        key: SigningKey | None = None,
        iss: str | None = None,
        **extra,
    ) -> str:
        body = claims(iss or issuer.issuer, audience, **extra)
        token = (key or signing_keys[alg]).sign(body, **(header or {}))
        MINTED_TOKENS.add(token)
        return token

    return make


@pytest.fixture
def start_authgate(tmp_path: Path) -> Iterator[Callable[..., Authgate]]:
    """start_authgate(policy_yaml, *extra_args) → a running `authgate serve`; its log is
    checked for leaked tokens when the test ends."""
    started: list[Authgate] = []

    def start(policy: str | None, *args: str, ready: bool = True, name: str | None = None) -> Authgate:
        instance = Authgate(tmp_path, policy, list(args), name=name or f"authgate{len(started)}")
        started.append(instance)
        return instance.start(ready=ready)

    yield start
    for instance in started:
        instance.stop()
    for instance in started:
        assert_clean_log(instance.log(), str(instance.process.log_path))


# -- a real control plane (etcd + kube-apiserver) and network-namespace test hosts ----------
@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield session_cluster(tmp_path_factory.getbasetemp() / "cluster")
    stop_session_cluster()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    return cluster.create_namespace(request.node.name)


@pytest.fixture
def netns_host() -> Iterator[Callable[..., object]]:
    """netns_host("auth0") -> a NetnsHost (ag-auth0, 10.200.<i>.2), removed after the test."""
    from tests.infra.netns import NetnsHost, require_netns

    require_netns()
    hosts: list[NetnsHost] = []

    def make(name: str, index: int | None = None) -> NetnsHost:
        hosts.append(NetnsHost(name, index))
        return hosts[-1]

    yield make
    for host in reversed(hosts):
        host.close()
