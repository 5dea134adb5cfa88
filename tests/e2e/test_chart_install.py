"""`helm install`, `helm upgrade` and `helm uninstall` of charts/authgate against the real
kube-apiserver (no kubelet here: the objects are checked, pods do not run).

The upgrade path is the documented one: `kubectl apply -f crds/` first, because Helm
installs crds/ once and never upgrades it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from tests.infra.cluster import Cluster
from tests.infra.tools import require_built
from tests.integration.test_chart import Chart

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "oauthpolicies.authgate.dev.yaml"


@pytest.fixture(scope="module")
def chart() -> Chart:
    return Chart(require_built("helm"))


def objects(cluster: Cluster, kind: str, namespace: str) -> list[dict]:
    return cluster.get_json(kind, "-n", namespace, "-l", "app.kubernetes.io/instance=authgate")["items"]


def assert_restricted(pod_spec: dict) -> None:
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod_spec.get("automountServiceAccountToken") is False
    for container in pod_spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]


def test_install_upgrade_uninstall(cluster: Cluster, namespace: str, chart: Chart) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    installed = chart.install(cluster.kubeconfig, namespace)
    # The namespace enforces the restricted Pod Security Standard: the apiserver warns on
    # workloads whose pods it would refuse.
    assert "violate PodSecurity" not in installed.stderr, installed.stderr
    crd = cluster.get_json("crd", "oauthpolicies.authgate.dev")
    assert crd["spec"]["names"]["shortNames"] == ["oap"]

    deployments = {d["metadata"]["name"]: d for d in objects(cluster, "deployments", namespace)}
    assert set(deployments) == {"authgate", "authgate-operator"}
    for deployment in deployments.values():
        assert_restricted(deployment["spec"]["template"]["spec"])
    assert deployments["authgate-operator"]["spec"]["strategy"]["type"] == "Recreate"
    services = {s["metadata"]["name"]: s for s in objects(cluster, "services", namespace)}
    assert {"authgate-public", "authgate-check", "authgate-grpc", "authgate-admin", "authgate-metrics"} <= set(services)
    policies = objects(cluster, "networkpolicies", namespace)
    assert policies, "NetworkPolicies are installed"
    assert cluster.get_json("clusterrole", "authgate-operator-policies")["rules"]
    assert not [s for s in objects(cluster, "secrets", namespace) if s["metadata"]["name"].endswith("sealing-keys")]

    # Upgrade, the documented way: CRDs first (Helm never upgrades crds/), then the release.
    changed = yaml.safe_load(CRD.read_text())
    marker = copy.deepcopy(changed)
    marker["metadata"].setdefault("annotations", {})["authgate.dev/test-upgrade"] = "applied"
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(marker))
    chart.upgrade(cluster.kubeconfig, namespace, set_values=["authService.replicaCount=3"])
    assert objects(cluster, "deployments", namespace)
    service = next(d for d in objects(cluster, "deployments", namespace) if d["metadata"]["name"] == "authgate")
    assert service["spec"]["replicas"] == 3
    history = json.loads(
        chart.run("history", "authgate", "-n", namespace, "--kubeconfig", str(cluster.kubeconfig), "-o", "json").stdout
    )
    assert [entry["revision"] for entry in history] == [1, 2]
    annotations = cluster.get_json("crd", "oauthpolicies.authgate.dev")["metadata"].get("annotations", {})
    assert annotations.get("authgate.dev/test-upgrade") == "applied"

    chart.uninstall(cluster.kubeconfig, namespace)
    assert objects(cluster, "deployments", namespace) == []
    assert cluster.get_json("crd", "oauthpolicies.authgate.dev")  # CRDs (and so policies) outlive the release


def test_values_schema_refuses_a_typo_at_install_time(cluster: Cluster, namespace: str, chart: Chart) -> None:
    result = chart.install(cluster.kubeconfig, namespace, set_values=["authService.replicaz=2"], check=False)
    assert result.returncode != 0
    assert "replicaz" in result.stderr
    assert objects(cluster, "deployments", namespace) == []
