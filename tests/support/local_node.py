"""A control plane with a real node (hack/cluster/node.py) for the tests that run pods, and
the in-cluster pieces they deploy: Traefik as the ingress controller (its CRDs and RBAC
from the Traefik module the tools build), the example upstream, the test IdP on the node's
address.

    with NodeCluster(tmp_path) as nc:            # control plane + node + images
        nc.kubectl("get", "nodes")
        nc.deploy_traefik()                        # NodePort TRAEFIK_NODE_PORT on NODE_IP

One node per machine (the bridge and the pod CIDR are the host's): these tests and
`make node-up` do not run at the same time.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from hack.cluster.controlplane import ControlPlane
from hack.cluster.node import IMAGES_SH, NODE_IP, Node, image_name, node_problem
from tests.infra.idp import OidcProvider
from tests.infra.tls import TestCA
from tests.infra.tools import expected_path, require_built, tool_version, tools_dir

NODE_TOOLS = (
    "etcd",
    "kube-apiserver",
    "kubectl",
    "kubelet",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "coredns",
    "pause",
    "traefik",
    "helm",
)
TRAEFIK_NAMESPACE = "traefik"
TRAEFIK_NODE_PORT = 30443
ECHO_SCRIPT = Path(__file__).with_name("echo_pod.py")

T = TypeVar("T")


def eventually(check: Callable[[], T], *, timeout: float = 120.0, interval: float = 0.5, what: str = "") -> T:
    """The first truthy result of `check()` within `timeout` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (subprocess.SubprocessError, OSError, ValueError, KeyError, httpx.HTTPError) as error:
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"not in {timeout:.0f}s: {what or check} (last: {last!r})")


def traefik_module_file(relative: str) -> Path:
    """A file of the Traefik module the tools build (its CRDs, its RBAC)."""
    version = tool_version("traefik")
    path = tools_dir() / ".go" / "mod" / "github.com" / "traefik" / "traefik" / f"v3@{version}" / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run `make tools` (the Traefik build downloads its module)")
    return path


class NodeCluster:
    """A fresh control plane (with_node) and its node in `directory`, plus the images."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.control_plane = ControlPlane(
            directory / "cluster",
            binaries={name: expected_path(name) for name in ("etcd", "kube-apiserver", "kubectl")},
            with_node=True,
        )
        self.node = Node(self.control_plane)
        self.kubeconfig = self.control_plane.kubeconfig
        self.timings: dict[str, float] = {}

    @staticmethod
    def require() -> None:
        """Skip locally (fail under CI=true) when a tool or root is missing."""
        from tests.infra.availability import require_tool

        for name in NODE_TOOLS:
            require_built(name)
        require_tool(node_problem())

    def start(self) -> NodeCluster:
        began = time.monotonic()
        self.control_plane.start()
        self.node.start()
        self.timings["node start (control plane + node + CoreDNS)"] = time.monotonic() - began
        began = time.monotonic()
        self.node.import_images("authgate", "traefik", "base")
        self.timings["images (build if changed, import)"] = time.monotonic() - began
        return self

    def stop(self) -> None:
        self.node.stop()
        self.control_plane.stop()

    def __enter__(self) -> NodeCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- kubectl ---------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0):
        return self.control_plane.kubectl(*args, input=input, check=check, timeout=timeout)

    def apply(self, documents: list[dict[str, Any]] | str, *, server_side: bool = False) -> str:
        text = documents if isinstance(documents, str) else yaml.safe_dump_all(documents, sort_keys=False)
        args = ["apply", "-f", "-"] + (["--server-side", "--force-conflicts"] if server_side else [])
        return self.kubectl(*args, input=text).stdout

    def get_json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def namespace(self, name: str, *, labels: dict[str, str] | None = None) -> str:
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}])
        return name

    def deployment_available(self, namespace: str, name: str) -> bool:
        deployment = self.get_json("deployment", name, "-n", namespace)
        status = deployment.get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return (
            conditions.get("Available") == "True"
            and status.get("observedGeneration") == deployment["metadata"]["generation"]
            and status.get("updatedReplicas") == deployment["spec"]["replicas"]
            and status.get("readyReplicas") == deployment["spec"]["replicas"]
            and status.get("replicas") == deployment["spec"]["replicas"]
        )

    def diagnostics(self, namespace: str) -> str:
        """Pods, events and the node's logs: for an assertion message."""
        pods = self.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        events = self.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
        tails = "\n".join(self.node.log_tail(name, 10) for name in ("kubelet", "containerd"))
        return f"{pods}\n{events[-4000:]}\n{tails}"

    # --- in-cluster pieces -----------------------------------------------------------

    def deploy_traefik(self) -> None:
        """Traefik with its Kubernetes CRD provider, as a pod on the pod network (never
        hostNetwork), reachable from the host at NODE_IP:TRAEFIK_NODE_PORT."""
        self.apply(
            traefik_module_file(
                "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml"
            ).read_text(),
            server_side=True,
        )
        self.namespace(TRAEFIK_NAMESPACE, labels={"authgate.dev/gateway": "true"})
        rbac = [
            d
            for d in yaml.safe_load_all(
                traefik_module_file("docs/content/reference/dynamic-configuration/kubernetes-crd-rbac.yml").read_text()
            )
            if d
        ]
        for document in rbac:
            for subject in document.get("subjects", []):
                subject["namespace"] = TRAEFIK_NAMESPACE
        labels = {"app.kubernetes.io/name": "traefik"}
        service_account = rbac[-1]["subjects"][0]["name"]
        self.apply(
            [
                *rbac,
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": service_account, "namespace": TRAEFIK_NAMESPACE},
                },
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "traefik", "namespace": TRAEFIK_NAMESPACE, "labels": labels},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": labels},
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {
                                "serviceAccountName": service_account,
                                "securityContext": restricted_pod_security(),
                                "containers": [
                                    {
                                        "name": "traefik",
                                        "image": image_name("traefik"),
                                        "imagePullPolicy": "Never",
                                        "args": [
                                            "--entryPoints.websecure.address=:8443",
                                            "--entryPoints.traefik.address=:9000",
                                            "--ping=true",
                                            "--providers.kubernetescrd=true",
                                            "--global.checkNewVersion=false",
                                            "--global.sendAnonymousUsage=false",
                                            "--log.level=WARN",
                                        ],
                                        "ports": [{"name": "websecure", "containerPort": 8443}],
                                        "readinessProbe": {
                                            "httpGet": {"path": "/ping", "port": 9000},
                                            "periodSeconds": 2,
                                        },
                                        "securityContext": restricted_container_security(),
                                    }
                                ],
                            },
                        },
                    },
                },
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "traefik", "namespace": TRAEFIK_NAMESPACE},
                    "spec": {
                        "type": "NodePort",
                        "selector": labels,
                        "ports": [
                            {"name": "websecure", "port": 443, "targetPort": 8443, "nodePort": TRAEFIK_NODE_PORT}
                        ],
                    },
                },
            ]
        )

    def deploy_echo(self, namespace: str, name: str) -> None:
        """The example upstream: tests/support/echo_pod.py on the local base image, port 8000."""
        labels = {"app.kubernetes.io/name": name}
        self.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"{name}-script", "namespace": namespace},
                    "data": {"echo.py": ECHO_SCRIPT.read_text()},
                },
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": labels},
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {
                                "automountServiceAccountToken": False,
                                "securityContext": restricted_pod_security(),
                                "containers": [
                                    {
                                        "name": "echo",
                                        "image": image_name("base"),
                                        "imagePullPolicy": "Never",
                                        "command": ["python3", "/app/echo.py", "8000"],
                                        "ports": [{"name": "http", "containerPort": 8000}],
                                        "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 2},
                                        "securityContext": restricted_container_security(),
                                        "volumeMounts": [{"name": "script", "mountPath": "/app"}],
                                    }
                                ],
                                "volumes": [{"name": "script", "configMap": {"name": f"{name}-script"}}],
                            },
                        },
                    },
                },
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"selector": labels, "ports": [{"name": "http", "port": 8000, "targetPort": 8000}]},
                },
            ]
        )

    def tls_secret(self, namespace: str, name: str, cert: Path, key: Path) -> None:
        self.kubectl("create", "secret", "tls", name, "-n", namespace, f"--cert={cert}", f"--key={key}")


def restricted_pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def node_idp(directory: Path, ca: TestCA) -> OidcProvider:
    """The test IdP over https on the node's address (https://10.244.0.1:<port>), where the
    pods reach it through their default route; its certificate names that address."""
    idp = OidcProvider(directory, ca=ca)
    idp.issuer = f"https://{NODE_IP}:{idp.port}"
    idp.config["issuer"] = idp.issuer
    idp.config["host"] = NODE_IP
    server = ca.issue_server_cert("idp-node", dns_names=[], ip_addresses=[NODE_IP])
    idp.config["tls"] = {"cert": str(server.cert), "key": str(server.key)}
    return idp


__all__ = ["IMAGES_SH", "NODE_IP", "NodeCluster", "eventually", "node_idp"]
