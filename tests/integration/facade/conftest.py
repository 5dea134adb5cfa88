"""Fixtures for the facade tests: the real oidc-provider as the upstream (https, test CA),
and authgate serving a facade policy with sealing keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.infra.availability import require_tool
from tests.infra.idp import OidcProvider, default_clients, install_problem
from tests.infra.tls import TestCA
from tests.support.authgate import Authgate
from tests.support.facade import FacadeHarness, Registered, facade_policy, sealing_keys_file, upstream_client_metadata
from tests.support.leaks import assert_clean_log


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("facade-pki"))


@pytest.fixture(scope="module")
def idp(pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    require_tool(install_problem())
    clients = [*default_clients(), upstream_client_metadata()]
    with OidcProvider(tmp_path_factory.mktemp("facade-idp"), ca=pki, clients=clients) as provider:
        yield provider


@pytest.fixture(scope="module")
def sealing_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sealing_keys_file(tmp_path_factory.mktemp("sealing") / "keys.json")


def trusting_args(pki: TestCA, keys: Path) -> tuple[str, ...]:
    return ("--ca-bundle", str(pki.ca_path), "--egress-allow", "127.0.0.1", "--sealing-keys", str(keys))


@pytest.fixture
def start_facade(
    idp: OidcProvider, pki: TestCA, sealing_keys: Path, start_authgate: Callable[..., Authgate]
) -> Iterator[Callable[..., FacadeHarness]]:
    """start_facade(policy=None, *extra_args) → a FacadeHarness on a fresh authgate."""
    harnesses: list[FacadeHarness] = []

    def start(policy: str | None = None, *args: str, keys: Path | None = None) -> FacadeHarness:
        authgate = start_authgate(policy or facade_policy(idp.issuer), *trusting_args(pki, keys or sealing_keys), *args)
        harness = FacadeHarness(authgate.port, idp)
        harness.authgate = authgate  # type: ignore[attr-defined]
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        harness.close()


# -- one authgate per test module: a start costs seconds, the flows milliseconds ---------------
@pytest.fixture(scope="module")
def start_shared_facade(
    idp: OidcProvider, pki: TestCA, sealing_keys: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., FacadeHarness]]:
    """start_shared_facade(policy=None, *extra_args, keys=None, upstream=None) → a FacadeHarness on
    an authgate that lives as long as the test module (`upstream`: another OidcProvider than `idp`).
    Its log is checked for leaked tokens at the end. Per-replica rate limits apply for the whole
    module: keep a module under 60 authorize and 20 register requests."""
    log_dir = tmp_path_factory.mktemp("facade-authgate")
    started: list[tuple[Authgate, FacadeHarness]] = []

    def start(
        policy: str | None = None, *args: str, keys: Path | None = None, upstream: OidcProvider | None = None
    ) -> FacadeHarness:
        provider = upstream or idp
        authgate = Authgate(
            log_dir,
            policy or facade_policy(provider.issuer),
            [*trusting_args(pki, keys or sealing_keys), *args],
            name=f"authgate{len(started)}",
        )
        harness = FacadeHarness(authgate.port, provider)
        harness.authgate = authgate  # type: ignore[attr-defined]
        started.append((authgate, harness))
        authgate.start()
        return harness

    yield start
    for authgate, harness in started:
        harness.close()
        authgate.stop()
    for authgate, _ in started:
        assert_clean_log(authgate.log(), str(authgate.process.log_path))


@pytest.fixture(scope="module")
def shared_facade(start_shared_facade: Callable[..., FacadeHarness]) -> FacadeHarness:
    """The default facade policy on one authgate for the whole module."""
    return start_shared_facade()


@pytest.fixture(scope="module")
def facade(shared_facade: FacadeHarness) -> FacadeHarness:
    """The module's facade: `shared_facade`, unless the module starts one of its own under this name."""
    return shared_facade


@pytest.fixture(scope="module")
def client(facade: FacadeHarness) -> Registered:
    """A public client with the default registration, on the module's `facade`."""
    return facade.register()
