#!/usr/bin/env bash
# Start the local control plane (etcd + kube-apiserver, envtest-style) for development:
# state in .local/cluster/, admin kubeconfig in .local/kubeconfig. Idempotent: when it is
# already up it says so and exits 0. Implementation: hack/cluster/controlplane.py (the
# same code the pytest fixture uses). Needs the venv and the Go-built tools (`make tools`).
#
#   hack/cluster/up.sh [--timeout SECONDS] [--dir DIR] [--kubeconfig PATH]
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || { echo "up.sh: $PYTHON not found: run \`make venv\` first" >&2; exit 2; }
exec "$PYTHON" -m hack.cluster.controlplane up "$@"
