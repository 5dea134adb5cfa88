"""The operator's faults on a real control plane (#16 reliability), with the installation of
tests/e2e/test_operator.py (three `authgate serve` replicas in network namespaces): the
operator SIGKILLed in the middle of a push, and the kube-apiserver restarted with nothing
changed. Each test is named after its pass criterion."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from tests.infra.cluster import Cluster
from tests.support.installation import REPLICAS, System, eventually, installed_system, policy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with installed_system(cluster, tmp_path_factory.mktemp("operator-faults"), "of") as installation:
        yield installation


def generations(system: System, replicas: int = REPLICAS) -> list[int]:
    return [system.replica_state(i)["generation"] for i in range(replicas)]


def versions(system: System) -> list[tuple[int, str]]:
    return [(s["generation"], s["version"]) for s in (system.replica_state(i) for i in range(REPLICAS))]


def test_operator_killed_mid_push_replicas_keep_the_last_good_snapshot_and_converge_when_it_returns(
    system: System,
) -> None:
    system.apply(policy("before-kill", "before-kill.example.com", system.apps))
    eventually(lambda: system.enforced_everywhere("before-kill.example.com"), what="the first policy everywhere")
    eventually(lambda: len(set(generations(system))) == 1, what="one generation everywhere")
    before = generations(system)[0]

    # The last replica is frozen (SIGSTOP): the operator's push to it hangs, so the operator is
    # killed with its push under way: the others may have the new snapshot, that one not yet.
    frozen = system.replicas[-1]
    assert frozen is not None and frozen.popen is not None
    os.killpg(frozen.popen.pid, signal.SIGSTOP)
    try:
        system.apply(policy("during-kill", "during-kill.example.com", system.apps))
        deadline = time.monotonic() + 15
        while max(generations(system, REPLICAS - 1)) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert system.operator is not None and system.operator.popen is not None
        system.operator.popen.send_signal(signal.SIGKILL)
        system.operator.popen.wait(10)
    finally:
        os.killpg(frozen.popen.pid, signal.SIGCONT)
    reached = sum(g > before for g in generations(system))
    print(f"operator killed mid-push: {reached} of {REPLICAS} replicas had the new snapshot afterwards")

    # Every replica still serves a whole snapshot: the old one or the new one, never none.
    for index in range(REPLICAS):
        assert system.replica_state(index)["generation"] >= before
    assert system.enforced_everywhere("before-kill.example.com"), "a replica lost the last good snapshot"

    system.start_operator()
    eventually(lambda: system.enforced_everywhere("during-kill.example.com"), timeout=60, what="convergence")
    eventually(lambda: len(set(versions(system))) == 1, timeout=30, what="one generation and version everywhere")
    assert generations(system)[0] > before
    assert system.enforced_everywhere("before-kill.example.com")


def test_apiserver_restarted_operator_resumes_without_duplicate_generations(system: System) -> None:
    eventually(lambda: len(set(versions(system))) == 1, timeout=30, what="one snapshot everywhere")
    (settled,) = set(versions(system))
    system.cluster.control_plane.restart_apiserver()
    time.sleep(6)  # several resyncs (every 2 s) with nothing changed
    assert set(versions(system)) == {settled}, "a new generation without a change, or replicas apart"

    system.apply(policy("after-restart-fault", "after-restart-fault.example.com", system.apps))
    eventually(
        lambda: system.enforced_everywhere("after-restart-fault.example.com"), timeout=60, what="the change enforced"
    )
    eventually(lambda: len(set(versions(system))) == 1, timeout=30, what="one snapshot everywhere")
    (after,) = set(versions(system))
    assert after[0] > settled[0] and after[1] != settled[1]
    assert system.operator is not None and system.operator.running
