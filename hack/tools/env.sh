# Sourced by hack/tools/*.sh: the tool cache root and the Go environment for building
# into it. Keep the cache-root rule in step with tests/infra/tools.py.
AUTHGATE_TOOLS_DIR="${AUTHGATE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/authgate-tools}"
export AUTHGATE_TOOLS_DIR
TOOLS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$TOOLS_SRC/versions.env"

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
# One module and build cache for every tool and version: a version bump rebuilds only
# what changed. Independent of the user's own Go caches and go env file.
export GOMODCACHE="$AUTHGATE_TOOLS_DIR/.go/mod"
export GOCACHE="$AUTHGATE_TOOLS_DIR/.go/build"
export GOTOOLCHAIN=local
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"
export GOENV=off
export GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"
