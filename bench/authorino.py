"""Authorino (v0.27.0, built from Go modules by `hack/tools/build.sh authorino`) as a speed
peer, run the way it runs in a cluster: it reads its AuthConfig from a real kube-apiserver.

The control plane is the tests' driver (hack/cluster/controlplane.py: etcd + kube-apiserver
on free ports, no node); the AuthConfig CRD comes from Authorino's own module source. The
AuthConfig is the bench policy (bench/issuer.py) in Authorino's terms:

- identity: a JWT from the bench issuer, keys by OIDC discovery (`issuerUrl`), as authgate
  finds them;
- authorization: `iss` equal to the issuer and `aud` equal to the resource (Authorino checks
  neither by default), and the `mcp:read` scope (authgate's one scope rule);
- response: the identity headers authgate sends (subject, roles, scopes, issuer, client id).

Not mirrored: authgate's `typ: at+jwt` check (Authorino does not expose the JOSE header to
its rules) and `requiredClaims: [sub]`. Authorino logs at `error` level, like authgate at
`--log-level warning`: no line per request.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from hack.cluster.controlplane import ControlPlane
from tests.infra.ports import free_port

from bench.issuer import RESOURCE

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "hack" / "tools" / "build.sh"
NAMESPACE = "default"


def built(name: str) -> str | None:
    """The cached binary of a bench tool (hack/tools/build.sh --print-path), or None."""
    done = subprocess.run([str(BUILD), "--print-path", name], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def tool_version(name: str) -> str:
    done = subprocess.run([str(BUILD), "--list"], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            return parts[1]
    return "unknown"


def crd_path() -> Path:
    """install/crd/authorino.kuadrant.io_authconfigs.yaml of the downloaded module."""
    env = {**os.environ, **_go_env()}
    version = tool_version("authorino")
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/kuadrant/authorino@{version}"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    directory = Path(json.loads(done.stdout)["Dir"])
    return directory / "install" / "crd" / "authorino.kuadrant.io_authconfigs.yaml"


def _go_env() -> dict[str, str]:
    """GOMODCACHE and friends of hack/tools/env.sh (the shared tools cache)."""
    script = f". {ROOT / 'hack' / 'tools' / 'env.sh'} && env"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    wanted = ("GOMODCACHE", "GOCACHE", "GOTOOLCHAIN", "GOFLAGS", "GOENV", "GOPROXY")
    return {k: v for k, _, v in (line.partition("=") for line in done.stdout.splitlines()) if k in wanted}


def auth_config(host: str, issuer: str) -> dict:
    """The bench policy as an Authorino v1beta3 AuthConfig (see the module docstring)."""

    def plain(selector: str) -> dict:
        return {"plain": {"selector": selector}}

    return {
        "apiVersion": "authorino.kuadrant.io/v1beta3",
        "kind": "AuthConfig",
        "metadata": {"name": "bench", "namespace": NAMESPACE},
        "spec": {
            "hosts": [host],
            "authentication": {"bench-issuer": {"jwt": {"issuerUrl": issuer}}},
            "authorization": {
                "issuer-audience-scope": {
                    "patternMatching": {
                        "patterns": [
                            {"selector": "auth.identity.iss", "operator": "eq", "value": issuer},
                            {"selector": "auth.identity.aud", "operator": "eq", "value": RESOURCE},
                            {"selector": "auth.identity.scope", "operator": "matches", "value": "(^| )mcp:read( |$)"},
                        ]
                    }
                }
            },
            "response": {
                "success": {
                    "headers": {
                        "x-auth-subject": plain("auth.identity.sub"),
                        "x-auth-roles": {"plain": {"value": "reader"}},
                        "x-auth-scopes": plain("auth.identity.scope"),
                        "x-auth-issuer": plain("auth.identity.iss"),
                        "x-auth-client-id": plain("auth.identity.client_id"),
                    }
                }
            },
        },
    }


@dataclass
class Authorino:
    process: subprocess.Popen
    control_plane: ControlPlane
    grpc_port: int
    http_port: int
    log_path: Path

    @property
    def check_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/check"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.control_plane.stop()


def start(work: Path, host: str, issuer: str, token: str, prefix: list[str]) -> Authorino:
    """A control plane, the CRD and the AuthConfig, then Authorino; returns once the bench
    token is allowed with the identity headers (and no token is refused) on raw HTTP."""
    binary = built("authorino")
    if binary is None:
        raise RuntimeError("authorino is not built: run `hack/tools/build.sh authorino` (`make bench` does)")
    control_plane = ControlPlane(work / "cluster").start()
    try:
        control_plane.kubectl("apply", "--server-side", "-f", str(crd_path()))
        manifest = work / "authconfig.yaml"
        manifest.write_text(yaml.safe_dump(auth_config(host, issuer)))
        deadline = time.monotonic() + 60
        while control_plane.kubectl("apply", "-f", str(manifest), check=False).returncode != 0:
            if time.monotonic() > deadline:  # the CRD not served yet: retry, then fail loudly
                control_plane.kubectl("apply", "-f", str(manifest))
            time.sleep(0.5)
        grpc_port, http_port, oidc_port, metrics_port, health_port = (free_port() for _ in range(5))
        log_path = work / "authorino.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    *prefix,
                    binary,
                    "server",
                    f"--ext-auth-grpc-port={grpc_port}",
                    f"--ext-auth-http-port={http_port}",
                    f"--oidc-http-port={oidc_port}",
                    f"--metrics-addr=127.0.0.1:{metrics_port}",
                    f"--health-probe-addr=127.0.0.1:{health_port}",
                    f"--watch-namespace={NAMESPACE}",
                    "--log-level=error",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)},
            )
    except BaseException:
        control_plane.stop()
        raise
    authorino = Authorino(process, control_plane, grpc_port, http_port, log_path)
    try:
        _wait_allowed(authorino, host, token)
    except BaseException:
        authorino.stop()
        raise
    return authorino


def _wait_allowed(authorino: Authorino, host: str, token: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if authorino.process.poll() is not None:
            raise RuntimeError(
                f"authorino exited with {authorino.process.returncode}: {authorino.log_path.read_text()[-3000:]}"
            )
        try:
            response = httpx.get(
                authorino.check_url,
                headers={"Host": host, "Authorization": f"Bearer {token}"},
                timeout=5,
                trust_env=False,
            )
            if response.status_code == 200:
                if response.headers.get("x-auth-subject") != "bench-user":
                    raise RuntimeError(f"authorino allowed without the identity headers: {dict(response.headers)}")
                refused = httpx.get(authorino.check_url, headers={"Host": host}, timeout=5, trust_env=False)
                if refused.status_code != 401:
                    raise RuntimeError(f"authorino answered {refused.status_code} to a request without a token")
                return
            last = f"{response.status_code} {dict(response.headers)} {response.text[:300]}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.2)
    raise RuntimeError(f"authorino never allowed the bench token: {last}\n{authorino.log_path.read_text()[-3000:]}")
