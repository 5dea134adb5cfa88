"""Test hosts in Linux network namespaces: processes with their own non-loopback address,
standing in for pods (the apiserver refuses loopback addresses in EndpointSlices).

    with NetnsHost("auth0") as host:             # netns ag-auth0, address 10.200.<index>.2
        server = host.run([sys.executable, "-m", "http.server", "--bind", host.address, "8080"],
                          log_dir=tmp_path, ready=TcpPort(8080, host.address))
        httpx.get(f"http://{host.address}:8080/")       # the host reaches the namespace
        host.can_connect(API_ADDRESS, cluster.port)      # the namespace reaches the apiserver

Per host, index i (1..254; picked automatically unless given):

    host side                               namespace ag-<name>
    agh<i>  10.200.i.1/24  <── veth ──>     eth0  10.200.i.2/24, lo up, default via 10.200.i.1
    lo      10.200.0.1/32  (label lo:ag-api; shared, added once, left in place)

Host <-> namespace traffic uses the directly connected /24, and the namespace reaches
10.200.0.1 (where kube-apiserver listens, bound to 0.0.0.0) through its default route:
both end in the host's own addresses, so no IP forwarding is needed (it stays off).
Namespace <-> namespace traffic is NOT routed (it would need ip_forward): run whatever
talks to several hosts (the operator, test clients) on the host side.

Inside, /etc/hosts names the host itself (`<name>`, `ag-<name>`) and the apiserver
(`kubernetes.default.svc` and the other names in its certificate: 10.200.0.1), and
/etc/resolv.conf points at the namespace's own loopback, so a lookup of anything else
fails at once instead of timing out (`ip netns exec` mounts /etc/netns/ag-<name>/*).

Crash safety: each namespace is recorded in /run/authgate-netns/<netns> with its owner's
pid and start time. The first host made in a process deletes leftovers named ag-* (netns)
and agh* (veth) whose owner is gone, so a killed earlier run cannot block this one, and a
concurrent test session on the same machine keeps its own. Closing a host ends the
processes still inside it, then deletes the veth pair and the namespace.

Needs root (CI runs as root): `require_netns()` skips locally / fails under CI=true.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from tests.infra.availability import require_tool
from tests.infra.cluster import API_ADDRESS
from tests.infra.processes import Process, ReadyCondition

NETNS_PREFIX = "ag-"
VETH_PREFIX = "agh"
API_LABEL = "lo:ag-api"  # 10.200.0.1/32 on lo carries this label
STATE_DIR = Path("/run/authgate-netns")
ETC_NETNS = Path("/etc/netns")  # `ip netns exec` bind-mounts /etc/netns/<netns>/* over /etc/*
MAX_INDEX = 254
API_HOST_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,11}$")  # ag-<name> stays short and shell-safe

_cleaned_stale = False


class NetnsError(RuntimeError):
    """A namespace or link could not be set up or torn down."""


def netns_problem() -> str | None:
    """Why network-namespace test hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root for ip netns (CI runs as root)"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`) for network namespaces"
    return None


def require_netns() -> None:
    """Skip the calling test locally when netns hosts are impossible; fail under CI=true."""
    require_tool(netns_problem())


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; raises NetnsError with its stderr on failure when `check`."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def ensure_api_address() -> None:
    """10.200.0.1/32 on the host's loopback device, labelled `lo:ag-api` (idempotent).
    Every namespace reaches it through its default route; it is left in place for other
    sessions. (Not a dummy interface: these VMs' kernels have no dummy driver.)"""
    with _locked():
        if f" {API_ADDRESS}/32 " not in ip("-o", "-4", "addr", "show", "dev", "lo").stdout:
            ip("addr", "add", f"{API_ADDRESS}/32", "dev", "lo", "label", API_LABEL)


def cleanup_stale() -> list[str]:
    """Delete ag-* namespaces and agh* veths whose owning process is gone (or unknown);
    returns what was deleted."""
    removed: list[str] = []
    with _locked():
        records = _records()
        live = {netns: record for netns, record in records.items() if _owner_alive(record)}
        live_links = {f"{VETH_PREFIX}{record['index']}" for record in live.values()}
        for netns in _namespaces():
            if netns.startswith(NETNS_PREFIX) and netns not in live:
                _kill_namespace_processes(netns)
                ip("netns", "delete", netns, check=False)
                removed.append(f"netns {netns}")
        for link in _links():
            if re.fullmatch(rf"{VETH_PREFIX}\d+", link) and link not in live_links:
                ip("link", "delete", link, check=False)
                removed.append(f"link {link}")
        for directory in ETC_NETNS.glob(f"{NETNS_PREFIX}*"):
            if directory.name not in live:
                shutil.rmtree(directory, ignore_errors=True)
        for netns in records.keys() - live.keys():
            (STATE_DIR / netns).unlink(missing_ok=True)
    return removed


class NetnsHost:
    """A network namespace `ag-<name>` joined to the host by a veth pair.

    Attributes: `name`, `index`, `netns` ("ag-<name>"), `address` (10.200.<index>.2,
    inside), `host_address` (10.200.<index>.1, the host side), `host_interface`
    ("agh<index>"), `api_address` (10.200.0.1). Created by the constructor; `close()`
    (or leaving the `with` block) removes it.
    """

    def __init__(self, name: str, index: int | None = None) -> None:
        global _cleaned_stale
        if not _NAME.match(name):
            raise ValueError(f"netns host name {name!r}: 1-12 of [a-z0-9-], starting alphanumeric")
        problem = netns_problem()
        if problem:
            raise NetnsError(problem)
        if not _cleaned_stale:
            cleanup_stale()
            _cleaned_stale = True
        ensure_api_address()
        self.name = name
        self.netns = f"{NETNS_PREFIX}{name}"
        self._processes: list[Process] = []
        self._closed = False
        with _locked():
            records = _records()
            if self.netns in records and _owner_alive(records[self.netns]):
                raise NetnsError(f"{self.netns} is in use by pid {records[self.netns]['pid']}")
            used = {record["index"] for record in records.values() if _owner_alive(record)}
            used |= {int(link[len(VETH_PREFIX) :]) for link in _links() if re.fullmatch(rf"{VETH_PREFIX}\d+", link)}
            if index is None:
                index = next((i for i in range(1, MAX_INDEX + 1) if i not in used), None)
                if index is None:
                    raise NetnsError("no free netns host index (1..254)")
            elif not 1 <= index <= MAX_INDEX:
                raise ValueError(f"index {index}: must be 1..{MAX_INDEX}")
            elif index in used:
                raise NetnsError(f"netns host index {index} ({VETH_PREFIX}{index}) is in use")
            self.index = index
            self.host_interface = f"{VETH_PREFIX}{index}"
            self.address = f"10.200.{index}.2"
            self.host_address = f"10.200.{index}.1"
            self.api_address = API_ADDRESS
            # Record first: a crash from here on leaves something cleanup_stale() removes.
            (STATE_DIR / self.netns).write_text(f"{os.getpid()} {_start_time(os.getpid())} {index}\n")
            try:
                self._create()
            except BaseException:
                self._teardown()
                raise

    def _create(self) -> None:
        ns = ("-n", self.netns)
        # Name lookups inside stay inside: a hosts file naming this host and the apiserver
        # (its certificate has the kubernetes.default.svc names), and a resolver that
        # fails at once instead of timing out (the host's DNS server is not reachable from
        # here: nothing is forwarded).
        etc = ETC_NETNS / self.netns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        (etc / "hosts").write_text(
            "127.0.0.1 localhost\n::1 localhost\n"
            f"{self.address} {self.name} {self.netns}\n"
            f"{API_ADDRESS} {' '.join(API_HOST_NAMES)}\n"
        )
        ip("netns", "add", self.netns)
        ip("link", "add", self.host_interface, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        ip("addr", "add", f"{self.host_address}/24", "dev", self.host_interface)
        ip("link", "set", self.host_interface, "up")
        ip(*ns, "link", "set", "lo", "up")
        ip(*ns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        ip(*ns, "link", "set", "eth0", "up")
        ip(*ns, "route", "add", "default", "via", self.host_address)

    # --- running things inside ----------------------------------------------------------

    def command(self, args: Sequence[str | os.PathLike[str]]) -> list[str]:
        """`args` prefixed to run inside the namespace."""
        return ["ip", "netns", "exec", self.netns, *(os.fspath(arg) for arg in args)]

    def run(
        self,
        args: Sequence[str | os.PathLike[str]],
        log_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
        ready: ReadyCondition | None = None,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> Process:
        """Start `args` inside the namespace (a `Process`, log in `log_dir`); with `ready`,
        wait for it. It is stopped by `close()` at the latest."""
        process = Process(
            name or f"{self.name}-{Path(os.fspath(args[0])).name}-{len(self._processes)}",
            self.command(args),
            log_dir=log_dir,
            env=env,
            extra_env=extra_env,
            cwd=cwd,
        )
        self._processes.append(process)
        return process.start(ready, timeout=timeout)

    def exec(
        self, args: Sequence[str | os.PathLike[str]], *, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside the namespace and wait for it."""
        result = subprocess.run(self.command(args), capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise NetnsError(f"in {self.netns}: {' '.join(map(str, args))} exited {result.returncode}: {result.stderr}")
        return result

    def can_connect(self, host: str, port: int, timeout: float = 3.0) -> bool:
        """Whether a TCP connection from inside the namespace to host:port succeeds."""
        code = f"import socket; socket.create_connection(({host!r}, {port}), timeout={timeout}).close()"
        return self.exec([sys.executable, "-c", code], timeout=timeout + 10, check=False).returncode == 0

    # --- teardown -------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for process in self._processes:
            process.stop()
        with _locked():
            self._teardown()

    def _teardown(self) -> None:
        _kill_namespace_processes(self.netns)
        ip("link", "delete", self.host_interface, check=False)  # deletes both ends
        ip("netns", "delete", self.netns, check=False)
        shutil.rmtree(ETC_NETNS / self.netns, ignore_errors=True)
        (STATE_DIR / self.netns).unlink(missing_ok=True)
        if self.netns in _namespaces():
            raise NetnsError(f"could not delete {self.netns}")

    def __enter__(self) -> NetnsHost:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NetnsHost({self.name!r}, index={self.index}, address={self.address})"


# --- internals ------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One process at a time changes ag-* namespaces and links (re-entrant per process)."""
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(STATE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0
            fcntl.flock(lock, fcntl.LOCK_UN)


_lock_depth = 0


def _records() -> dict[str, dict[str, int]]:
    records: dict[str, dict[str, int]] = {}
    for path in STATE_DIR.glob(f"{NETNS_PREFIX}*"):
        try:
            pid, start, index = (int(field) for field in path.read_text().split())
        except (OSError, ValueError):
            continue
        records[path.name] = {"pid": pid, "start": start, "index": index}
    return records


def _start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22); -1 if gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return -1


def _owner_alive(record: Mapping[str, int]) -> bool:
    return record["start"] != -1 and _start_time(record["pid"]) == record["start"]


def _namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def _links() -> list[str]:
    names = []
    for line in ip("-o", "link", "show").stdout.splitlines():
        # "12: agh3@if2: <BROADCAST,...> ..." -> agh3
        names.append(line.split(":", 2)[1].strip().split("@", 1)[0])
    return names


def _kill_namespace_processes(netns: str, timeout: float = 5.0) -> None:
    """End the processes still running inside `netns` (TERM, then KILL)."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        pids = [int(pid) for pid in ip("netns", "pids", netns, check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and ip("netns", "pids", netns, check=False).stdout.split():
            time.sleep(0.05)
