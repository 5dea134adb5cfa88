"""A real Kubernetes node for the local control plane (hack/cluster/controlplane.py):
containerd v2 + runc, the bridge CNI, kubelet, kube-proxy, and the control-plane
controllers a node needs (kube-controller-manager, kube-scheduler), then CoreDNS as a pod.
Every binary is built from Go modules by hack/tools/build.sh (the Kubernetes ones in the
same build as kube-apiserver, same version); every image by hack/images/build.sh. Root only.

    cp = ControlPlane(state_dir, with_node=True).start()
    node = Node(cp).start()          # Ready, CoreDNS answering
    node.ctr("images", "ls")
    node.stop()                      # processes, pods, mounts, links, iptables rules

`make node-up` / `make cluster-down` run `python -m hack.cluster.node up|down` on the
control plane of `make cluster-up` (state in .local/cluster/node/).

Network (chosen not to meet the control plane's ranges nor the test network namespaces'
10.200.0.0/16):

    pods       10.244.0.0/24 on the bridge agcni0, host side 10.244.0.1 = the node's IP
    services   10.0.0.0/24 (the apiserver's --service-cluster-ip-range); DNS 10.0.0.10
    apiserver  10.200.0.1:<port> on the host's loopback (lo:ag-api), via the `kubernetes`
               Service; pods reach it through their default route to 10.244.0.1

No masquerading to the outside: pods reach only the host's own addresses and each other.
NodePorts answer on 10.244.0.1 only. The host needs net.ipv4.ip_forward=1 and
br_netfilter (bridged traffic through kube-proxy's iptables rules); both are set at start
and put back at stop.

This machine mounts cgroup v1 and PID 1 is not systemd: kubelet runs with
`cgroupDriver: cgroupfs` and `failCgroupV1: false` (kubelet >= 1.35 refuses cgroup v1
without it), containerd's runc with SystemdCgroup=false.

The CNI bridge plugin does not enforce NetworkPolicy: NetworkPolicies are stored, not applied.

State layout (under `<control plane state>/node/`):

    pki/ kubelet.{crt,key} (system:node:<name>), kubelet-serving.{crt,key}
    containerd/ config.toml root/     cni/ net.d/ ipam/     kubelet/ (its root dir)
    logs/ containerd.log kubelet.log kube-controller-manager.log kube-scheduler.log kube-proxy.log
          pods/ (the containers' logs)
    *.pid state.json kubelet-config.yaml kube-proxy-config.yaml resolv.conf
    /run/authgate-node/<id>/  containerd's socket and state (short paths: socket names are
                              limited to 108 bytes)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hack.cluster.controlplane import (
    API_ADDRESS,
    CERT_VALIDITY,
    DEFAULT_KUBECONFIG,
    DEFAULT_STATE_DIR,
    ROOT,
    SERVICE_CLUSTER_IP_RANGE,
    Components,
    ControlPlane,
    ControlPlaneError,
    built_tool,
    free_port,
    log_tail,
)

NODE_NAME = "authgate-node"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"  # the bridge's host side: the node's InternalIP, NodePorts, pods' gateway
BRIDGE = "agcni0"
CLUSTER_DNS = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"
API_LABEL = "lo:ag-api"  # the same address and label tests/support/netns.py uses
CNI_BIN_DIR = "/usr/lib/cni"  # Debian containernetworking-plugins
RUNC = "/usr/sbin/runc"  # Debian runc
RUN_ROOT = Path("/run/authgate-node")
OWNER_FILE = RUN_ROOT / "owner"  # the state dir of the node that set up the host's network
IMAGES_SH = ROOT / "hack" / "images" / "build.sh"
COMPONENTS = ("containerd", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
NODE_IMAGES = ("pause", "coredns")  # imported before kubelet starts
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}


class NodeError(ControlPlaneError):
    """The node failed to start, or a host change failed."""


def image_name(image: str) -> str:
    """The name containerd knows an image of hack/images/build.sh by."""
    result = subprocess.run([str(IMAGES_SH), "--print-name", image], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def node_problem() -> str | None:
    """Why a node cannot run here, or None."""
    if os.geteuid() != 0:
        return "a node needs root (kubelet, containerd, iptables); CI runs as root"
    for command, package in (("iptables", "iptables"), ("buildah", "buildah"), ("mmdebstrap", "mmdebstrap")):
        if shutil.which(command) is None:
            return f"{command} not found: apt-get install {package} (hack/install-system-packages.sh)"
    if not Path(RUNC).is_file():
        return f"{RUNC} not found: apt-get install runc"
    if not (Path(CNI_BIN_DIR) / "bridge").is_file():
        return f"{CNI_BIN_DIR}/bridge not found: apt-get install containernetworking-plugins"
    if not Path("/proc/sys/net/bridge").is_dir():
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
        if not Path("/proc/sys/net/bridge").is_dir():
            return "the br_netfilter kernel module is not loaded and cannot be (modprobe br_netfilter)"
    return None


class Node:
    """One node joined to `control_plane`, its state in `<control plane state>/node`.

    `detach` follows the control plane: the make targets leave the processes running, the
    tests' die with the test process."""

    def __init__(self, control_plane: ControlPlane, *, name: str = NODE_NAME) -> None:
        self.control_plane = control_plane
        self.name = name
        self.detach = control_plane.detach
        self.state_dir = control_plane.state_dir / "node"
        self.log_dir = self.state_dir / "logs"
        self.pki = self.state_dir / "pki"
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:10]
        self.run_dir = RUN_ROOT / digest
        self.socket = self.run_dir / "containerd.sock"
        self.state_file = self.state_dir / "state.json"
        self.components = Components(self.state_dir, self.log_dir, self.detach)
        self._binaries: dict[str, Path] = {}
        self.started_seconds: float | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 300.0) -> Node:
        """Stop leftovers of this state dir, set up the host, start every component, wait
        for the node to be Ready and CoreDNS to run."""
        if problem := node_problem():
            raise NodeError(problem)
        if not self.control_plane.ready():
            raise NodeError("the control plane is not running: start it first (make cluster-up)")
        began = time.monotonic()
        deadline = began + timeout
        self.stop()
        self._claim_host()
        for component in COMPONENTS:
            self.binary(component)
        self.binary("containerd-shim-runc-v2")
        self._prepare()
        self._host_up()
        self.state_file.write_text(json.dumps({"sysctls": self._saved_sysctls}))  # for stop(), whatever fails next
        self._spawn_containerd(deadline)
        self._import_images(NODE_IMAGES)
        ports = {name: free_port() for name in ("kcm", "scheduler", "kubelet", "kubelet-healthz", "proxy", "metrics")}
        self.state_file.write_text(json.dumps({"ports": ports, "sysctls": self._saved_sysctls}, indent=2))
        self._spawn("kube-controller-manager", self._controller_manager_args(ports["kcm"]))
        self._spawn("kube-scheduler", self._scheduler_args(ports["scheduler"]))
        self._spawn("kubelet", self._kubelet_args(ports["kubelet"], ports["kubelet-healthz"]))
        self._spawn("kube-proxy", self._proxy_args(ports["proxy"], ports["metrics"]))
        self._wait_for("node Ready", self._node_ready, deadline)
        self._deploy_coredns()
        self._wait_for("CoreDNS available", self._coredns_available, deadline)
        self.started_seconds = time.monotonic() - began
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every component and take back what start() changed on the host: the pods'
        containers, mounts and network namespaces, the bridge, kube-proxy's and the CNI
        plugins' iptables rules, the sysctls. Safe to call when nothing runs."""
        state = self._load_state()
        for name in ("kube-proxy", "kubelet", "kube-scheduler", "kube-controller-manager"):
            self.components.stop(name, timeout)
        if self.components.pid("containerd") is not None:
            self._remove_containers()
        self.components.stop("containerd", timeout)
        self._kill_shims()
        self._unmount_under(self.state_dir)
        self._unmount_under(self.run_dir)
        if self._owns_host():  # the bridge, the pod CIDR and the iptables chains are per host
            self._remove_pod_netns()
            self._cleanup_iptables()
            self._remove_cgroups()
            subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
            for key, value in (state.get("sysctls") or {}).items():
                with contextlib.suppress(OSError):
                    Path("/proc/sys", key).write_text(value)
            OWNER_FILE.unlink(missing_ok=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)

    def _owns_host(self) -> bool:
        """This node set up (or may clean up) the host's bridge, pod network and rules."""
        try:
            return OWNER_FILE.read_text().strip() == str(self.state_dir)
        except FileNotFoundError:
            return self.state_file.exists()

    def _claim_host(self) -> None:
        """One node per machine: refuse while another one's containerd runs."""
        try:
            owner = Path(OWNER_FILE.read_text().strip())
        except FileNotFoundError:
            owner = None
        other = owner is not None and owner != self.state_dir
        if other and Components(owner, owner / "logs", detach=True).pid("containerd") is not None:
            raise NodeError(f"another local node runs on this machine ({owner}): stop it first")
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        OWNER_FILE.write_text(f"{self.state_dir}\n")

    def running(self) -> bool:
        return all(self.components.pid(name) is not None for name in COMPONENTS)

    def ready(self) -> bool:
        return self.running() and self._node_ready()

    # --- clients -------------------------------------------------------------------------

    def binary(self, name: str) -> Path:
        if name not in self._binaries:
            self._binaries[name] = built_tool(name)
        return self._binaries[name]

    def ctr(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """containerd's `ctr` in the Kubernetes namespace (k8s.io) of this node."""
        command = [str(self.binary("ctr")), "--address", str(self.socket), "-n", "k8s.io", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} exited with {result.returncode}: {result.stderr.strip()}")
        return result

    def import_images(self, *images: str) -> None:
        """Build (if needed) and import images of hack/images/build.sh into this node."""
        self._import_images(images)

    def log_tail(self, name: str, lines: int = 30) -> str:
        return log_tail(self.log_dir / f"{name}.log", lines)

    # --- host set-up ---------------------------------------------------------------------

    def _prepare(self) -> None:
        from hack.cluster import pki  # cryptography: only needed to start

        for name in ("containerd", "kubelet", "cni", "logs/pods"):
            shutil.rmtree(self.state_dir / name, ignore_errors=True)
        for directory in (self.log_dir, self.pki, self.state_dir / "containerd", self.state_dir / "kubelet"):
            directory.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "cni" / "net.d").mkdir(parents=True)
        (self.state_dir / "cni" / "ipam").mkdir(parents=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cp = self.control_plane
        ca = pki.load_ca(cp.ca_path, cp.ca_key, validity=CERT_VALIDITY)
        ca.issue(
            self.pki / "kubelet.crt",
            self.pki / "kubelet.key",
            common_name=f"system:node:{self.name}",
            organization="system:nodes",
            server=False,
        )
        ca.issue(
            self.pki / "kubelet-serving.crt",
            self.pki / "kubelet-serving.key",
            common_name=f"system:node:{self.name}",
            server=True,
            dns_names=(self.name, "localhost"),
            ip_addresses=(NODE_IP, "127.0.0.1"),
        )
        _write_kubeconfig(
            self.state_dir / "kubelet.kubeconfig",
            cp.netns_server,
            cp.ca_path,
            self.pki / "kubelet.crt",
            self.pki / "kubelet.key",
        )
        (self.state_dir / "resolv.conf").write_text("# pods with dnsPolicy Default: no upstream resolver here\n")
        self._write_containerd_config()
        self._write_cni_config()
        self._saved_sysctls: dict[str, str] = {}

    def _host_up(self) -> None:
        for key, value in SYSCTLS.items():
            path = Path("/proc/sys", key)
            previous = path.read_text().strip()
            if previous != value:
                self._saved_sysctls[key] = previous
                path.write_text(value)
        addresses = _run(["ip", "-4", "-o", "addr", "show", "dev", "lo"]).stdout
        if f" {API_ADDRESS}/" not in addresses:
            _run(["ip", "addr", "add", f"{API_ADDRESS}/32", "dev", "lo", "label", API_LABEL])
        # The bridge exists before kubelet starts (its --node-ip must be a host address);
        # the CNI bridge plugin takes it over.
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])

    def _write_containerd_config(self) -> None:
        root = self.state_dir / "containerd"
        config = f"""version = 3
root = {json.dumps(str(root / "root"))}
state = {json.dumps(str(self.run_dir / "state"))}

[grpc]
  address = {json.dumps(str(self.socket))}

[ttrpc]
  address = {json.dumps(str(self.run_dir / "containerd.sock.ttrpc"))}

[debug]
  address = ""

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    # Nothing can be pulled here: every image is imported (hack/images/build.sh).
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = {json.dumps(image_name("pause"))}
  [plugins.'io.containerd.cri.v1.runtime']
    # Root here lacks CAP_SYS_RESOURCE: no process may lower its oom_score_adj, and the
    # -998 kubelet asks for pod sandboxes makes runc fail ("can't get final child's PID").
    # Clamp every container's to containerd's own (0) instead.
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = {json.dumps(RUNC)}
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [{json.dumps(CNI_BIN_DIR)}]
      conf_dir = {json.dumps(str(self.state_dir / "cni" / "net.d"))}
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
"""
        (root / "config.toml").write_text(config)

    def _write_cni_config(self) -> None:
        conflist = {
            "cniVersion": "1.0.0",
            "name": "authgate",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # pods reach only this host's addresses and each other
                    "hairpinMode": True,  # a pod reaching itself through a Service
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.state_dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.state_dir / "cni" / "net.d" / "10-authgate.conflist").write_text(json.dumps(conflist, indent=2))

    # --- components ----------------------------------------------------------------------

    def _spawn_containerd(self, deadline: float) -> None:
        self._spawn(
            "containerd",
            [self.binary("containerd"), f"--config={self.state_dir / 'containerd' / 'config.toml'}"],
        )
        while not self.socket.exists() or self.ctr("version", check=False).returncode != 0:
            if self.components.pid("containerd") is None:
                raise NodeError(f"containerd exited\n{self.log_tail('containerd')}")
            if time.monotonic() > deadline:
                raise NodeError(f"containerd not up in time\n{self.log_tail('containerd')}")
            time.sleep(0.2)

    def _import_images(self, images: Sequence[str]) -> None:
        result = subprocess.run(
            [str(IMAGES_SH), "--import", str(self.socket), *images], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise NodeError(f"images {' '.join(images)}: {result.stderr.strip()[-3000:]}")

    def _control_loop_args(self, binary: str, port: int) -> list[str | os.PathLike[str]]:
        """What kube-controller-manager and kube-scheduler share: the admin kubeconfig, a
        loopback port, no leader election, no profiling."""
        kubeconfig = self.control_plane.kubeconfig
        return [
            self.binary(binary),
            f"--cert-dir={self.state_dir / binary}",  # names the state dir (stop() finds it)
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _controller_manager_args(self, port: int) -> list[str | os.PathLike[str]]:
        cp = self.control_plane
        return [
            *self._control_loop_args("kube-controller-manager", port),
            f"--service-account-private-key-file={cp.sa_signing_key}",
            f"--root-ca-file={cp.ca_path}",
            f"--cluster-signing-cert-file={cp.ca_path}",
            f"--cluster-signing-key-file={cp.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--use-service-account-credentials=false",
        ]

    def _scheduler_args(self, port: int) -> list[str | os.PathLike[str]]:
        return self._control_loop_args("kube-scheduler", port)

    def _kubelet_args(self, port: int, healthz_port: int) -> list[str | os.PathLike[str]]:
        import yaml

        cp = self.control_plane
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine mounts cgroup v1; kubelet >= 1.35 refuses it unless told.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",  # PID 1 is not systemd
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": NODE_IP,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "tlsCertFile": str(self.pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(self.pki / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(cp.ca_path)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [CLUSTER_DNS],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(self.state_dir / "resolv.conf"),
            "podLogsDir": str(self.log_dir / "pods"),  # not /var/log/pods: all of it goes at stop
            "failSwapOn": False,
            "serializeImagePulls": False,
            "rotateCertificates": False,
            # Shared machines with little free disk at times: evict only when nearly full,
            # and never garbage-collect the imported images (they cannot be pulled again).
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "maxPods": 110,
            "shutdownGracePeriod": "0s",
            "oomScoreAdj": 0,  # its own; lowering it needs CAP_SYS_RESOURCE, which root lacks here
        }
        path = self.state_dir / "kubelet-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return [
            self.binary("kubelet"),
            f"--config={path}",
            f"--kubeconfig={self.state_dir / 'kubelet.kubeconfig'}",
            f"--root-dir={self.state_dir / 'kubelet'}",
            f"--hostname-override={self.name}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ]

    def _proxy_args(self, port: int, metrics_port: int) -> list[str | os.PathLike[str]]:
        import yaml

        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.control_plane.kubeconfig)},
            "hostnameOverride": self.name,
            "bindAddress": NODE_IP,
            "clusterCIDR": POD_CIDR,
            "mode": "iptables",
            "conntrack": {"maxPerCore": 0},  # leave the host's conntrack table size alone
            "healthzBindAddress": f"127.0.0.1:{port}",
            "metricsBindAddress": f"127.0.0.1:{metrics_port}",
            "nodePortAddresses": [f"{NODE_IP}/32"],
        }
        path = self.state_dir / "kube-proxy-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return [self.binary("kube-proxy"), f"--config={path}", "--v=1"]

    def _spawn(self, name: str, args: Sequence[str | os.PathLike[str]]) -> None:
        environment = dict(os.environ)
        # containerd finds its shim on PATH; runc, iptables and mount are in /usr/sbin.
        shim_dir = str(self.binary("containerd-shim-runc-v2").parent)
        environment["PATH"] = f"{shim_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        self.components.spawn(name, args, environment)

    def _wait_for(self, what: str, check, deadline: float) -> None:
        while True:
            for name in COMPONENTS:
                if self.components.pid(name) is None:
                    raise NodeError(f"{name} exited while waiting for {what}\n{self.log_tail(name)}")
            if check():
                return
            if time.monotonic() > deadline:
                tails = "\n".join(self.log_tail(name, 15) for name in COMPONENTS)
                raise NodeError(f"{what}: not in time\n{tails}")
            time.sleep(0.5)

    def _node_ready(self) -> bool:
        result = self.control_plane.kubectl("get", "node", self.name, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _deploy_coredns(self) -> None:
        from hack.cluster.coredns import manifests

        self.control_plane.kubectl("apply", "-f", "-", input=manifests(image_name("coredns"), CLUSTER_DNS))

    def _coredns_available(self) -> bool:
        result = self.control_plane.kubectl(
            "get",
            "deployment",
            "coredns",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.status.availableReplicas}",
            check=False,
        )
        return result.returncode == 0 and result.stdout.strip() not in ("", "0")

    # --- teardown ------------------------------------------------------------------------

    def _remove_containers(self) -> None:
        """Every task and container in k8s.io: their shims and mounts go with them."""
        tasks = self.ctr("tasks", "ls", "-q", check=False).stdout.split()
        for task in tasks:
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False, timeout=20)
        for task in tasks:
            self.ctr("tasks", "delete", "-f", task, check=False, timeout=20)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False, timeout=20)

    def _kill_shims(self) -> None:
        """Shims of this node's containerd left after it stopped (they outlive it by design)."""
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(self.socket).encode() in b" ".join(argv):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(proc.name), 9)

    def _unmount_under(self, directory: Path) -> None:
        prefix = str(directory) + "/"
        for _ in range(3):
            mounts = [
                line.split()[1].encode().decode("unicode_escape")
                for line in Path("/proc/self/mounts").read_text().splitlines()
                if line.split()[1].startswith(prefix)
            ]
            if not mounts:
                return
            for mount in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", mount], capture_output=True, check=False)

    def _remove_pod_netns(self) -> None:
        """Network namespaces containerd made for this node's pods (cni-<uuid>, bind-mounted
        under /var/run/netns), recognised by a veth peer on our bridge or none at all."""
        netns_dir = Path("/var/run/netns")
        if not netns_dir.is_dir():
            return
        for entry in netns_dir.iterdir():
            if not entry.name.startswith("cni-"):
                continue
            links = subprocess.run(
                ["ip", "-n", entry.name, "-o", "-4", "addr", "show"], capture_output=True, text=True, check=False
            ).stdout
            if " 10.244.0." in links or "inet " not in links.replace("inet 127.0.0.1", ""):
                subprocess.run(["ip", "netns", "delete", entry.name], capture_output=True, check=False)

    def _cleanup_iptables(self) -> None:
        """kube-proxy's chains (its own --cleanup), then what is left of the chains the
        kubelet (KUBE-FIREWALL, KUBE-KUBELET-CANARY) and the CNI plugins (CNI-*) made."""
        with contextlib.suppress(ControlPlaneError, FileNotFoundError):
            subprocess.run(
                [str(self.binary("kube-proxy")), "--cleanup", "--proxy-mode=iptables"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        prefixes = ("KUBE-", "CNI-")
        for table in ("nat", "filter", "mangle"):
            listing = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=False)
            rules = listing.stdout.splitlines()
            for rule in rules:  # jumps from the built-in chains first, then the chains themselves
                words = rule.split()
                jumps = any(w == "-j" and words[i + 1].startswith(prefixes) for i, w in enumerate(words[:-1]))
                if words[:1] == ["-A"] and not words[1].startswith(prefixes) and jumps:
                    subprocess.run(["iptables", "-t", table, "-D", *words[1:]], capture_output=True, check=False)
            chains = [
                rule.split()[1] for rule in rules if rule.startswith("-N ") and rule.split()[1].startswith(prefixes)
            ]
            for chain in chains:
                subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True, check=False)
            for chain in chains:
                subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True, check=False)

    def _remove_cgroups(self) -> None:
        """The kubelet's /kubepods hierarchy in every cgroup controller, deepest first
        (empty by now: every container is gone)."""
        for controller in Path("/sys/fs/cgroup").glob("*/kubepods"):
            for directory in sorted(controller.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if directory.is_dir():
                    with contextlib.suppress(OSError):
                        directory.rmdir()
            with contextlib.suppress(OSError):
                controller.rmdir()

    def _load_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}


# --- helpers ---------------------------------------------------------------------------------


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} exited with {result.returncode}: {result.stderr.strip()}")
    return result


def _write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path) -> None:
    import yaml

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "node", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "node"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


# --- command line (make node-up, make cluster-down) -------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.cluster.node", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "import"))
    parser.add_argument("images", nargs="*", help="import: images of hack/images/build.sh")
    parser.add_argument("--dir", type=Path, default=DEFAULT_STATE_DIR, help="control plane state directory")
    parser.add_argument("--kubeconfig", type=Path, default=DEFAULT_KUBECONFIG)
    parser.add_argument("--timeout", type=float, default=300.0)
    options = parser.parse_args(argv)
    cp = ControlPlane(options.dir, kubeconfig=options.kubeconfig, detach=True)
    node = Node(cp)
    if options.command == "up":
        if node.running() and node.ready():
            print(f"node {node.name} already up")
            return 0
        if not cp.with_node:
            print("node-up: this control plane was started without with_node: run make cluster-up", file=sys.stderr)
            return 1
        try:
            node.start(timeout=options.timeout)
        except ControlPlaneError as error:
            print(f"node-up failed: {error}", file=sys.stderr)
            return 1
        print(f"node {node.name} Ready in {node.started_seconds:.1f}s (pods {POD_CIDR}, NodePorts on {NODE_IP})")
        print(f"  containerd: {node.socket}   logs: {node.log_dir}   stop: make cluster-down")
        return 0
    if options.command == "import":
        if not node.running():
            print("the node is not running (make node-up): images built, not imported")
            return 0
        node.import_images(*options.images)
        print(f"imported {' '.join(image_name(image) for image in options.images)} into {node.name}")
        return 0
    if options.command == "down":
        was_running = any(node.components.pid(name) is not None for name in COMPONENTS)
        node.stop()
        print("node stopped and cleaned up" if was_running else "node was not running (cleaned up)")
        return 0
    ready = node.running() and node.ready()
    print(f"node {node.name} {'Ready' if ready else 'down'}")
    return 0 if ready else 3


if __name__ == "__main__":
    sys.exit(main())
