"""A local Kubernetes control plane: etcd plus kube-apiserver, started the way
controller-runtime's envtest starts them. No kubelet, no controller-manager: objects are
stored and validated, nothing runs, nothing is garbage-collected, and a deleted namespace
stays Terminating for good (use a fresh namespace per test).

One implementation for both users:

- `make cluster-up` / `make cluster-down` (hack/cluster/up.sh, down.sh) run
  `python -m hack.cluster.controlplane up|down|status` (status exits 3 when down):
  state in `.local/cluster/`, admin kubeconfig in `.local/kubeconfig`, processes
  detached (they outlive the script).
- the pytest session fixture (tests/infra/cluster.py) starts one in a temporary
  directory; its processes die with the test process (PR_SET_PDEATHSIG) if it is killed.

    cp = ControlPlane(Path(".local/cluster"), kubeconfig=Path(".local/kubeconfig")).start()
    cp.kubectl("get", "--raw", "/readyz").stdout   # "ok"
    cp.server                                       # https://127.0.0.1:<port>
    cp.stop()

Network: the apiserver binds 0.0.0.0 and advertises 10.200.0.1 (`API_ADDRESS`, also the
address of the `kubernetes` Service's endpoints), so one process serves loopback clients
(`cp.server`, the kubeconfig) and processes in the test network namespaces
(tests/infra/netns.py), which reach it at `https://10.200.0.1:<port>` (`cp.netns_server`)
through 10.200.0.1/32 on the host's loopback device (label lo:ag-api, added by netns.py
as root). Binding only 10.200.0.1 would make the control plane need root (to add the
address) and lose 127.0.0.1; the price of 0.0.0.0 is that the port is open on every host
interface, behind TLS client-certificate or token authentication and RBAC. The serving
certificate names localhost, 127.0.0.1, 10.200.0.1 and the in-cluster
`kubernetes.default.svc` names. Clients authenticate with the admin client certificate
(group system:masters) or with service-account tokens; anonymous requests get what RBAC
gives `system:public-info-viewer` (/readyz, /livez, /healthz, /version).

State directory layout:

    pki/       ca.crt ca.key apiserver.crt apiserver.key admin.crt admin.key sa.key sa.pub
    etcd/      etcd's data (wiped at every start: each start is a fresh cluster)
    logs/      etcd.log kube-apiserver.log
    etcd.pid kube-apiserver.pid state.json kubeconfig (unless another path is given)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = ROOT / ".local" / "cluster"
DEFAULT_KUBECONFIG = ROOT / ".local" / "kubeconfig"
BUILD_SH = ROOT / "hack" / "tools" / "build.sh"

API_ADDRESS = "10.200.0.1"  # the apiserver's address for processes in test network namespaces
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES = (SERVICE_ACCOUNT_ISSUER,)
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVING_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVING_IP_ADDRESSES = ("127.0.0.1", API_ADDRESS, "10.0.0.1")  # 10.0.0.1: the `kubernetes` Service
ADMIN_USER, ADMIN_GROUP = "authgate-admin", "system:masters"
CERT_VALIDITY = datetime.timedelta(days=365)
COMPONENTS = ("etcd", "kube-apiserver")  # start order; stopped in reverse


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a component's log, for an error message (the node uses it too)."""
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"--- {path}: missing ---"
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


class ControlPlaneError(RuntimeError):
    """The control plane failed to start, died, or a kubectl call failed."""


class KubectlError(ControlPlaneError):
    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"kubectl {' '.join(args)} exited with {result.returncode}\n"
            f"stderr: {result.stderr.strip()}\nstdout: {result.stdout.strip()[:2000]}"
        )


def built_tool(name: str) -> Path:
    """The Go-built tool's path from `hack/tools/build.sh --print-path` (built by `make tools`)."""
    result = subprocess.run([str(BUILD_SH), "--print-path", name], capture_output=True, text=True, check=False)
    path = Path(result.stdout.strip())
    if result.returncode != 0 or not path.is_file():
        raise ControlPlaneError(f"{name} is not built ({result.stdout.strip()}): run `make tools`")
    return path


def free_port() -> int:
    """A TCP port free on every address right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


class Components:
    """The processes of one state dir. Each starts in its own session, its output in
    `<log_dir>/<name>.log` and its pid in `<state_dir>/<name>.pid`, so a later `down` (another
    process) finds what an `up` left running; a pid counts only while its command line
    still names the state dir. `detach`: the processes outlive the one that started them."""

    def __init__(self, state_dir: Path, log_dir: Path, detach: bool) -> None:
        self.state_dir, self.log_dir, self.detach = state_dir, log_dir, detach
        self._popens: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, args: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None = None) -> None:
        argv = [os.fspath(arg) for arg in args]
        with open(self.log_dir / f"{name}.log", "wb") as log:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                env=env,
                start_new_session=True,
                preexec_fn=None if self.detach else _die_with_parent,
            )
        self._popens[name] = popen
        self._pid_file(name).write_text(f"{popen.pid}\n")

    def pid(self, name: str) -> int | None:
        """The pid of this state dir's `name` process while it runs, else None."""
        popen = self._popens.get(name)
        if popen is not None:
            return popen.pid if popen.poll() is None else None
        try:
            pid = int(self._pid_file(name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_ours(pid, name, self.state_dir) else None

    def stop(self, name: str, timeout: float) -> None:
        pid = self.pid(name)
        popen = self._popens.pop(name, None)
        if pid is not None:
            _stop_group(pid, popen, timeout)
        with contextlib.suppress(FileNotFoundError):
            self._pid_file(name).unlink()

    def _pid_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"


class ControlPlane:
    """etcd + kube-apiserver with their certificates, kubeconfig and pid files in `state_dir`.

    Attributes (paths are valid after `start()`, or for a running one found in `state_dir`):
    `state_dir`, `kubeconfig`, `ca_path`, `ca_key`, `admin_cert`, `admin_key`,
    `sa_signing_key` (RSA private key, PEM), `sa_public_key`, `apiserver_cert`,
    `apiserver_key`, `log_dir`; `port`, `server` (https://127.0.0.1:port),
    `netns_server` (https://10.200.0.1:port), `etcd_url`.

    `with_node=True`: the apiserver admits pods the way a kubelet needs them (the
    ServiceAccount admission plugin on); `make cluster-up` and the node e2e tests set it.

    `detach=True` (the make targets): the processes outlive this Python process, and a
    later `ControlPlane(state_dir)` finds them through the pid files and `state.json`.
    `detach=False` (tests): they get SIGKILL if this process dies without stopping them.
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        binaries: Mapping[str, str | os.PathLike[str]] | None = None,
        detach: bool = False,
        advertise_address: str = API_ADDRESS,
        with_node: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.kubeconfig = Path(kubeconfig).resolve() if kubeconfig else self.state_dir / "kubeconfig"
        self.detach = detach
        self.advertise_address = advertise_address
        self.with_node = with_node  # a kubelet will join (hack/cluster/node.py)
        self._binaries = {name: Path(path) for name, path in (binaries or {}).items()}
        pki = self.state_dir / "pki"
        self.ca_path, self.ca_key = pki / "ca.crt", pki / "ca.key"
        self.apiserver_cert, self.apiserver_key = pki / "apiserver.crt", pki / "apiserver.key"
        self.admin_cert, self.admin_key = pki / "admin.crt", pki / "admin.key"
        self.sa_signing_key, self.sa_public_key = pki / "sa.key", pki / "sa.pub"
        self.etcd_dir = self.state_dir / "etcd"
        self.log_dir = self.state_dir / "logs"
        self.state_file = self.state_dir / "state.json"
        self.components = Components(self.state_dir, self.log_dir, detach)
        self.port: int | None = None
        self.etcd_url: str | None = None
        self.started_seconds: float | None = None  # how long the last start() took
        self._load_state()

    # --- addresses -----------------------------------------------------------------

    @property
    def server(self) -> str:
        """The apiserver URL for clients on this host (the kubeconfig's server)."""
        return f"https://127.0.0.1:{self._require_port()}"

    @property
    def netns_server(self) -> str:
        """The apiserver URL for processes in the test network namespaces."""
        return f"https://{self.advertise_address}:{self._require_port()}"

    def _require_port(self) -> int:
        if self.port is None:
            raise ControlPlaneError(f"no control plane in {self.state_dir}: start() it first")
        return self.port

    def binary(self, name: str) -> Path:
        if name not in self._binaries:
            self._binaries[name] = built_tool(name)
        return self._binaries[name]

    # --- lifecycle -------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> ControlPlane:
        """A fresh cluster: stop leftovers of this state dir, new certificates and etcd
        data, start etcd and kube-apiserver, write the kubeconfig, wait for /readyz."""
        began = time.monotonic()
        self.stop()
        for attempt in range(3):
            self._prepare()
            try:
                self._start_processes(began + timeout)
                break
            except ControlPlaneError as error:
                self.stop()
                # a port taken between free_port() and the bind: try new ports
                if attempt == 2 or "address already in use" not in str(error):
                    raise
        self.started_seconds = time.monotonic() - began
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop kube-apiserver, then etcd (SIGTERM to the process group, SIGKILL after
        `timeout`); only processes whose command line names this state dir."""
        for name in reversed(COMPONENTS):
            self.components.stop(name, timeout)

    def running(self) -> bool:
        """Both processes of this state dir are alive."""
        return all(self.components.pid(name) is not None for name in COMPONENTS)

    def ready(self) -> bool:
        """Running and /readyz answers ok."""
        if not self.running() or self.port is None:
            return False
        try:
            status, _ = self.get("/readyz", timeout=2.0)
        except (OSError, ssl.SSLError, http.client.HTTPException):
            return False
        return status == 200

    def __enter__(self) -> ControlPlane:
        return self if self.running() else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- clients -----------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl with the admin kubeconfig; raises `KubectlError` on failure when `check`."""
        command = [str(self.binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubectlError(args, result)
        return result

    def ssl_context(self, *, admin: bool = True) -> ssl.SSLContext:
        """Trusts the cluster CA; presents the admin client certificate when `admin`."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        if admin:
            context.load_cert_chain(str(self.admin_cert), str(self.admin_key))
        return context

    def get(self, path: str, *, admin: bool = True, timeout: float = 10.0) -> tuple[int, str]:
        """GET `path` from the apiserver over loopback: (status, body)."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self._require_port(), context=self.ssl_context(admin=admin), timeout=timeout
        )
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            connection.close()

    def env(self) -> dict[str, str]:
        """Environment additions for a subprocess using this cluster (KUBECONFIG)."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def log_tail(self, name: str, lines: int = 30) -> str:
        return log_tail(self.log_dir / f"{name}.log", lines)

    # --- internals ---------------------------------------------------------------------

    def _prepare(self) -> None:
        for binary in COMPONENTS:
            self.binary(binary)  # fail before touching anything when one is not built
        shutil.rmtree(self.etcd_dir, ignore_errors=True)
        shutil.rmtree(self.state_dir / "pki", ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        for directory in (self.state_dir, self.log_dir, self.state_dir / "pki"):
            directory.mkdir(parents=True, exist_ok=True)
        self.etcd_dir.mkdir(mode=0o700)
        self._write_pki()
        self.port = free_port()
        self.etcd_url = f"http://127.0.0.1:{free_port()}"
        self._peer_url = f"http://127.0.0.1:{free_port()}"
        self._write_kubeconfig()
        self.state_file.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "etcd_url": self.etcd_url,
                    "kubeconfig": str(self.kubeconfig),
                    "with_node": self.with_node,
                },
                indent=2,
            )
        )

    def _start_processes(self, deadline: float) -> None:
        etcd_args = [
            self.binary("etcd"),
            "--name=authgate",
            f"--data-dir={self.etcd_dir}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={self._peer_url}",
            f"--initial-advertise-peer-urls={self._peer_url}",
            f"--initial-cluster=authgate={self._peer_url}",
            "--unsafe-no-fsync=true",  # a throwaway cluster: speed over durability (envtest does too)
            "--log-level=warn",
        ]
        self.components.spawn("etcd", etcd_args)
        self._wait("etcd", self._etcd_healthy, deadline)
        self.components.spawn("kube-apiserver", self._apiserver_args())
        self._wait("kube-apiserver", self.ready, deadline)

    def restart_apiserver(self, timeout: float = 60.0) -> None:
        """Stop kube-apiserver alone and start it again on the same port, certificates and
        etcd data: what a control-plane upgrade or crash looks like to its clients."""
        self.components.stop("kube-apiserver", 10.0)
        self.components.spawn("kube-apiserver", self._apiserver_args())
        self._wait("kube-apiserver", self.ready, time.monotonic() + timeout)

    def _apiserver_args(self) -> list[str | os.PathLike[str]]:
        return [
            self.binary("kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=0.0.0.0",
            f"--advertise-address={self.advertise_address}",
            f"--secure-port={self.port}",
            f"--cert-dir={self.state_dir / 'pki'}",
            f"--tls-cert-file={self.apiserver_cert}",
            f"--tls-private-key-file={self.apiserver_key}",
            f"--client-ca-file={self.ca_path}",
            # Node + NodeRestriction: what a kubelet (hack/cluster/node.py) needs; harmless
            # without one.
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={self.admin_cert}",
            f"--kubelet-client-key={self.admin_key}",
            "--kubelet-preferred-address-types=InternalIP",  # node names do not resolve here
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={self.sa_public_key}",
            f"--service-account-signing-key-file={self.sa_signing_key}",
            f"--api-audiences={','.join(API_AUDIENCES)}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # ServiceAccount admission stays on only with a node (pods there need their
            # tokens); without one nothing creates the `default` ServiceAccounts it demands.
            *(() if self.with_node else ("--disable-admission-plugins=ServiceAccount",)),
            "--allow-privileged=true",
            "--profiling=false",
        ]

    def _wait(self, name: str, check, deadline: float) -> None:
        while True:
            if self.components.pid(name) is None:
                raise ControlPlaneError(f"{name} exited before it was ready\n{self.log_tail(name)}")
            if check():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{name} not ready in time\n{self.log_tail(name)}")
            time.sleep(0.1)

    def _etcd_healthy(self) -> bool:
        assert self.etcd_url is not None
        host, port = self.etcd_url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=1.0)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            return response.status == 200 and json.loads(response.read()).get("health") == "true"
        except (OSError, ValueError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _load_state(self) -> None:
        try:
            state = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return
        self.port, self.etcd_url = state.get("port"), state.get("etcd_url")
        self.with_node = self.with_node or bool(state.get("with_node"))

    def _write_pki(self) -> None:
        from hack.cluster import pki  # cryptography: only needed to start

        ca = pki.write_ca(self.ca_path, self.ca_key, "authgate local cluster CA", validity=CERT_VALIDITY)
        ca.issue(
            self.apiserver_cert,
            self.apiserver_key,
            common_name="kube-apiserver",
            server=True,
            dns_names=SERVING_DNS_NAMES,
            ip_addresses=tuple(dict.fromkeys((*SERVING_IP_ADDRESSES, self.advertise_address))),
        )
        ca.issue(self.admin_cert, self.admin_key, common_name=ADMIN_USER, organization=ADMIN_GROUP, server=False)
        pki.write_rsa_key_pair(self.sa_signing_key, self.sa_public_key)

    def _write_kubeconfig(self) -> None:
        def data(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "authgate",
                    "cluster": {"server": self.server, "certificate-authority-data": data(self.ca_path)},
                }
            ],
            "users": [
                {
                    "name": ADMIN_USER,
                    "user": {
                        "client-certificate-data": data(self.admin_cert),
                        "client-key-data": data(self.admin_key),
                    },
                }
            ],
            "contexts": [{"name": "authgate", "context": {"cluster": "authgate", "user": ADMIN_USER}}],
            "current-context": "authgate",
        }
        import yaml  # only needed to start

        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.kubeconfig.with_name(self.kubeconfig.name + ".tmp")
        temporary.write_text(yaml.safe_dump(config, sort_keys=False))
        temporary.chmod(0o600)
        temporary.replace(self.kubeconfig)


# --- helpers ------------------------------------------------------------------------------


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the process that started it dies (not
    SIGTERM: a kube-apiserver shutting down gracefully hangs once etcd has gone too)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _is_ours(pid: int, binary: str, state_dir: Path) -> bool:
    """A live (not zombie) process running `binary` with `state_dir` in its arguments."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return False
    if state in ("Z", "X") or not argv or Path(argv[0].decode(errors="replace")).name != binary:
        return False
    return any(str(state_dir) in arg.decode(errors="replace") for arg in argv[1:])


def _alive(pid: int, popen: subprocess.Popen[bytes] | None) -> bool:
    if popen is not None:
        return popen.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _stop_group(pid: int, popen: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM the process group `pid` leads (it was started in its own session), then
    SIGKILL after `timeout`; reaps it when this process is its parent."""
    for signum, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)
        deadline = time.monotonic() + wait
        while _alive(pid, popen) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(pid, popen):
            break
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(1.0)


# --- command line (hack/cluster/up.sh, down.sh) --------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.cluster.controlplane", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_STATE_DIR, help="state directory (%(default)s)")
    parser.add_argument("--kubeconfig", type=Path, default=DEFAULT_KUBECONFIG, help="admin kubeconfig (%(default)s)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for /readyz")
    options = parser.parse_args(argv)
    cp = ControlPlane(options.dir, kubeconfig=options.kubeconfig, detach=True, with_node=True)
    if options.command == "up":
        if cp.ready():
            print(f"control plane already up: {cp.server} (kubeconfig {cp.kubeconfig})")
            return 0
        try:
            cp.start(timeout=options.timeout)
        except ControlPlaneError as error:
            print(f"cluster-up failed: {error}", file=sys.stderr)
            return 1
        print(f"control plane up in {cp.started_seconds:.1f}s: {cp.server}")
        print(f"  from test network namespaces: {cp.netns_server}")
        print(f"  kubeconfig: {cp.kubeconfig}   (export KUBECONFIG={cp.kubeconfig})")
        print(f"  logs: {cp.log_dir}   stop: make cluster-down")
        return 0
    if options.command == "down":
        was_running = any(cp.components.pid(name) is not None for name in COMPONENTS)
        cp.stop()
        print("control plane stopped" if was_running else "control plane was not running")
        return 0
    ready = cp.ready()
    print(f"control plane {'up: ' + cp.server if ready else 'down'} (state {cp.state_dir})")
    return 0 if ready else 3


if __name__ == "__main__":
    sys.exit(main())
