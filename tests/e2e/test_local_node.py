"""authgate installed the way a platform team installs it, on a real node: the image built
from the Dockerfile (hack/images/build.sh), `helm install` of charts/authgate running real
pods in a namespace enforcing the restricted Pod Security Standard, the operator pod
pushing to the service pods it finds through real EndpointSlices, and Traefik running as a
pod in the cluster calling the check Service (ForwardAuth, examples/kubernetes/traefik/).

The node (hack/cluster/node.py): containerd v2 + runc, bridge CNI, kubelet, kube-proxy,
kube-scheduler, kube-controller-manager, CoreDNS. Root only (CI runs as root); a missing
tool skips locally and fails under CI=true.

The bridge CNI does not enforce NetworkPolicy: the chart's NetworkPolicies are installed
here but only checked statically (tests/integration/test_chart.py), not proven to block.

Traffic: the host reaches Traefik's NodePort on the node's bridge address (10.244.0.1)
and the pods' own addresses (10.244.0.0/24); the pods reach the test IdP on 10.244.0.1.
Nothing else.
"""

from __future__ import annotations

import asyncio
import collections
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from tests.infra.idp import RESOURCES_BY_ALG, SERVICE_CLIENT, OidcProvider
from tests.infra.tls import TestCA
from tests.infra.tools import require_built
from tests.integration.test_chart import Chart
from tests.support.local_node import (
    APPS,
    AVAILABLE_WITHIN,
    HOST,
    NODE_IP,
    TRAEFIK_NODE_PORT,
    NodeCluster,
    apply_policy,
    eventually,
    install_authgate,
    node_idp,
    route_through_traefik,
    running_node,
    service_pods,
)
from tests.support.local_node import AUTHGATE_NAMESPACE as NAMESPACE

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RESOURCE = RESOURCES_BY_ALG["RS256"]  # https://mcp.example.com/mcp
REPLICAS = 2
LOAD_RATE = 100  # checks per second of the Python load while a pod is deleted
LOAD_SECONDS = 50.0  # wrk's run, across the rolling upgrade
ROLLOUT_MIN_SECONDS = 30.0

figures: dict[str, object] = {}  # printed at the end of the module (the report)


@pytest.fixture(scope="module")
def chart() -> Chart:
    return Chart(require_built("helm"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    with running_node(tmp_path_factory.mktemp("node"), figures) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("node-pki"))


@pytest.fixture(scope="module")
def idp(node: NodeCluster, ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    from tests.infra.availability import require_tool
    from tests.infra.idp import install_problem

    require_tool(install_problem())
    with node_idp(tmp_path_factory.mktemp("node-idp"), ca) as provider:
        yield provider


@pytest.fixture(scope="module")
def values(node: NodeCluster, idp: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("node-values") / "values.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": "authgate", "tag": "dev", "pullPolicy": "Never"},
                "authService": {"replicaCount": REPLICAS},
                # Exactly the IdP's address, and its CA: no wide CIDR, no insecureHttp.
                "egress": {"allow": [f"{NODE_IP}/32"]},
                "caBundle": {"configMap": {"name": "idp-ca", "key": "ca.crt"}},
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def installed(node: NodeCluster, chart: Chart, ca: TestCA, values: Path) -> NodeCluster:
    seconds = install_authgate(node, chart, values, ca)
    figures["helm install -> both Deployments Available"] = f"{seconds:.1f}s"
    return node


@pytest.fixture(scope="module")
def policy(installed: NodeCluster, idp: OidcProvider) -> dict:
    installed.namespace(APPS)
    document = yaml.safe_load((ROOT / "examples" / "policies" / "mcp-demo.yaml").read_text())
    document["spec"]["issuers"][0]["issuer"] = idp.issuer
    began = time.monotonic()
    status = apply_policy(installed, [document], REPLICAS)
    figures["kubectl apply policy -> Ready, Synced 2/2"] = f"{time.monotonic() - began:.1f}s"
    return status


@pytest.fixture(scope="module")
def ingress(installed: NodeCluster, policy: dict, ca: TestCA) -> NodeCluster:
    """Traefik in the cluster with the project's example manifests, and the example upstream."""
    node = installed
    node.deploy_echo(APPS, "mcp-server")
    route_through_traefik(node, ca)
    node.wait_available(APPS, "mcp-server")
    eventually(lambda: get(ca, "/mcp").status_code == 401, timeout=60, what="Traefik routes to authgate")
    return node


def get(ca: TestCA, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """GET https://mcp.example.com<path> through Traefik's NodePort (SNI and Host set)."""
    with httpx.Client(verify=ca.ssl_context(), timeout=10, trust_env=False) as client:
        return client.get(
            f"https://{NODE_IP}:{TRAEFIK_NODE_PORT}{path}",
            headers={"Host": HOST, **(headers or {})},
            extensions={"sni_hostname": HOST},
        )


def token(idp: OidcProvider, scope: str = "mcp:read") -> str:
    return idp.client_credentials_token(
        SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, resource=RESOURCE, scope=scope
    )


# -- tests, in the order a user meets them ------------------------------------------------


def test_helm_install_runs_restricted_pods_with_passing_probes(installed: NodeCluster) -> None:
    pods = service_pods(installed)
    assert len(pods) == REPLICAS
    operator = installed.get_json("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=operator")["items"]
    for pod in [*pods, *operator]:
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"].startswith("10.244.0.")
        for container in pod["status"]["containerStatuses"]:
            assert container["ready"] is True
            if container["restartCount"]:
                name = pod["metadata"]["name"]
                previous = installed.kubectl("logs", "-n", NAMESPACE, name, "--previous", "--tail=40", check=False)
                raise AssertionError(f"{name} restarted: {container['lastState']}\n{previous.stdout[-4000:]}")
        for container in pod["spec"]["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["image"] == "authgate:dev"
    labels = installed.get_json("namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The probes the kubelet runs are the chart's (readiness: a snapshot is loaded).
    probe = pods[0]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz"


def test_restricted_namespace_refuses_a_privileged_pod(installed: NodeCluster) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "x", "image": "authgate:dev", "securityContext": {"privileged": True}}]},
    }
    result = installed.kubectl("apply", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0 and "violates PodSecurity" in result.stderr


def test_applied_policy_is_ready_and_synced_by_the_operator_pod(installed: NodeCluster, policy: dict) -> None:
    printed = installed.kubectl("get", "oap", "-n", APPS).stdout
    assert "mcp-demo" in printed and "True" in printed and f"{REPLICAS}/{REPLICAS}" in printed
    # The operator found the service pods through the EndpointSlices the controller made.
    slices = installed.get_json("endpointslices", "-n", NAMESPACE, "-l", "kubernetes.io/service-name=authgate-admin")[
        "items"
    ]
    addresses = {a for s in slices for e in s.get("endpoints", []) for a in e["addresses"]}
    assert addresses == {p["status"]["podIP"] for p in service_pods(installed)}


def test_no_token_through_traefik_is_401_with_the_rfc9728_challenge(ingress: NodeCluster, ca: TestCA) -> None:
    response = get(ca, "/mcp")
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="https://{HOST}/.well-known/oauth-protected-resource/mcp"' in challenge


def test_discovery_is_public_through_traefik(ingress: NodeCluster, ca: TestCA) -> None:
    response = get(ca, "/.well-known/oauth-protected-resource/mcp")
    assert response.status_code == 200
    assert response.json()["resource"] == RESOURCE


def test_valid_token_reaches_the_upstream_pod_with_identity_headers(
    ingress: NodeCluster, ca: TestCA, idp: OidcProvider
) -> None:
    response = get(ca, "/mcp", {"Authorization": f"Bearer {token(idp)}"})
    assert response.status_code == 200, response.text
    echoed = {k.lower(): v for k, v in response.json()["headers"].items()}
    assert echoed["x-auth-subject"] == SERVICE_CLIENT.client_id
    assert echoed["x-auth-issuer"] == idp.issuer
    assert "reader" in echoed["x-auth-roles"]


def test_forged_identity_headers_are_dropped(ingress: NodeCluster, ca: TestCA, idp: OidcProvider) -> None:
    forged = {"X-Auth-Subject": "mallory", "X-Auth-Roles": "admin", "X_Auth_Email": "mallory@example.com"}
    response = get(ca, "/mcp", {"Authorization": f"Bearer {token(idp)}", **forged})
    assert response.status_code == 200
    echoed = {k.lower(): v for k, v in response.json()["headers"].items()}
    assert echoed["x-auth-subject"] == SERVICE_CLIENT.client_id
    assert echoed["x-auth-roles"] != "admin"
    assert "x_auth_email" not in echoed and "mallory@example.com" not in echoed.values()


class CheckLoad:
    """Checks through Traefik at a steady rate from a thread: every answer's status, every
    connection error, counted. Valid token and no token alternate (200 and 401 expected)."""

    def __init__(self, ca: TestCA, bearer: str, rate: int, workers: int = 32) -> None:
        self.ca, self.bearer, self.rate, self.workers = ca, bearer, rate, workers
        self.statuses: collections.Counter[tuple[bool, int]] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.started = self.stopped = 0.0

    def start(self) -> CheckLoad:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        self.stopped = time.monotonic()

    @property
    def failed(self) -> int:
        wrong = sum(n for (authorized, status), n in self.statuses.items() if status != (200 if authorized else 401))
        return wrong + sum(self.errors.values())

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.workers, max_keepalive_connections=self.workers)
        async with httpx.AsyncClient(verify=self.ca.ssl_context(), limits=limits, timeout=10, trust_env=False) as c:
            await asyncio.gather(*(self._worker(c, i) for i in range(self.workers)))

    async def _worker(self, client: httpx.AsyncClient, index: int) -> None:
        interval = self.workers / self.rate
        next_at = time.monotonic() + index * interval / self.workers
        counter = index
        while not self._stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            counter += 1
            authorized = counter % 2 == 0
            headers = {"Host": HOST, **({"Authorization": f"Bearer {self.bearer}"} if authorized else {})}
            self.sent += 1
            try:
                response = await client.get(
                    f"https://{NODE_IP}:{TRAEFIK_NODE_PORT}/mcp", headers=headers, extensions={"sni_hostname": HOST}
                )
                self.statuses[(authorized, response.status_code)] += 1
            except httpx.HTTPError as error:
                self.errors[type(error).__name__] += 1

    def summary(self) -> str:
        seconds = self.stopped - self.started
        return (
            f"{self.sent} checks in {seconds:.1f}s ({self.sent / seconds:.0f}/s), failed {self.failed}; "
            f"statuses {dict(self.statuses)}, errors {dict(self.errors)}"
        )


WRK_SCRIPT = """
wrk.headers["Host"] = "%(host)s"
wrk.headers["Authorization"] = "Bearer %(token)s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "seconds": %%.2f, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def test_helm_upgrade_rolls_the_service_pods_under_load_without_a_failed_check(
    ingress: NodeCluster, chart: Chart, values: Path, ca: TestCA, idp: OidcProvider, tmp_path: Path
) -> None:
    """wrk (C, one thread, 16 connections: a Python client cannot keep 200/s here) sends
    checks with a valid token through Traefik for the whole rollout: every answer must be
    200 (wrk counts any other status, and every connect/read/write error and timeout)."""
    from tests.infra.availability import require_tool

    wrk = shutil.which("wrk")
    require_tool(None if wrk else "wrk not found: apt-get install wrk (hack/install-system-packages.sh)")
    script = tmp_path / "checks.lua"
    script.write_text(WRK_SCRIPT % {"host": HOST, "token": token(idp)})
    script.chmod(0o600)
    before = {p["metadata"]["name"] for p in service_pods(ingress)}
    url = f"https://{NODE_IP}:{TRAEFIK_NODE_PORT}/mcp"
    seconds = int(LOAD_SECONDS)
    load = subprocess.Popen(
        [wrk, "-t1", "-c16", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(3)
        began = time.monotonic()
        chart.upgrade(ingress.kubeconfig, NAMESPACE, values, set_values=["authService.podAnnotations.rollout=second"])
        eventually(
            lambda: (
                ingress.deployment_available(NAMESPACE, "authgate")
                and not before & {p["metadata"]["name"] for p in service_pods(ingress)}
                and len(service_pods(ingress)) == REPLICAS
            ),
            timeout=LOAD_SECONDS - 5,
            what="the rollout, while wrk runs",
        )
        rollout = time.monotonic() - began
        output, _ = load.communicate(timeout=seconds + 30)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    result = json.loads(output.strip().splitlines()[-1])
    failed = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    rate = result["requests"] / result["seconds"]
    summary = f"rollout {rollout:.1f}s; {result['requests']} checks in {result['seconds']:.1f}s ({rate:.0f}/s)"
    summary += f"; failed {failed}"
    figures["rolling upgrade"] = f"{summary} {result}"
    assert result["seconds"] >= ROLLOUT_MIN_SECONDS
    assert rate >= 200, summary
    assert failed == 0, f"{summary}: {result}"


def test_a_deleted_service_pod_is_replaced_and_ready_with_the_snapshot(
    ingress: NodeCluster, ca: TestCA, idp: OidcProvider, policy: dict
) -> None:
    victim = service_pods(ingress)[0]["metadata"]["name"]
    load = CheckLoad(ca, token(idp), LOAD_RATE).start()
    try:
        ingress.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--wait=false")
        eventually(
            lambda: (
                victim not in {p["metadata"]["name"] for p in service_pods(ingress)}
                and ingress.deployment_available(NAMESPACE, "authgate")
            ),
            timeout=180,
            what="a replacement pod Ready",
        )
    finally:
        load.stop()
    assert load.failed == 0, load.summary()
    # Ready means a snapshot is loaded (the readiness probe): the bootstrap Secret's at
    # start, then the operator's push; every replica serves the policy's generation.
    generations = set()
    for pod in service_pods(ingress):
        ready = httpx.get(f"http://{pod['status']['podIP']}:8081/readyz", timeout=5, trust_env=False).json()
        generations.add(ready["generation"])
    assert len(generations) == 1
    eventually(
        lambda: (
            ingress.get_json("oap", "mcp-demo", "-n", APPS)["status"].get("syncedReplicas") == f"{REPLICAS}/{REPLICAS}"
        ),
        timeout=60,
        what="Synced 2/2 again",
    )


def test_helm_uninstall_leaves_only_the_documented_secrets_and_a_reinstall_keeps_the_sealing_keys(
    ingress: NodeCluster, chart: Chart, values: Path
) -> None:
    sealing = ingress.get_json("secret", "authgate-sealing-keys", "-n", NAMESPACE)["data"]["keys.json"]
    chart.uninstall(ingress.kubeconfig, NAMESPACE)
    eventually(lambda: not service_pods(ingress), timeout=120, what="the service pods gone")
    left = {
        f"{o['kind']}/{o['metadata']['name']}"
        for o in ingress.get_json("all,secrets,configmaps,serviceaccounts,roles,rolebindings", "-n", NAMESPACE)["items"]
    }
    # Documented leftovers (docs/install.md): the operator's snapshot and sealing-key
    # Secrets (never silently regenerated: old clients' sealed values stay valid), the
    # CA ConfigMap we made, and what Kubernetes itself keeps in every namespace.
    expected = {
        "Secret/authgate-snapshot",
        "Secret/authgate-sealing-keys",
        "ConfigMap/idp-ca",
        "ConfigMap/kube-root-ca.crt",
        "ServiceAccount/default",
    }
    assert left == expected
    chart.install(ingress.kubeconfig, NAMESPACE, values)
    eventually(lambda: ingress.deployment_available(NAMESPACE, "authgate"), timeout=AVAILABLE_WITHIN, what="reinstall")
    assert ingress.get_json("secret", "authgate-sealing-keys", "-n", NAMESPACE)["data"]["keys.json"] == sealing
