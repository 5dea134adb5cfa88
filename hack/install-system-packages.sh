#!/usr/bin/env bash
# Debian packages the tests and benchmarks run for real: nginx (auth_request), wrk, iproute2,
# chromium and libnss3-tools (Playwright drives Debian's Chromium for the browser login tests, since
# `playwright install` cannot download here; certutil makes a throwaway NSS database trusting the test CA);
# runc, the CNI plugins, iptables, conntrack, buildah and mmdebstrap for the local node and its images.
# Idempotent: installs only what is missing; apt-get update at most once.
set -euo pipefail
need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need+=(iproute2)  # network-namespace test hosts
[ -x /usr/bin/chromium ] || need+=(chromium)  # tests/infra/browser.py launches this very path
command -v certutil >/dev/null 2>&1 || need+=(libnss3-tools)
# The local node (hack/cluster/node.py) and its images (hack/images/build.sh).
[ -x /usr/sbin/runc ] || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
command -v conntrack >/dev/null 2>&1 || [ -x /usr/sbin/conntrack ] || need+=(conntrack)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
