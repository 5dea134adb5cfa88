"""Shared fixtures: signing keys, a fault-injecting issuer, authgate processes, and the
guard that fails a test whenever a token it minted shows up in a captured log."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Before anything imports them: pytest then explains a failed assert inside tests/support
# (shared scenarios such as tests/support/proxy_cases.py) as it does in a test module.
pytest.register_assert_rewrite("tests.support")

from tests.support.authgate import Authgate
from tests.support.cluster import Cluster, session_cluster, stop_session_cluster
from tests.support.jwks_server import JwksServer
from tests.support.keys import SigningKey, claims

IN_CI = os.environ.get("CI") == "true"
MINTED_TOKENS: set[str] = set()


def require_tool(problem: str | None) -> None:
    """Skip locally when a tool is missing; under CI=true a missing tool fails the test."""
    if problem is None:
        return
    if IN_CI:
        pytest.fail(problem)
    pytest.skip(problem)


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


def assert_no_token_in(text: str, where: str) -> None:
    for token in MINTED_TOKENS:
        signature = token.rsplit(".", 1)[-1]
        assert token not in text and (len(signature) < 16 or signature not in text), f"a token leaked into {where}"


def assert_clean_log(text: str, where: str) -> None:
    """An authgate log: no token, and no traceback (bad input is answered, never crashed on)."""
    assert_no_token_in(text, where)
    assert "Traceback (most recent call last)" not in text, f"a traceback in {where}"


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


LOCAL_EGRESS = ("--insecure-http", "--egress-allow", "127.0.0.1")


def policy_yaml(
    issuer_url: str,
    resource: str = "https://api.example.com/mcp",
    extra: str = "",
    issuer_extra: str = "",
    name: str = "api",
    namespace: str = "default",
) -> str:
    """A policy document; `extra` is appended under spec (indent 2), `issuer_extra` under the issuer (indent 6)."""
    return f"""\
apiVersion: authgate.dev/v1alpha1
kind: OAuthPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  resource: {resource}
  issuers:
    - issuer: {issuer_url}
{issuer_extra}
{extra}
"""


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
    from tests.support.netns import NetnsHost, require_netns

    require_netns()
    hosts: list[NetnsHost] = []

    def make(name: str, index: int | None = None) -> NetnsHost:
        hosts.append(NetnsHost(name, index))
        return hosts[-1]

    yield make
    for host in reversed(hosts):
        host.close()
