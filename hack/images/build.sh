#!/usr/bin/env bash
# Build the local node's container images daemonless (Debian buildah), as OCI archives in
# the tool cache, and import them into the node's containerd (namespace k8s.io):
#
#   hack/images/build.sh [--import SOCKET] IMAGE ...   build (if needed), then import
#   hack/images/build.sh --print-name IMAGE            the image's name as containerd has it
#
# Images (public registries cannot be reached here, so every one is built locally):
#   base      Debian bookworm with python3.11 and its venv module, from mmdebstrap; keyed
#             by its package list (BASE_PACKAGES below), rebuilt only when that changes
#   authgate  the repository's Dockerfile on that base (BASE_IMAGE), docker.io/library/authgate:dev
#   pause     the pod sandbox (pinned as containerd's sandbox image), from scratch
#   coredns   cluster DNS, from scratch
#   traefik   the in-cluster ingress controller, from scratch
#   test-idp  the test IdP (hack/idp/server.mjs, oidc-provider) with the host's Node.js runtime
#             on the base (test-idp.Containerfile); needs `make idp`
#   mcp-server  examples/mcp-server/server.py with the MCP SDK on the base (mcp-server.Containerfile)
# The last two are tagged by a hash of their inputs: a changed input is a new image.
# The binaries come from hack/tools/build.sh (cached by version). The machine's CA bundle
# (for package downloads through a TLS-inspecting registry access) is handed to the
# Dockerfile as the build secret `pip_cert`: mounted for one step, never in a layer.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$root/hack/tools/env.sh"

BASE_SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,ca-certificates,libstdc++6
CA_BUNDLE="${AUTHGATE_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
IMAGES_DIR="$AUTHGATE_TOOLS_DIR/images"
export BUILDAH_FORMAT=oci

die() { echo "images/build.sh: $*" >&2; exit 2; }

base_key() { printf '%s\n' "$BASE_SUITE" "$BASE_PACKAGES" "essential" "nodocs" | sha256sum | cut -c1-12; }

image_name() {
  case "$1" in
    base) echo "localhost/authgate-base:$BASE_SUITE-$(base_key)" ;;
    authgate) echo "docker.io/library/authgate:dev" ;;
    pause) echo "localhost/authgate/pause:$KUBERNETES_VERSION" ;;
    coredns) echo "localhost/authgate/coredns:$COREDNS_VERSION" ;;
    traefik) echo "localhost/authgate/traefik:$TRAEFIK_VERSION" ;;
    test-idp) echo "localhost/authgate/test-idp:$(test_idp_key)" ;;
    mcp-server) echo "localhost/authgate/mcp-server:$(mcp_server_key)" ;;
    *) die "unknown image '$1' (images: base authgate pause coredns traefik test-idp mcp-server)" ;;
  esac
}
node_runtime() { command -v node || die "node not found (Node.js 20, hack/install-system-packages.sh)"; }
# The MCP SDK version the tests' client uses (the worktree's venv), so server and client match.
mcp_version() {
  "$root/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null ||
    die "no MCP SDK in .venv: make venv"
}
test_idp_key() {
  { "$(node_runtime)" --version; image_name base; cd "$root" && sha256sum hack/idp/server.mjs hack/idp/package-lock.json \
    hack/images/test-idp.Containerfile; } | sha256sum | cut -c1-12
}
mcp_server_key() {
  { mcp_version; image_name base; cd "$root" && sha256sum examples/mcp-server/server.py \
    hack/images/mcp-server.Containerfile; } | sha256sum | cut -c1-12
}
archive() { echo "$IMAGES_DIR/$(image_name "$1" | tr '/:' '__').oci.tar"; }
tool() { "$root/hack/tools/build.sh" "$1" >&2 && "$root/hack/tools/build.sh" --print-path "$1"; }
have_local() { buildah inspect --type image "$1" >/dev/null 2>&1; }

need_buildah() {
  command -v buildah >/dev/null || die "buildah not found: apt-get install buildah (hack/install-system-packages.sh)"
}

# Push a built image (in buildah's storage) to its OCI archive, by rename; skipped when
# the archive already holds this very image (its ID is kept beside it).
save() { # image
  local name file id
  name="$(image_name "$1")" file="$(archive "$1")"
  id="$(buildah images --quiet --no-trunc "$name" | head -n 1)"
  [ -s "$file" ] && [ "$(cat "$file.id" 2>/dev/null)" = "$id" ] && return 0
  rm -f "$file.tmp"
  buildah push --quiet "$name" "oci-archive:$file.tmp:$name" >/dev/null
  mv -f "$file.tmp" "$file"
  echo "$id" >"$file.id"
}

build_base() {
  local name tmp
  name="$(image_name base)"
  have_local "$name" && return 0
  if [ ! -s "$IMAGES_DIR/base-$(base_key).tar" ]; then
    command -v mmdebstrap >/dev/null || die "mmdebstrap not found: apt-get install mmdebstrap"
    echo "building the $BASE_SUITE base root filesystem ($BASE_PACKAGES)" >&2
    tmp="$IMAGES_DIR/base-$(base_key).tar.tmp"
    # No documentation, manual pages or translations: smaller, and nothing reads them.
    mmdebstrap --quiet --format=tar --variant=essential --include="$BASE_PACKAGES" \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      "$BASE_SUITE" "$tmp"
    mv -f "$tmp" "$IMAGES_DIR/base-$(base_key).tar"
    # Bases of other package lists are superseded.
    find "$IMAGES_DIR" -maxdepth 1 -name 'base-*.tar' ! -name "base-$(base_key).tar" -delete
  fi
  local ctr mnt
  ctr="$(buildah from --quiet scratch)"
  mnt="$(buildah mount "$ctr")"
  tar -C "$mnt" -xf "$IMAGES_DIR/base-$(base_key).tar"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/sh "$ctr"
  buildah commit --quiet --rm "$ctr" "$name" >/dev/null
}

build_authgate() {
  build_base
  local secret=() key stamp
  # The inputs: the build context (as .dockerignore keeps it), the Dockerfile, the base.
  key="$(cd "$root" && { find pyproject.toml README.md service operator -type f \
    ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' | LC_ALL=C sort | xargs sha256sum
    sha256sum Dockerfile; image_name base; } | sha256sum | cut -c1-16)"
  stamp="$IMAGES_DIR/authgate.inputs"
  # Unchanged inputs and the image still there: nothing to do. Otherwise a full build:
  # buildah's --layers cache (Debian's 1.28) loses the build stage's files that the final
  # stage bind-mounts once that stage is cached, so layers are not reused.
  if [ "$(cat "$stamp" 2>/dev/null)" = "$key" ] && have_local "$(image_name authgate)"; then return 0; fi
  [ -s "$CA_BUNDLE" ] && secret=(--secret "id=pip_cert,src=$CA_BUNDLE")
  buildah build --quiet --layers=false --network host --pull=never \
    --build-arg "BASE_IMAGE=$(image_name base)" "${secret[@]}" \
    -t "$(image_name authgate)" -f "$root/Dockerfile" "$root" >/dev/null
  echo "$key" >"$stamp"
}

# A one-binary image from scratch: scratch_image IMAGE BINARY USER [ARGS...]
scratch_image() {
  local image="$1" binary="$2" user="$3" ctr
  shift 3
  [ -s "$(archive "$image")" ] && have_local "$(image_name "$image")" && return 0
  ctr="$(buildah from --quiet scratch)"
  buildah copy --quiet --chmod 0755 "$ctr" "$binary" "/$(basename "$binary")" >/dev/null
  buildah config --user "$user" --entrypoint "[\"/$(basename "$binary")\"]" --cmd "" "$ctr"
  buildah commit --quiet --rm "$ctr" "$(image_name "$image")" >/dev/null
}
build_pause() { scratch_image pause "$(tool pause)" 65535; }
build_coredns() { scratch_image coredns "$(tool coredns)" 65532; }
build_traefik() { scratch_image traefik "$(tool traefik)" 65532; }

# An image from one of the Containerfiles beside this script, on the base, from a staged
# context: containerfile_image IMAGE CONTEXT [BUILD ARGS...]
containerfile_image() {
  local image="$1" context="$2" secret=()
  shift 2
  [ -s "$(archive "$image")" ] && have_local "$(image_name "$image")" && return 0
  build_base
  [ -s "$CA_BUNDLE" ] && secret=(--secret "id=pip_cert,src=$CA_BUNDLE")
  buildah build --quiet --layers=false --network host --pull=never \
    --build-arg "BASE_IMAGE=$(image_name base)" "$@" "${secret[@]}" \
    -t "$(image_name "$image")" -f "$here/$image.Containerfile" "$context" >/dev/null
  # Images of older inputs are superseded: their tags and archives go.
  local name repo current
  name="$(image_name "$image")" repo="${name%:*}" current="$(basename "$(archive "$image")")"
  buildah images --format '{{.Name}}:{{.Tag}}' | grep "^$repo:" | grep -vxF "$name" | xargs -r buildah rmi >/dev/null 2>&1 || true
  find "$IMAGES_DIR" -maxdepth 1 -name "$(echo "$repo" | tr '/:' '__')_*" ! -name "$current*" -delete
}
build_test_idp() {
  [ -f "$root/hack/idp/node_modules/oidc-provider/package.json" ] || die "hack/idp/node_modules missing: make idp"
  local context
  context="$(mktemp -d)"
  cp "$(node_runtime)" "$context/node"
  mkdir "$context/idp"
  cp -r "$root/hack/idp/server.mjs" "$root/hack/idp/package.json" "$root/hack/idp/node_modules" "$context/idp/"
  containerfile_image test-idp "$context" || { rm -rf "$context"; return 1; }
  rm -rf "$context"
}
build_mcp_server() {
  local context
  context="$(mktemp -d)"
  cp "$root/examples/mcp-server/server.py" "$context/"
  containerfile_image mcp-server "$context" --build-arg "MCP_VERSION=$(mcp_version)" || { rm -rf "$context"; return 1; }
  rm -rf "$context"
}

import() { # socket image
  local ctr_bin
  ctr_bin="$(tool ctr)"
  "$ctr_bin" --address "$1" -n k8s.io images import --no-unpack=false "$(archive "$2")" >/dev/null
}

socket=""
case "${1:-}" in
  --print-name) [ $# -eq 2 ] || die "usage: build.sh --print-name IMAGE"; image_name "$2"; exit 0 ;;
  --import) [ $# -ge 2 ] || die "usage: build.sh --import SOCKET IMAGE ..."; socket="$2"; shift 2 ;;
  -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
[ $# -gt 0 ] || die "name an image (base authgate pause coredns traefik test-idp mcp-server)"
need_buildah
mkdir -p "$IMAGES_DIR"
for image in "$@"; do
  image_name "$image" >/dev/null
  start=$SECONDS
  "build_${image//-/_}"
  save "$image"
  echo "image $(image_name "$image"): $(archive "$image") ($(du -h "$(archive "$image")" | cut -f1) archive, built in $((SECONDS - start))s)"
  [ -n "$socket" ] && import "$socket" "$image"
done
exit 0
