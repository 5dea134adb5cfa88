#!/usr/bin/env bash
# Stop the local node (make node-up) and the control plane started by hack/cluster/up.sh
# (the processes named in .local/cluster/*.pid, only if they still are ours). Logs and
# certificates stay in .local/cluster/ for a look; the next up.sh starts a fresh cluster.
#
#   hack/cluster/down.sh [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3  # down/status need only the standard library
# The node first (hack/cluster/node.py: its pods, mounts, links and iptables rules), then
# the control plane it belongs to.
[ "$(id -u)" -ne 0 ] || "$PYTHON" -m hack.cluster.node down "$@"
exec "$PYTHON" -m hack.cluster.controlplane down "$@"
