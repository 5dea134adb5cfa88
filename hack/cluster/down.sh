#!/usr/bin/env bash
# Stop the local control plane started by hack/cluster/up.sh (the processes named in
# .local/cluster/*.pid, only if they still are ours). Logs and certificates stay in
# .local/cluster/ for a look; the next up.sh starts a fresh cluster.
#
#   hack/cluster/down.sh [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3  # down/status need only the standard library
exec "$PYTHON" -m hack.cluster.controlplane down "$@"
