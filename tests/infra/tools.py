"""The Go-built test tools (kube-apiserver, kubectl, etcd, etcdctl, helm, kubeconform,
traefik, and the local node's kubelet, kube-controller-manager, kube-scheduler, kube-proxy,
containerd, containerd-shim-runc-v2, ctr, coredns, pause), built by `make tools`
(`hack/tools/build.sh`) into a cache outside the repository, keyed by the versions pinned in `hack/tools/versions.env`:

    ${AUTHGATE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/authgate-tools}/<tool>-<version>/bin/<tool>

    kubectl = require_built("kubectl")   # a Path; skips locally / fails under CI=true if missing
    helm = tool_path("helm")             # a Path, or None when it is not built
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from tests.infra.availability import require_tool

VERSIONS_ENV = Path(__file__).resolve().parents[2] / "hack" / "tools" / "versions.env"

# Each tool and the versions.env variable holding its version (as in build.sh).
VERSION_VARS = {
    "kube-apiserver": "KUBERNETES_VERSION",
    "kubectl": "KUBERNETES_VERSION",
    "etcd": "ETCD_VERSION",
    "etcdctl": "ETCD_VERSION",
    "helm": "HELM_VERSION",
    "kubeconform": "KUBECONFORM_VERSION",
    "traefik": "TRAEFIK_VERSION",
    "kubelet": "KUBERNETES_VERSION",
    "kube-controller-manager": "KUBERNETES_VERSION",
    "kube-scheduler": "KUBERNETES_VERSION",
    "kube-proxy": "KUBERNETES_VERSION",
    "pause": "KUBERNETES_VERSION",
    "containerd": "CONTAINERD_VERSION",
    "containerd-shim-runc-v2": "CONTAINERD_VERSION",
    "ctr": "CONTAINERD_VERSION",
    "coredns": "COREDNS_VERSION",
}
TOOLS = tuple(VERSION_VARS)


@functools.cache
def versions() -> dict[str, str]:
    """versions.env as a dict: its plain KEY=value lines (comments and blanks skipped)."""
    pinned: dict[str, str] = {}
    for line in VERSIONS_ENV.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{VERSIONS_ENV}: not KEY=value: {line!r}")
        pinned[key.strip()] = value.strip()
    return pinned


def tool_version(name: str) -> str:
    """The pinned version of a tool, e.g. tool_version("kubectl") == "v1.36.3"."""
    try:
        var = VERSION_VARS[name]
    except KeyError:
        raise ValueError(f"unknown tool {name!r} (tools: {', '.join(TOOLS)})") from None
    return versions()[var]


def tools_dir() -> Path:
    """The cache root, by the same rule as hack/tools/env.sh."""
    if root := os.environ.get("AUTHGATE_TOOLS_DIR"):
        return Path(root)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "authgate-tools"


def expected_path(name: str) -> Path:
    """Where the pinned version of a tool lives once built."""
    return tools_dir() / f"{name}-{tool_version(name)}" / "bin" / name


def tool_path(name: str) -> Path | None:
    """The tool's binary at its pinned version, or None when it is not built."""
    path = expected_path(name)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def require_built(name: str) -> Path:
    """The tool's binary; when it is missing the calling test skips (locally) or fails
    (CI=true), saying to run `make tools`."""
    path = tool_path(name)
    if path is None:
        require_tool(f"{name} {tool_version(name)} is not built: run `make tools`")
        raise AssertionError("unreachable")  # require_tool skipped or failed
    return path
