"""The Go-built tools from `make tools` (hack/tools/build.sh) run and are the versions
pinned in hack/tools/versions.env (a stamped version, not v0.0.0 or "dev")."""

from __future__ import annotations

import re
import subprocess

import pytest
from tests.infra.tools import TOOLS, require_built, tool_version

pytestmark = pytest.mark.integration

VERSION_COMMANDS = {
    "kube-apiserver": ["--version"],  # Kubernetes v1.36.3
    "kubectl": ["version", "--client"],  # Client Version: v1.36.3
    "etcd": ["--version"],  # etcd Version: 3.6.16
    "etcdctl": ["version"],  # etcdctl version: 3.6.16
    "helm": ["version", "--short"],  # v4.3.1
    "kubeconform": ["-v"],  # v0.7.0
    "traefik": ["version"],  # Version: v3.6.12
    "kubelet": ["--version"],  # Kubernetes v1.36.3
    "kube-controller-manager": ["--version"],
    "kube-scheduler": ["--version"],
    "kube-proxy": ["--version"],
    "containerd": ["--version"],  # containerd github.com/containerd/containerd/v2 v2.4.2
    "containerd-shim-runc-v2": ["-v"],  # Version:  v2.4.2
    "ctr": ["--version"],  # ctr github.com/containerd/containerd/v2 v2.4.2
    "coredns": ["-version"],  # CoreDNS-1.15.0
    "pause": ["-v"],  # pause.c v1.36.3 (the version build.sh compiles in)
}


def test_every_tool_has_a_version_check() -> None:
    assert set(VERSION_COMMANDS) == set(TOOLS)


@pytest.mark.parametrize("name", TOOLS)
def test_tool_reports_pinned_version(name: str) -> None:
    binary = require_built(name)
    result = subprocess.run(
        [str(binary), *VERSION_COMMANDS[name]], capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    number = re.escape(tool_version(name).removeprefix("v"))
    assert re.search(rf"(?<![\w.])v?{number}(?![\w.])", output), f"{name}: want {tool_version(name)} in {output!r}"
