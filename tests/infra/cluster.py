"""One real Kubernetes control plane (etcd + kube-apiserver, hack/cluster/controlplane.py)
per test session, with helpers for the tests that use it.

    def test_something(cluster: Cluster, namespace: str) -> None:
        cluster.apply(manifest_yaml, namespace=namespace)
        cluster.kubectl("get", "endpointslices", "-n", namespace, "-o", "json")
        async with cluster.api_client() as api:          # kubernetes_asyncio
            await CoreV1Api(api).read_namespace(namespace)

Started in the session's temporary directory (about 5 s on 2 cores) on first use and
stopped at the end of the session; its processes also die if pytest is killed. The
Go-built binaries come from `require_built` (missing: skip locally, fail under CI=true).
Set AUTHGATE_TEST_CLUSTER=local to use the one `make cluster-up` keeps running
(.local/cluster) instead: quicker iterations, and it is left running.

There is no controller-manager and no kubelet: no pod runs, no ServiceAccount or token is
made for you, nothing is garbage-collected, and a deleted namespace stays Terminating.
So every test makes its own namespace (`create_namespace`) and leaves it behind.

The fixtures `cluster`, `namespace` and `netns_host` are in tests/conftest.py; `session_cluster`
hands every caller (fixtures, bench/operator_latency.py) the same process-wide instance.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import re
import secrets
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from hack.cluster.controlplane import (
    API_ADDRESS,
    DEFAULT_KUBECONFIG,
    DEFAULT_STATE_DIR,
    SERVICE_ACCOUNT_ISSUER,
    ControlPlane,
    ControlPlaneError,
    KubectlError,
)
from tests.infra.tools import require_built

__all__ = [
    "API_ADDRESS",
    "SERVICE_ACCOUNT_ISSUER",
    "Cluster",
    "ControlPlaneError",
    "KubectlError",
    "session_cluster",
    "stop_session_cluster",
]

BINARIES = ("etcd", "kube-apiserver", "kubectl")
REUSE_ENV = "AUTHGATE_TEST_CLUSTER"  # "local": use the `make cluster-up` control plane


class Cluster:
    """A running control plane plus test helpers.

    Attributes: `control_plane` (the ControlPlane: pki paths, logs, stop()),
    `kubeconfig` (admin, server on 127.0.0.1), `server`, `netns_server`
    (https://10.200.0.1:<port>, for processes in NetnsHosts), `port`, `ca_path`,
    `admin_cert`, `admin_key`, `sa_signing_key`, `sa_public_key`.
    """

    def __init__(self, control_plane: ControlPlane) -> None:
        self.control_plane = control_plane
        self.kubeconfig = control_plane.kubeconfig
        self.server = control_plane.server
        self.netns_server = control_plane.netns_server
        self.port = control_plane.port
        self.ca_path = control_plane.ca_path
        self.admin_cert = control_plane.admin_cert
        self.admin_key = control_plane.admin_key
        self.sa_signing_key = control_plane.sa_signing_key
        self.sa_public_key = control_plane.sa_public_key
        self._netns_kubeconfig: Path | None = None

    # --- kubectl ----------------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """kubectl with the admin kubeconfig; `KubectlError` (stderr included) on failure."""
        return self.control_plane.kubectl(*args, input=input, check=check, timeout=timeout)

    def apply(self, yaml_text: str, *, namespace: str | None = None, check: bool = True) -> str:
        """`kubectl apply -f -` of one or more YAML documents; returns kubectl's output.
        A refused object raises `KubectlError` (its `.result.stderr` says why)."""
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=yaml_text, check=check).stdout

    def get_json(self, *args: str) -> dict[str, Any]:
        """`kubectl get ARGS -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def create_json(self, obj: dict[str, Any]) -> dict[str, Any]:
        """`kubectl create -f - -o json` of one object (e.g. a TokenReview); the answer."""
        return json.loads(self.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(obj)).stdout)

    # --- namespaces and identities --------------------------------------------------------

    def create_namespace(self, hint: str = "test") -> str:
        """A new namespace named after `hint` (e.g. the test's name) plus a random suffix.
        Never deleted: without a controller-manager it would stay Terminating anyway."""
        base = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:40].strip("-") or "test"
        name = f"{base}-{secrets.token_hex(3)}"
        self.apply(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": {"authgate.dev/test": "true"}},
                }
            )
        )
        return name

    def create_service_account(self, namespace: str, name: str) -> None:
        """A ServiceAccount (nothing creates them without a controller-manager)."""
        self.kubectl("create", "serviceaccount", name, "-n", namespace)

    def create_token(
        self, namespace: str, service_account: str, audiences: Sequence[str] = (), duration: str = "10m"
    ) -> str:
        """A TokenRequest token for an existing ServiceAccount (default audience: the API's)."""
        args = ["create", "token", service_account, "-n", namespace, f"--duration={duration}"]
        args += [f"--audience={audience}" for audience in audiences]
        return self.kubectl(*args).stdout.strip()

    def token_review(self, token: str, audiences: Sequence[str] = ()) -> dict[str, Any]:
        """The TokenReview status for `token` (`authenticated`, `user`, `audiences`, `error`)."""
        spec: dict[str, Any] = {"token": token}
        if audiences:
            spec["audiences"] = list(audiences)
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        return self.create_json(review).get("status", {})

    # --- clients --------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment additions for a host process that should use this cluster."""
        return self.control_plane.env()

    @property
    def netns_kubeconfig(self) -> Path:
        """An admin kubeconfig whose server is https://10.200.0.1:<port>: for processes in
        NetnsHosts (whose own loopback has no apiserver)."""
        if self._netns_kubeconfig is None:
            config = yaml.safe_load(self.kubeconfig.read_text())
            for entry in config["clusters"]:
                entry["cluster"]["server"] = self.netns_server
            path = self.kubeconfig.with_name(self.kubeconfig.name + "-netns")
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            path.chmod(0o600)
            self._netns_kubeconfig = path
        return self._netns_kubeconfig

    async def client_configuration(self):  # -> kubernetes_asyncio.client.Configuration
        """A kubernetes_asyncio Configuration from the admin kubeconfig."""
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        await config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        return configuration

    @contextlib.asynccontextmanager
    async def api_client(self) -> AsyncIterator[Any]:
        """`async with cluster.api_client() as api:` a kubernetes_asyncio ApiClient (closed after)."""
        from kubernetes_asyncio import client

        async with client.ApiClient(await self.client_configuration()) as api:
            yield api

    def __repr__(self) -> str:
        return f"Cluster({self.server}, kubeconfig={self.kubeconfig})"


def decode_jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, NOT verified (for asserting on what the apiserver issued)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --- the session's instance ------------------------------------------------------------------

_session: Cluster | None = None
_session_error: BaseException | None = None
_session_owned = False


def session_cluster(directory: str | os.PathLike[str]) -> Cluster:
    """The process-wide cluster, started in `directory` on the first call (later calls get
    the same one, or the same failure). Skips (fails under CI=true) when a binary is not built."""
    global _session, _session_error, _session_owned
    binaries = {name: require_built(name) for name in BINARIES}
    if _session is not None:
        return _session
    if _session_error is not None:
        raise ControlPlaneError(f"the session's control plane failed to start: {_session_error}")
    try:
        if os.environ.get(REUSE_ENV) == "local":
            control_plane = ControlPlane(DEFAULT_STATE_DIR, kubeconfig=DEFAULT_KUBECONFIG, binaries=binaries)
            if not control_plane.ready():
                raise ControlPlaneError(f"{REUSE_ENV}=local but no control plane is up: run `make cluster-up`")
        else:
            # Started from the main thread: the processes get SIGKILL when the thread that
            # started them ends (PR_SET_PDEATHSIG), i.e. when pytest exits or is killed.
            control_plane = ControlPlane(Path(directory), binaries=binaries).start()
            _session_owned = True
            atexit.register(stop_session_cluster)
    except BaseException as error:
        _session_error = error
        raise
    _session = Cluster(control_plane)
    return _session


def stop_session_cluster() -> None:
    """Stop the session's cluster (unless it is the `make cluster-up` one); idempotent."""
    global _session, _session_owned
    if _session is not None and _session_owned:
        _session.control_plane.stop()
    _session, _session_owned = None, False
