#!/usr/bin/env bash
# Build the offline, strict kubeconform schema directory for tests/integration/
# test_cluster_manifests.py (tests/infra/schemas.py finds it):
#
#   $AUTHGATE_TOOLS_DIR/schemas-<key>/{kind}-{group's first label}-{version}.json
#
# <key> hashes the module versions (hack/schemas/versions.env, KUBERNETES_VERSION and
# TRAEFIK_VERSION of hack/tools/versions.env) and the generator, so a bump builds a new
# directory and an unchanged one is reused (idempotent; a second run only prints the path).
# Modules come from the Go module proxy into the shared module cache (hack/tools/env.sh).
# The repository's own CRDs (crds/) are not cached here: the tests convert them per run.
#
#   hack/schemas/build.sh               build if missing; print the directory
#   hack/schemas/build.sh --print-path  print the directory if built, else exit 1
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../tools/env.sh
. "$root/hack/tools/env.sh"
# shellcheck source=versions.env
. "$here/versions.env"

generator="$here/openapi2jsonschema.py"
key="$({
  echo "kubernetes=$KUBERNETES_VERSION gateway-api=$GATEWAY_API_VERSION envoy-gateway=$ENVOY_GATEWAY_VERSION"
  echo "istio-api=$ISTIO_API_VERSION traefik=$TRAEFIK_VERSION"
  cat "$generator"
} | sha256sum | cut -c1-12)"
out="$AUTHGATE_TOOLS_DIR/schemas-$key"

if [ "${1:-}" = "--print-path" ]; then
  [ -f "$out/.complete" ] && { echo "$out"; exit 0; }
  exit 1
fi
if [ -f "$out/.complete" ]; then
  echo "$out"
  exit 0
fi

PYTHON="${PYTHON:-$root/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
"$PYTHON" -c 'import yaml' 2>/dev/null || { echo "build.sh: $PYTHON lacks PyYAML (run make venv)" >&2; exit 1; }

# `go mod download` of a module@version needs no go.mod; -mod=readonly is for builds.
export GOFLAGS="${GOFLAGS/-mod=readonly/}"
module_dir() {
  local dir
  dir="$(cd "$AUTHGATE_TOOLS_DIR" && "$GO" mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  [ -d "$dir" ] || { echo "build.sh: go mod download $1 gave no directory" >&2; exit 1; }
  echo "$dir"
}

start=$SECONDS
mkdir -p "$AUTHGATE_TOOLS_DIR"
kubernetes="$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")"
gateway_api="$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")"
envoy_gateway="$(module_dir "github.com/envoyproxy/gateway@$ENVOY_GATEWAY_VERSION")"
istio_api="$(module_dir "istio.io/api@$ISTIO_API_VERSION")"
traefik="$(module_dir "github.com/traefik/traefik/v3@$TRAEFIK_VERSION")"

# Envoy Gateway's CRDs reference Gateway API types: keep the pair the one it was built with.
grep -Eq "^[[:space:]]*sigs\.k8s\.io/gateway-api[[:space:]]+$GATEWAY_API_VERSION([[:space:]]|$)" "$envoy_gateway/go.mod" || {
  echo "build.sh: Envoy Gateway $ENVOY_GATEWAY_VERSION requires another sigs.k8s.io/gateway-api than" \
    "GATEWAY_API_VERSION=$GATEWAY_API_VERSION: $(grep 'sigs.k8s.io/gateway-api ' "$envoy_gateway/go.mod")" >&2
  exit 1
}

crd_args=()
# Only files holding CRDs (config/crd/standard also has a ValidatingAdmissionPolicy).
for file in \
  "$gateway_api"/config/crd/standard/*.yaml \
  "$envoy_gateway"/charts/gateway-helm/charts/crds/crds/generated/gateway.envoyproxy.io_*.yaml \
  "$istio_api"/kubernetes/customresourcedefinitions.gen.yaml \
  "$traefik"/docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml; do
  [ -f "$file" ] || { echo "build.sh: missing $file" >&2; exit 1; }
  grep -q '^kind: CustomResourceDefinition' "$file" && crd_args+=(--crd "$file")
done

tmp="$(mktemp -d "$AUTHGATE_TOOLS_DIR/.schemas-$key.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" "$generator" --out "$tmp" \
  --k8s-openapi "$kubernetes/api/openapi-spec/v3" \
  --istio-mesh-proto-dir "$istio_api/mesh/v1alpha1" \
  "${crd_args[@]}"
{
  echo "k8s.io/kubernetes $KUBERNETES_VERSION"
  echo "sigs.k8s.io/gateway-api $GATEWAY_API_VERSION (standard channel)"
  echo "github.com/envoyproxy/gateway $ENVOY_GATEWAY_VERSION"
  echo "istio.io/api $ISTIO_API_VERSION"
  echo "github.com/traefik/traefik/v3 $TRAEFIK_VERSION"
} >"$tmp/VERSIONS"
touch "$tmp/.complete"
chmod 755 "$tmp"
# Another build may have finished first: keep its directory.
if mv -T "$tmp" "$out" 2>/dev/null; then
  trap - EXIT
else
  rm -rf "$tmp"
fi
echo "schemas: $(find "$out" -name '*.json' | wc -l) files, $(du -sh "$out" | cut -f1), $((SECONDS - start)) s" >&2
echo "$out"
