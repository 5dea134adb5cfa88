"""A control plane with a real node (hack/cluster/node.py) for the tests that run pods, and
the in-cluster pieces they deploy: Traefik as the ingress controller (its CRDs and RBAC
from the Traefik module the tools build), the example upstream, the test IdP (on the node's
address, or as a pod) and the example MCP server as a pod.

    with NodeCluster(tmp_path) as nc:            # control plane + node + images
        nc.kubectl("get", "nodes")
        nc.deploy_traefik()                        # NodePort TRAEFIK_NODE_PORT on NODE_IP
    seconds = install_authgate(nc, chart, values, ca)   # helm install, both Deployments Available
    route_through_traefik(nc, ca)                  # Traefik + examples/kubernetes/traefik/
    with PodIdp(nc, tmp_path / "idp", ca, clients=...) as idp:   # hack/idp/server.mjs as a pod
        idp.issuer                                 # https://idp.idp.svc.cluster.local:8443

One node per machine (the bridge and the pod CIDR are the host's): these tests and
`make node-up` do not run at the same time.
"""

from __future__ import annotations

import contextlib
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
ROOT = Path(__file__).resolve().parents[2]
AUTHGATE_NAMESPACE = "authgate"  # examples/kubernetes/ assume the release `authgate` in `authgate`
APPS = "apps"  # where the examples' policy, upstream and Traefik routes live
HOST = "mcp.example.com"  # the examples' public host, served by Traefik
AVAILABLE_WITHIN = 240.0
DEFAULT_IMAGES = ("authgate", "traefik", "base")
IDP_NAMESPACE = "idp"
IDP_HOST = f"idp.{IDP_NAMESPACE}.svc.cluster.local"  # the IdP pod's Service, by CoreDNS
IDP_PORT = 8443

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

    def __init__(self, directory: Path, images: tuple[str, ...] = DEFAULT_IMAGES) -> None:
        self.directory = directory
        self.images = images
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
        self.node.import_images(*self.images)
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
        script = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-script", "namespace": namespace},
            "data": {"echo.py": ECHO_SCRIPT.read_text()},
        }
        container = {
            "image": image_name("base"),
            "command": ["python3", "/app/echo.py", "8000"],
            "volumeMounts": [{"name": "script", "mountPath": "/app"}],
        }
        volumes = [{"name": "script", "configMap": {"name": f"{name}-script"}}]
        self.apply([script, *workload(namespace, name, container, 8000, volumes)])

    def deploy_mcp_server(self, namespace: str, name: str, *, allowed_hosts: tuple[str, ...]) -> None:
        """examples/mcp-server/server.py in its image (hack/images/mcp-server.Containerfile),
        port 8000; `allowed_hosts`: the Host values the proxy forwards, each with any port."""
        args = ["--host", "0.0.0.0", "--port", "8000"]
        for host in allowed_hosts:
            args += ["--allowed-host", host, "--allowed-host", f"{host}:*"]
        container = {"image": image_name("mcp-server"), "args": args}
        self.apply(workload(namespace, name, container, 8000))

    def wait_available(self, namespace: str, name: str, timeout: float = 120.0) -> None:
        """The Deployment Available within `timeout`, else AssertionError with pods, events, logs."""
        try:
            eventually(lambda: self.deployment_available(namespace, name), timeout=timeout, what=name)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.diagnostics(namespace)}") from None

    def tls_secret(self, namespace: str, name: str, cert: Path, key: Path) -> None:
        self.kubectl("create", "secret", "tls", name, "-n", namespace, f"--cert={cert}", f"--key={key}")


def workload(
    namespace: str, name: str, container: dict[str, Any], port: int, volumes: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """A one-replica Deployment of `container` (image, command/args, mounts) under the
    restricted Pod Security Standard, ready when `port` accepts, and its Service on `port`."""
    labels = {"app.kubernetes.io/name": name}
    spec = {
        "name": name,
        "imagePullPolicy": "Never",
        "ports": [{"name": "serve", "containerPort": port}],
        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 2},
        "securityContext": restricted_container_security(),
        **container,
    }
    return [
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
                        "containers": [spec],
                        "volumes": volumes or [],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": labels, "ports": [{"name": "serve", "port": port, "targetPort": port}]},
        },
    ]


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


class PodIdp(OidcProvider):
    """The test IdP (hack/idp/server.mjs) as a pod in the `idp` namespace, from the test-idp
    image (hack/images/test-idp.Containerfile), behind the Service `idp` on port 8443:
    issuer `https://idp.idp.svc.cluster.local:8443`, a certificate for that name from `ca`.

    Pods resolve the name through CoreDNS and reach the Service's ClusterIP (`cluster_ip`:
    what authgate's `egress.allow` names exactly). The host, which has no cluster DNS, maps
    the name to the pod's address (`resolve`, for Python clients and Chromium's resolver
    rules), on the node's pod network. The config, the private signing keys, the client
    secrets and the TLS key are a Secret mounted at /etc/idp; the methods of OidcProvider
    (tokens, discovery) work from the host unchanged."""

    def __init__(self, cluster: NodeCluster, work_dir: Path, ca: TestCA, **options: Any) -> None:
        super().__init__(work_dir, ca=ca, port=IDP_PORT, **options)
        self.cluster = cluster
        self.issuer = f"https://{IDP_HOST}:{IDP_PORT}"
        self.pod_ip = ""
        self.cluster_ip = ""
        server = ca.issue_server_cert("idp-pod", dns_names=[IDP_HOST], ip_addresses=[])
        self._tls = (server.cert.read_text(), server.key.read_text())
        self._jwks = Path(self.config["jwksPath"]).read_text()  # the private signing keys
        self.config.update(
            issuer=self.issuer,
            host="0.0.0.0",
            port=IDP_PORT,
            jwksPath="/etc/idp/jwks.json",
            tls={"cert": "/etc/idp/tls.crt", "key": "/etc/idp/tls.key"},
        )

    @property
    def resolve(self) -> dict[str, str]:
        return {IDP_HOST: self.pod_ip}

    def start(self, timeout: float = 120.0) -> PodIdp:
        cluster = self.cluster
        cluster.namespace(IDP_NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "restricted"})
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "idp", "namespace": IDP_NAMESPACE},
            "stringData": {
                "config.json": json.dumps(self.config),
                "jwks.json": self._jwks,
                "tls.crt": self._tls[0],
                "tls.key": self._tls[1],
            },
        }
        container = {
            "image": image_name("test-idp"),
            "args": ["/etc/idp/config.json"],
            "volumeMounts": [{"name": "config", "mountPath": "/etc/idp", "readOnly": True}],
        }
        volumes = [{"name": "config", "secret": {"secretName": "idp", "defaultMode": 0o444}}]
        cluster.apply([secret, *workload(IDP_NAMESPACE, "idp", container, IDP_PORT, volumes)])
        cluster.wait_available(IDP_NAMESPACE, "idp", timeout=timeout)
        pods = cluster.get_json("pods", "-n", IDP_NAMESPACE, "-l", "app.kubernetes.io/name=idp")["items"]
        self.pod_ip = next(p["status"]["podIP"] for p in pods if p["metadata"].get("deletionTimestamp") is None)
        self.cluster_ip = cluster.get_json("service", "idp", "-n", IDP_NAMESPACE)["spec"]["clusterIP"]

        def discovered() -> dict[str, Any]:
            with self.http_client() as client:
                response = client.get(f"{self.issuer}/.well-known/openid-configuration")
                response.raise_for_status()
                return response.json()

        self.discovery = eventually(discovered, timeout=30, what="the IdP pod's discovery document")
        return self

    def stop(self) -> None:
        """The pod goes with the node (NodeCluster.stop): nothing of its own to stop."""

    def http_client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("transport", ResolvingTransport(self.resolve, verify=self.verify))
        return super().http_client(**kwargs)

    def log(self) -> str:
        return self.cluster.kubectl("logs", "-n", IDP_NAMESPACE, "deploy/idp", "--tail=200", check=False).stdout


class ResolvingTransport(httpx.BaseTransport):
    """httpx's transport, connecting the host names in `resolve` to the given addresses (SNI
    and Host stay the name, so TLS still verifies it): the sync sibling of
    tests/infra/mcp.LoopbackTransport, for names only the cluster's DNS knows."""

    def __init__(self, resolve: dict[str, str], **options: Any) -> None:
        self.resolve = {name.lower(): address for name, address in resolve.items()}
        self._transport = httpx.HTTPTransport(**options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        address = self.resolve.get(request.url.host)
        if address is not None:
            request = httpx.Request(
                request.method,
                request.url.copy_with(host=address),
                headers=request.headers,
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": request.url.host},
            )
        return self._transport.handle_request(request)

    def close(self) -> None:
        self._transport.close()


@contextlib.contextmanager
def running_node(directory: Path, figures: dict[str, object], images: tuple[str, ...] = DEFAULT_IMAGES):
    """A started NodeCluster for a test module (skips locally, fails under CI=true, when a
    tool is missing); its start timings join `figures`, printed when it stops."""
    NodeCluster.require()
    cluster = NodeCluster(directory, images)
    try:
        cluster.start()
        figures.update({k: f"{v:.1f}s" for k, v in cluster.timings.items()})
        yield cluster
    finally:
        cluster.stop()
        print("\nlocal node figures:\n" + "\n".join(f"  {k}: {v}" for k, v in figures.items()))


def install_authgate(cluster: NodeCluster, chart: Any, values: Path, ca: TestCA) -> float:
    """`helm install authgate charts/authgate` (tests/integration/test_chart.Chart) into the
    `authgate` namespace enforcing the restricted Pod Security Standard, with `ca` as the
    ConfigMap `idp-ca` the values' caBundle names; seconds until both Deployments are Available."""
    cluster.namespace(AUTHGATE_NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "restricted"})
    cluster.kubectl("create", "configmap", "idp-ca", "-n", AUTHGATE_NAMESPACE, f"--from-file=ca.crt={ca.ca_path}")
    began = time.monotonic()
    result = chart.install(cluster.kubeconfig, AUTHGATE_NAMESPACE, values)
    assert "violate PodSecurity" not in result.stderr, result.stderr
    for name in ("authgate", "authgate-operator"):
        cluster.wait_available(AUTHGATE_NAMESPACE, name, timeout=AVAILABLE_WITHIN)
    return time.monotonic() - began


def apply_policy(cluster: NodeCluster, documents: list[dict[str, Any]], replicas: int) -> dict[str, Any]:
    """`kubectl apply` an OAuthPolicy (and its Secrets); its status once Ready and Synced
    `replicas`/`replicas` (the operator pod pushed it to every service pod)."""
    cluster.apply(documents)
    policy = next(d for d in documents if d["kind"] == "OAuthPolicy")
    name, namespace = policy["metadata"]["name"], policy["metadata"]["namespace"]

    def synced() -> dict | None:
        status = cluster.get_json("oap", name, "-n", namespace).get("status", {})
        ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
        return status if ready == "True" and status.get("syncedReplicas") == f"{replicas}/{replicas}" else None

    try:
        return eventually(synced, timeout=120, what=f"policy Ready and Synced {replicas}/{replicas}")
    except AssertionError as error:
        logs = cluster.kubectl("logs", "-n", AUTHGATE_NAMESPACE, "deploy/authgate-operator", "--tail=30", check=False)
        raise AssertionError(f"{error}\n{logs.stdout}{logs.stderr}") from None


def route_through_traefik(cluster: NodeCluster, ca: TestCA) -> None:
    """Traefik in the cluster with the project's example manifests (examples/kubernetes/traefik/:
    ForwardAuth to the check Service, public routes to the public port, the upstream
    `mcp-server` in `apps`) and a certificate for mcp.example.com from `ca`."""
    cluster.deploy_traefik()
    cert = ca.issue_server_cert("mcp-example-com", dns_names=[HOST], ip_addresses=[])
    cluster.tls_secret(APPS, "mcp-example-com-tls", cert.cert, cert.key)
    # Every manifest of the example, as a user applies the directory: the routes name
    # middlewares of several files.
    for path in sorted((ROOT / "examples" / "kubernetes" / "traefik").glob("*.yaml")):
        cluster.kubectl("apply", "-f", str(path))
    cluster.wait_available(TRAEFIK_NAMESPACE, "traefik")


def service_pods(cluster: NodeCluster) -> list[dict]:
    selector = "app.kubernetes.io/instance=authgate,app.kubernetes.io/component=auth-service"
    return cluster.get_json("pods", "-n", AUTHGATE_NAMESPACE, "-l", selector)["items"]


__all__ = [
    "APPS",
    "AUTHGATE_NAMESPACE",
    "HOST",
    "IMAGES_SH",
    "NODE_IP",
    "NodeCluster",
    "PodIdp",
    "apply_policy",
    "eventually",
    "install_authgate",
    "node_idp",
    "route_through_traefik",
    "running_node",
    "service_pods",
]
