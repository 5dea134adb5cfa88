"""An authgate installation on the test control plane: the chart's RBAC and ServiceAccounts,
replicas of `authgate serve` as network-namespace test hosts behind a Service whose
EndpointSlice is written as the endpoint controller would, and `authgate operator` as a
local process authenticated as its ServiceAccount. Used by tests/e2e and bench/.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import yaml
from tests.infra.cluster import Cluster
from tests.infra.processes import HttpUrl, Process
from tests.infra.tools import require_built

ROOT = Path(__file__).resolve().parents[2]
AUTHGATE = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "authgate")
RELEASE = "ag-e2e"
REPLICAS = 3


def eventually(check: Callable[[], object], timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, AssertionError, KeyError, StopIteration) as error:  # StopIteration: no condition yet
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def chart_objects(namespace: str, *values: str) -> list[dict]:
    helm = require_built("helm")
    rendered = subprocess.run(
        [str(helm), "template", RELEASE, str(ROOT / "charts" / "authgate"), "--namespace", namespace, *values],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def policy(name: str, host: str, namespace: str, **spec) -> dict:
    return {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"resource": f"https://{host}/mcp", "issuers": [{"issuer": "https://idp.example.com"}], **spec},
    }


class System:
    """The authgate installation under test: namespace, RBAC, replicas, operator."""

    def __init__(self, cluster: Cluster, directory: Path, hosts: list) -> None:
        self.cluster = cluster
        self.dir = directory
        self.hosts = hosts
        self.namespace = cluster.create_namespace("authgate-system")
        self.apps = cluster.create_namespace("apps")
        self.replicas: list[Process | None] = [None] * len(hosts)
        self.operator: Process | None = None

    # -- setup ---------------------------------------------------------------------
    def install(self) -> None:
        cluster = self.cluster
        cluster.kubectl("apply", "-f", str(ROOT / "crds" / "oauthpolicies.authgate.dev.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/oauthpolicies.authgate.dev", "--timeout=30s")
        objects = chart_objects(self.namespace)
        wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
        rbac = [o for o in objects if o["kind"] in wanted]
        cluster.apply(yaml.safe_dump_all(rbac))
        # The names the chart gives the operator (its RBAC is scoped to them).
        operator = next(o for o in objects if o["kind"] == "Deployment" and "operator" in o["metadata"]["name"])
        flags = dict(a.split("=", 1) for a in operator["spec"]["template"]["spec"]["containers"][0]["args"] if "=" in a)
        self.service_ref, self.snapshot_ref = flags["--service"], flags["--snapshot-secret"]
        self.sealing_ref, self.audience = flags["--sealing-secret"], flags["--admin-audience"]
        self.admin_service = self.service_ref.split("/", 1)[1]
        accounts = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
        self.operator_sa = next(name for name in accounts if "operator" in name)
        self.service_sa = next(name for name in accounts if "operator" not in name)
        self.operator_subject = f"system:serviceaccount:{self.namespace}:{self.operator_sa}"
        self.admin_token = self.dir / "admin-token"
        self.admin_token.write_text(cluster.create_token(self.namespace, self.operator_sa, [self.audience], "1h"))
        self.service_token = self.dir / "service-token"
        self.service_token.write_text(cluster.create_token(self.namespace, self.service_sa, [], "1h"))
        self.kubeconfig = self.dir / "operator-kubeconfig"
        self.kubeconfig.write_text(self._kubeconfig(cluster.create_token(self.namespace, self.operator_sa, [], "1h")))
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": self.admin_service, "namespace": self.namespace},
            "spec": {"ports": [{"name": "admin", "port": 8081, "targetPort": 8081}]},
        }
        endpoints = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{self.admin_service}-1",
                "namespace": self.namespace,
                "labels": {"kubernetes.io/service-name": self.admin_service},
            },
            "addressType": "IPv4",
            "ports": [{"name": "admin", "port": 8081, "protocol": "TCP"}],
            "endpoints": [{"addresses": [h.address], "conditions": {"ready": False}} for h in self.hosts],
        }
        cluster.apply(yaml.safe_dump_all([service, endpoints]))
        for index in range(len(self.hosts)):
            self.start_replica(index)
        self.start_operator()

    def _kubeconfig(self, token: str) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "operator",
                "clusters": [
                    {
                        "name": "test",
                        "cluster": {"server": self.cluster.server, "certificate-authority": str(self.cluster.ca_path)},
                    }
                ],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator"}}],
            }
        )

    def start_replica(self, index: int, *extra: str) -> Process:
        host = self.hosts[index]
        args = [
            AUTHGATE,
            "serve",
            "--address",
            host.address,
            "--admin-audience",
            self.audience,
            "--admin-subject",
            self.operator_subject,
            "--kube-api-server",
            self.cluster.netns_server,
            "--kube-token-file",
            str(self.service_token),
            "--kube-ca-file",
            str(self.cluster.ca_path),
            *extra,
        ]
        process = host.run(
            args, self.dir, name=f"replica{index}", ready=HttpUrl(f"http://{host.address}:8081/healthz"), timeout=30
        )
        self.replicas[index] = process
        return process

    def start_operator(self, kubeconfig: Path | None = None, name: str = "operator") -> Process:
        process = Process(
            name,
            [
                AUTHGATE,
                "operator",
                "--service",
                self.service_ref,
                "--snapshot-secret",
                self.snapshot_ref,
                "--sealing-secret",
                self.sealing_ref,
                "--admin-token-file",
                str(self.admin_token),
                "--standalone",
                "--resync-seconds",
                "2",
            ],
            log_dir=self.dir,
            extra_env={"KUBECONFIG": str(kubeconfig or self.kubeconfig)},
        )
        process.start()
        if name == "operator":
            self.operator = process
        return process

    def stop(self) -> None:
        for process in [self.operator, *self.replicas]:
            if process is not None:
                process.stop()

    # -- observations ------------------------------------------------------------------
    def check(self, index: int, url: str) -> httpx.Response:
        return httpx.get(
            f"http://{self.hosts[index].address}:8082/ext-authz/nginx",
            headers={"X-Original-URL": url, "X-Original-Method": "GET"},
            timeout=5,
            trust_env=False,
        )

    def enforced_everywhere(self, host: str) -> bool:
        """Every replica challenges for the policy on `host` (401 naming its resource metadata)."""
        expected = f"https://{host}/.well-known/oauth-protected-resource/mcp"
        return all(
            self.check(i, f"https://{host}/mcp").status_code == 401
            and expected in self.check(i, f"https://{host}/mcp").headers.get("www-authenticate", "")
            for i in range(len(self.hosts))
        )

    def unknown_everywhere(self, host: str) -> bool:
        return all(self.check(i, f"https://{host}/mcp").status_code == 403 for i in range(len(self.hosts)))

    def status(self, name: str, namespace: str | None = None) -> dict:
        obj = self.cluster.get_json("oauthpolicy", name, "-n", namespace or self.apps)
        return obj.get("status") or {}

    def condition(self, name: str, kind: str, namespace: str | None = None) -> dict:
        return next(c for c in self.status(name, namespace).get("conditions", []) if c["type"] == kind)

    def apply(self, *objects: dict, check: bool = True) -> str:
        """kubectl apply; returns what kubectl printed (stdout and stderr)."""
        result = self.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(list(objects)), check=check)
        return result.stdout + result.stderr

    def replica_state(self, index: int) -> dict:
        token = self.admin_token.read_text()
        return httpx.get(
            f"http://{self.hosts[index].address}:8081/admin/v1/snapshot",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
            trust_env=False,
        ).json()


@contextlib.contextmanager
def installed_system(cluster: Cluster, directory: Path, host_prefix: str) -> Iterator[System]:
    """The chart's RBAC, the operator and REPLICAS replicas as test hosts (`<prefix>0`...) in
    network namespaces, on the session's control plane; all of it stopped and removed after."""
    from tests.infra.netns import NetnsHost, require_netns

    require_built("helm")
    require_netns()
    hosts = [NetnsHost(f"{host_prefix}{i}") for i in range(REPLICAS)]
    installation = System(cluster, directory, hosts)
    try:
        installation.install()
        yield installation
    finally:
        installation.stop()
        for host in hosts:
            host.close()
