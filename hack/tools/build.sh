#!/usr/bin/env bash
# Build the Go-built test tools once, into a cache outside the repository keyed by
# version (hack/tools/versions.env):
#
#   ${AUTHGATE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/authgate-tools}/<tool>-<version>/bin/<tool>
#
#   hack/tools/build.sh [TOOL ...]        build what is missing (default: every test tool), in parallel
#   hack/tools/build.sh bench             the benchmark tools only (authorino, ghz, vegeta): `make bench`
#   hack/tools/build.sh --list            each tool, its version, built or not
#   hack/tools/build.sh --print-path TOOL the binary's path (exit 1 if it is not built)
#
# Tools: kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler kube-proxy
# (built together; alias: kubernetes), etcd etcdctl (together), helm, kubeconform,
# traefik, containerd containerd-shim-runc-v2 ctr (together), coredns, pause (the
# sandbox process, C from the kubernetes module, linked statically). Bench-only (never built
# by default, CI does not need them): authorino, ghz, vegeta (alias: bench), built from their
# downloaded module source. A tool whose binary exists is skipped without
# running Go. Builds run under `nice -n 10`, share one module and build cache under the
# cache root (a version bump rebuilds incrementally), and are installed by rename, so an
# interrupted build leaves nothing that looks built. Concurrent runs wait on a per-build
# lock instead of building twice. Set TOOLS_JOBS=1 to build one at a time.
set -euo pipefail
. "$(dirname "$0")/env.sh"

KUBERNETES_TOOLS=(kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler kube-proxy)
CONTAINERD_TOOLS=(containerd containerd-shim-runc-v2 ctr)
ALL_TOOLS=("${KUBERNETES_TOOLS[@]}" etcd etcdctl helm kubeconform traefik "${CONTAINERD_TOOLS[@]}" coredns pause)
BENCH_TOOLS=(authorino ghz vegeta) # `make bench` only: not in ALL_TOOLS, so `make tools` and CI skip them

die() { echo "build.sh: $*" >&2; exit 2; }

tool_version() {
  case "$1" in
    kube-apiserver | kubectl | kubelet | kube-controller-manager | kube-scheduler | kube-proxy | pause)
      echo "$KUBERNETES_VERSION" ;;
    etcd | etcdctl) echo "$ETCD_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    kubeconform) echo "$KUBECONFORM_VERSION" ;;
    traefik) echo "$TRAEFIK_VERSION" ;;
    containerd | containerd-shim-runc-v2 | ctr) echo "$CONTAINERD_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    authorino) echo "$AUTHORINO_VERSION" ;;
    ghz) echo "$GHZ_VERSION" ;;
    vegeta) echo "$VEGETA_VERSION" ;;
    *) die "unknown tool '$1' (tools: ${ALL_TOOLS[*]} ${BENCH_TOOLS[*]})" ;;
  esac
}

# The build that produces a tool, and the tools each build produces.
tool_unit() {
  case "$1" in
    kube-apiserver | kubectl | kubelet | kube-controller-manager | kube-scheduler | kube-proxy) echo kubernetes ;;
    etcd | etcdctl) echo etcd ;;
    containerd | containerd-shim-runc-v2 | ctr) echo containerd ;;
    *) echo "$1" ;;
  esac
}
unit_tools() {
  case "$1" in
    kubernetes) echo "${KUBERNETES_TOOLS[@]}" ;;
    etcd) echo etcd etcdctl ;;
    containerd) echo "${CONTAINERD_TOOLS[@]}" ;;
    *) echo "$1" ;;
  esac
}

tool_path() { echo "$AUTHGATE_TOOLS_DIR/$1-$(tool_version "$1")/bin/$1"; }
is_built() { [ -x "$(tool_path "$1")" ]; }

# --- per-build recipes: each builds its binaries into the directory $1 ----------------

# -X flags for version variables: ldflags_x PKG.VAR=VALUE ...
ldflags_x() { local kv; for kv in "$@"; do printf ' -X %s' "$kv"; done; }

# The wrapper module's go.mod must require MODULE at VERSION (else its go.sum is stale).
check_wrapper() { # dir module version hint
  grep -Eq "^[[:space:]]*(require[[:space:]]+)?$2[[:space:]]+$3([[:space:]]|$)" "$TOOLS_SRC/$1/go.mod" ||
    { echo "hack/tools/$1/go.mod does not require $2 $3 (versions.env): $4" >&2; return 1; }
}

build_kubernetes() {
  local out="$1" v="$KUBERNETES_VERSION" major minor p flags=()
  check_wrapper kubernetes k8s.io/kubernetes "$v" "run hack/tools/kubernetes/gen-gomod.sh"
  major="${v#v}"; major="${major%%.*}"
  minor="${v#v*.}"; minor="${minor%%.*}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=("$p.gitVersion=$v" "$p.gitMajor=$major" "$p.gitMinor=$minor"
      "$p.gitTreeState=clean" "$p.gitCommit=")
  done
  # One `go build` for all six: they share most packages.
  (cd "$TOOLS_SRC/kubernetes" && CGO_ENABLED=0 nice -n 10 "$GO" build -mod=readonly \
    -ldflags "-s -w$(ldflags_x "${flags[@]}")" -o "$out/" \
    "${KUBERNETES_TOOLS[@]/#/k8s.io/kubernetes/cmd/}")
}

build_etcd() {
  local out="$1"
  check_wrapper etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "edit hack/tools/etcd/go.mod, go mod tidy"
  # The etcd main package is the module root of server/v3 (so `go build` names it
  # "server"); etcdctl's is the root of etcdctl/v3.
  (cd "$TOOLS_SRC/etcd" && CGO_ENABLED=0 nice -n 10 "$GO" build -mod=readonly -ldflags "-s -w" \
    -o "$out/" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3)
  mv "$out/server" "$out/etcd"
}

build_helm() {
  local out="$1"
  CGO_ENABLED=0 GOBIN="$out" nice -n 10 "$GO" install \
    -ldflags "-s -w$(ldflags_x "helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
      helm.sh/helm/v4/internal/version.gitTreeState=clean)" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

build_kubeconform() {
  local out="$1"
  CGO_ENABLED=0 GOBIN="$out" nice -n 10 "$GO" install \
    -ldflags "-s -w$(ldflags_x "main.version=$KUBECONFORM_VERSION")" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
}

build_traefik() {
  local out="$1" date
  check_wrapper traefik github.com/traefik/traefik/v3 "$TRAEFIK_VERSION" "edit hack/tools/traefik/go.mod, go mod tidy"
  # Its release date (the .info file of the module download) as traefik's BuildDate.
  (cd "$TOOLS_SRC/traefik" && "$GO" mod download github.com/traefik/traefik/v3)
  date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' \
    "$GOMODCACHE/cache/download/github.com/traefik/traefik/v3/@v/$TRAEFIK_VERSION.info" 2>/dev/null || true)"
  (cd "$TOOLS_SRC/traefik" && CGO_ENABLED=0 nice -n 10 "$GO" build -mod=readonly \
    -ldflags "-s -w$(ldflags_x "github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
      "github.com/traefik/traefik/v3/pkg/version.BuildDate=${date:-unknown}")" \
    -o "$out/traefik" github.com/traefik/traefik/v3/cmd/traefik)
}

build_containerd() {
  local out="$1" m=github.com/containerd/containerd/v2 flags
  check_wrapper containerd "$m" "$CONTAINERD_VERSION" "edit hack/tools/containerd/go.mod, go mod tidy"
  flags="-s -w$(ldflags_x "$m/version.Version=$CONTAINERD_VERSION" "$m/version.Revision=" \
    "$m/version.Package=$m")"
  # Static, without cgo (the tags of containerd's own static release build); the shim
  # leaves out gRPC as containerd's Makefile does.
  (cd "$TOOLS_SRC/containerd" && CGO_ENABLED=0 nice -n 10 "$GO" build -mod=readonly \
    -tags "urfave_cli_no_docs osusergo netgo static_build" -ldflags "$flags" -o "$out/" \
    "$m/cmd/containerd" "$m/cmd/ctr" &&
    CGO_ENABLED=0 nice -n 10 "$GO" build -mod=readonly \
      -tags "urfave_cli_no_docs osusergo netgo static_build no_grpc" -ldflags "$flags" \
      -o "$out/containerd-shim-runc-v2" "$m/cmd/containerd-shim-runc-v2")
}

build_coredns() {
  local out="$1"
  check_wrapper coredns github.com/coredns/coredns "$COREDNS_VERSION" "edit hack/tools/coredns/go.mod, go mod tidy"
  (cd "$TOOLS_SRC/coredns" && CGO_ENABLED=0 nice -n 10 "$GO" build -mod=readonly -ldflags "-s -w" \
    -o "$out/coredns" github.com/coredns/coredns)
}

# The pod sandbox's process: pause.c ships in the kubernetes module (build/pause/linux).
build_pause() {
  local out="$1" src
  (cd "$TOOLS_SRC/kubernetes" && "$GO" mod download k8s.io/kubernetes)
  src="$GOMODCACHE/k8s.io/kubernetes@$KUBERNETES_VERSION/build/pause/linux/pause.c"
  [ -f "$src" ] || { echo "no $src" >&2; return 1; }
  "${CC:-cc}" -Os -Wall -Werror -static -DVERSION="$KUBERNETES_VERSION" -o "$out/pause" "$src"
  strip "$out/pause"
}

# The module proxy serves these modules but `go install` refuses them (its deprecation
# look-up of @v/list answers 403), and their go.mod has no replace lines to honour: build
# a writable copy of the downloaded module source, resolving its dependencies (-mod=mod).
build_module_copy() { # out module version package binary ldflags
  local out="$1" module="$2" version="$3" package="$4" binary="$5" ldflags="$6" dir src
  dir="$("$GO" mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$dir" ] || { echo "go mod download $module@$version gave no source directory" >&2; return 1; }
  src="$out/.src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false -mod=mod" nice -n 10 "$GO" build \
    -ldflags "-s -w$ldflags" -o "$out/$binary" "$package")
  rm -rf "$src"
}

build_authorino() {
  build_module_copy "$1" github.com/kuadrant/authorino "$AUTHORINO_VERSION" . authorino \
    "$(ldflags_x "main.version=$AUTHORINO_VERSION")"
}

build_ghz() {
  build_module_copy "$1" github.com/bojand/ghz "$GHZ_VERSION" ./cmd/ghz ghz \
    "$(ldflags_x "main.version=$GHZ_VERSION")"
}

build_vegeta() {
  build_module_copy "$1" github.com/tsenart/vegeta/v12 "$VEGETA_VERSION" . vegeta \
    "$(ldflags_x "main.Version=$VEGETA_VERSION")"
}

# --- one build: lock, re-check, build into a temporary directory, rename into place ---

run_unit() { # unit version log
  local unit="$1" version="$2" log="$3" tmp t start missing=()
  exec 9>"$AUTHGATE_TOOLS_DIR/.locks/$unit-$version.lock"
  if command -v flock >/dev/null && ! flock -n 9; then
    echo "waiting for another run's build of $unit $version"
    flock 9
  fi
  for t in $(unit_tools "$unit"); do is_built "$t" || missing+=("$t"); done
  if [ ${#missing[@]} -eq 0 ]; then echo "$unit $version was built by another run"; return 0; fi
  exec 8>&1 >"$log" 2>&1 # the log is ours alone while we hold the lock
  rm -rf "$AUTHGATE_TOOLS_DIR/.tmp/$unit-$version".* # left by a killed run (we hold the lock)
  tmp="$(mktemp -d "$AUTHGATE_TOOLS_DIR/.tmp/$unit-$version.XXXXXX")"
  trap "rm -rf '$tmp'" EXIT # (this runs in its own subshell)
  start=$SECONDS
  "build_$unit" "$tmp"
  for t in $(unit_tools "$unit"); do
    [ -x "$tmp/$t" ] || { echo "build of $unit produced no $t (have: $(ls "$tmp"))" >&2; return 1; }
    mkdir -p "$(dirname "$(tool_path "$t")")"
    mv -f "$tmp/$t" "$(tool_path "$t")"
  done
  t="built $(unit_tools "$unit") $version in $((SECONDS - start))s"
  echo "$t"
  echo "$t" >&8
}

# --- command line -----------------------------------------------------------------

case "${1:-}" in
  --print-path)
    [ $# -eq 2 ] || die "usage: build.sh --print-path TOOL"
    tool_version "$2" >/dev/null
    p="$(tool_path "$2")"
    [ -x "$p" ] || { echo "$2 $(tool_version "$2") is not built: run \`make tools\` (or hack/tools/build.sh $2)" >&2; exit 1; }
    echo "$p"
    exit 0
    ;;
  --list)
    for t in "${ALL_TOOLS[@]}" "${BENCH_TOOLS[@]}"; do
      if is_built "$t"; then s="built    $(tool_path "$t")"; else s="missing"; fi
      printf '%-15s %-9s %s\n' "$t" "$(tool_version "$t")" "$s"
    done
    exit 0
    ;;
  -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) die "unknown option $1 (see --help)" ;;
esac

want=("$@")
[ ${#want[@]} -gt 0 ] || want=("${ALL_TOOLS[@]}")
expanded=()
for t in "${want[@]}"; do
  case "$t" in
    kubernetes) expanded+=("${KUBERNETES_TOOLS[@]}") ;;
    bench) expanded+=("${BENCH_TOOLS[@]}") ;;
    *) expanded+=("$t") ;;
  esac
done
units=()
for t in "${expanded[@]}"; do
  tool_version "$t" >/dev/null
  is_built "$t" && continue
  u="$(tool_unit "$t")"
  [[ " ${units[*]} " == *" $u "* ]] || units+=("$u")
done
[ ${#units[@]} -gt 0 ] || exit 0

command -v "$GO" >/dev/null 2>&1 || die "Go not found (looked for 'go' on PATH and /usr/local/go/bin/go; set GO=)"
mkdir -p "$AUTHGATE_TOOLS_DIR"/{.locks,.logs,.tmp}
echo "building ${units[*]} into $AUTHGATE_TOOLS_DIR (logs: $AUTHGATE_TOOLS_DIR/.logs)"

declare -A pid_unit=() unit_log=()
jobs_max="${TOOLS_JOBS:-${#units[@]}}"
for u in "${units[@]}"; do
  v="$(tool_version "$(unit_tools "$u" | cut -d' ' -f1)")"
  log="$AUTHGATE_TOOLS_DIR/.logs/$u-$v.log"
  unit_log[$u]="$log"
  while [ "$(jobs -pr | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  (run_unit "$u" "$v" "$log") &
  pid_unit[$!]="$u"
done

failed=()
for pid in "${!pid_unit[@]}"; do
  u="${pid_unit[$pid]}"
  wait "$pid" || failed+=("$u")
done

if [ ${#failed[@]} -gt 0 ]; then
  for u in "${failed[@]}"; do
    echo "=== build of $u FAILED; last lines of ${unit_log[$u]}:" >&2
    tail -n 30 "${unit_log[$u]}" >&2
  done
  echo "build.sh: failed: ${failed[*]}" >&2
  exit 1
fi
