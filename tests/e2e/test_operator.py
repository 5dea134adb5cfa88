"""The operator on a real control plane (etcd + kube-apiserver built from Go modules), with
three `authgate serve` replicas as test hosts in network namespaces (the apiserver refuses
loopback addresses in EndpointSlices; no kubelet runs pods here, so the test makes the
Service's EndpointSlice itself, as the endpoint controller would).

The operator runs as a local process authenticated as its ServiceAccount, bound by the RBAC
the Helm chart renders: exactly the permissions a real install grants. Replicas verify the
operator's projected-style token (audience `authgate-admin`) with TokenReview.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from tests.infra.cluster import Cluster
from tests.support.installation import REPLICAS, System, eventually, installed_system, policy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with installed_system(cluster, tmp_path_factory.mktemp("operator-e2e"), "op") as installation:
        yield installation


# -- tests, in the order a user meets them -----------------------------------------------
def test_applied_policy_is_enforced_by_every_replica_and_reported_ready(system: System) -> None:
    system.apply(policy("first", "first.example.com", system.apps))
    eventually(lambda: system.enforced_everywhere("first.example.com"), what="all replicas enforcing")
    eventually(lambda: system.status("first").get("syncedReplicas") == f"{REPLICAS}/{REPLICAS}", what="3/3")
    ready = eventually(
        lambda: system.condition("first", "Ready")["status"] == "True" and system.condition("first", "Ready")
    )
    assert ready["reason"] == "Ready"
    printed = system.cluster.kubectl("get", "oap", "-n", system.apps).stdout
    assert "first" in printed and "True" in printed and f"{REPLICAS}/{REPLICAS}" in printed


def test_replicas_verify_the_operator_token_and_refuse_others(system: System) -> None:
    other = system.cluster.create_token(system.namespace, system.service_sa, [system.audience], "10m")
    response = httpx.put(
        f"http://{system.hosts[0].address}:8081/admin/v1/snapshot",
        headers={"Authorization": f"Bearer {other}"},
        content=b"{}",
        timeout=10,
        trust_env=False,
    )
    assert response.status_code == 401  # right audience, wrong ServiceAccount
    wrong_audience = system.cluster.create_token(system.namespace, system.operator_sa, ["something-else"], "10m")
    response = httpx.get(
        f"http://{system.hosts[0].address}:8081/admin/v1/snapshot",
        headers={"Authorization": f"Bearer {wrong_audience}"},
        timeout=10,
        trust_env=False,
    )
    assert response.status_code == 401


def test_an_edit_reaches_every_replica(system: System) -> None:
    system.apply(policy("first", "edited.example.com", system.apps))
    eventually(lambda: system.enforced_everywhere("edited.example.com"), what="the edit everywhere")
    assert system.unknown_everywhere("first.example.com")
    eventually(lambda: system.status("first")["observedGeneration"] == 2, what="observedGeneration 2")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"resource": "https://x.example.com/mcp", "issuers": [{"issuer": "https://i"}], "bogus": 1},
            'unknown field "spec.bogus"',
        ),
        (
            {"resource": "https://x.example.com/mcp", "issuers": [{"issuer": "https://i", "algorithms": ["HS256"]}]},
            "spec.issuers[0].algorithms[0]",
        ),
        (
            {"resource": "https://x.example.com/mcp#frag", "issuers": [{"issuer": "https://i"}]},
            "resource must not contain a fragment",
        ),
        (
            {"resource": "ftp://x.example.com/mcp", "issuers": [{"issuer": "https://i"}]},
            "resource must be an absolute http or https URL",
        ),
        (
            {
                "resource": "https://x.example.com/mcp",
                "issuers": [{"issuer": "https://i"}],
                "rules": [{"pathPrefix": "/mcp", "anonymous": True, "requireScopes": ["a"]}],
            },
            "an anonymous rule cannot require scopes or roles",
        ),
        (
            {
                "resource": "https://x.example.com/mcp",
                "issuers": [{"issuer": "https://i"}],
                "scopeRoles": [{"scope": "a", "role": "r"}, {"scope": "a", "role": "s"}],
            },
            "each scope may be mapped once",
        ),
        (
            {
                "resource": "https://x.example.com/mcp",
                "issuers": [{"issuer": "https://i"}],
                "tokenExchange": {"tokenEndpoint": "https://i/t", "clientId": "c"},
            },
            "exactly one of clientSecretRef and clientCertificateSecretRef",
        ),
    ],
)
def test_the_apiserver_refuses_what_the_schema_and_cel_rules_forbid(system: System, spec: dict, message: str) -> None:
    obj = {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": "refused", "namespace": system.apps},
        "spec": spec,
    }
    result = system.apply(obj, check=False)
    assert message in result, result


def test_a_semantically_bad_policy_is_not_ready_and_the_others_are_still_served(system: System) -> None:
    shadowed = policy(
        "shadowed",
        "shadowed.example.com",
        system.apps,
        rules=[{"pathPrefix": "/mcp"}, {"pathPrefix": "/mcp/admin", "requireRoles": ["admin"]}],
    )
    system.apply(shadowed)
    accepted = eventually(
        lambda: (
            system.condition("shadowed", "Accepted")["status"] == "False" and system.condition("shadowed", "Accepted")
        ),
        what="Accepted=False",
    )
    assert accepted["reason"] == "Invalid" and "spec.rules[1]: shadowed by spec.rules[0]" in accepted["message"]
    assert system.condition("shadowed", "Ready")["status"] == "False"
    assert system.unknown_everywhere("shadowed.example.com")
    assert system.enforced_everywhere("edited.example.com")
    events = system.cluster.kubectl("get", "events", "-n", system.apps, "-o", "json").stdout
    assert any(
        e["involvedObject"]["name"] == "shadowed" and e["type"] == "Warning" for e in json.loads(events)["items"]
    )


def test_a_host_belongs_to_the_namespace_that_claimed_it_first(system: System) -> None:
    other = system.cluster.create_namespace("other-team")
    system.apply(policy("thief", "edited.example.com", other))
    condition = eventually(
        lambda: (
            system.condition("thief", "Accepted", other)["status"] == "False"
            and system.condition("thief", "Accepted", other)
        ),
        what="Conflict",
    )
    assert condition["reason"] == "Conflict"
    assert system.enforced_everywhere("edited.example.com")


def test_a_rotated_secret_is_pushed_again(system: System) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "exchange", "namespace": system.apps},
        "stringData": {"secret": "one"},
    }
    exchange = {
        "tokenEndpoint": "https://idp.example.com/token",
        "clientId": "gw",
        "clientSecretRef": {"name": "exchange", "key": "secret"},
    }
    system.apply(secret, policy("exchanging", "exchange.example.com", system.apps, tokenExchange=exchange))
    eventually(lambda: system.enforced_everywhere("exchange.example.com"), what="policy with a Secret")
    before = system.replica_state(0)["version"]
    secret["stringData"]["secret"] = "two"
    system.apply(secret)
    eventually(
        lambda: all(system.replica_state(i)["version"] != before for i in range(REPLICAS)),
        what="a new version on every replica",
    )


def test_the_snapshot_is_stored_for_replicas_that_start_while_the_operator_is_down(system: System) -> None:
    secret = system.cluster.get_json("secret", system.snapshot_ref.split("/")[1], "-n", system.namespace)
    assert int(secret["metadata"]["annotations"]["authgate.dev/generation"]) == system.replica_state(0)["generation"]
    assert "snapshot.json.gz" in secret["data"]
    sealing = system.cluster.get_json("secret", system.sealing_ref.split("/")[1], "-n", system.namespace)
    assert "keys.json" in sealing["data"]


def test_a_deleted_policy_is_no_longer_enforced(system: System) -> None:
    system.cluster.kubectl("delete", "oauthpolicy", "exchanging", "-n", system.apps)
    eventually(lambda: system.unknown_everywhere("exchange.example.com"), what="deletion everywhere")


def test_a_restarted_replica_gets_the_snapshot_again(system: System) -> None:
    before = system.replica_state(1)["generation"]
    system.replicas[1].stop()
    system.start_replica(1)
    eventually(lambda: system.enforced_everywhere("edited.example.com"), what="the restarted replica enforcing")
    assert system.replica_state(1)["generation"] == before


def test_a_restarted_operator_keeps_generations_monotonic(system: System) -> None:
    before = system.replica_state(0)["generation"]
    system.operator.stop()
    system.start_operator()
    system.apply(policy("after-restart", "restart.example.com", system.apps))
    eventually(lambda: system.enforced_everywhere("restart.example.com"), what="enforced after operator restart")
    assert system.replica_state(0)["generation"] > before
    assert system.enforced_everywhere("edited.example.com")  # nothing lost in the restart


def test_the_operator_and_replicas_recover_from_an_apiserver_restart(system: System) -> None:
    system.cluster.control_plane.restart_apiserver()
    system.apply(policy("after-apiserver-restart", "apiserver-restart.example.com", system.apps))
    eventually(
        lambda: system.enforced_everywhere("apiserver-restart.example.com"),
        timeout=60,
        what="a change applied after the apiserver restart, enforced",
    )
    eventually(
        lambda: system.condition("after-apiserver-restart", "Ready")["status"] == "True",
        timeout=30,
        what="its status written after the restart",
    )
    assert system.operator.running


def test_the_operator_fails_loudly_without_its_permissions(system: System) -> None:
    nobody = "no-permissions"
    system.cluster.create_service_account(system.namespace, nobody)
    kubeconfig = system.dir / "nobody-kubeconfig"
    kubeconfig.write_text(system._kubeconfig(system.cluster.create_token(system.namespace, nobody, [], "10m")))
    process = system.start_operator(kubeconfig, name="operator-without-rbac")
    try:
        eventually(
            lambda: "forbidden" in process.read_log().lower() or "403" in process.read_log(),
            timeout=30,
            what="a loud permission error",
        )
    finally:
        process.stop()
