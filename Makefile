# authgate developer entry points. Every target sets up what it needs by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
IDP_STAMP := hack/idp/node_modules/.installed-$(shell cat hack/idp/package-lock.json 2>/dev/null | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help venv run test check lint format fuzz soak bench bench-tools tools system-packages idp go-tools schemas cluster-up cluster-down node-up image chart-crds bench-operator clean

help:
	@echo "make run     - authgate demo: the service plus a local demo issuer, with curl lines to try"
	@echo "make test    - every test (unit, integration with real oidc-provider, nginx, Envoy)"
	@echo "make check   - lint (ruff, import contracts, hadolint) and the unit tests; no tools needed"
	@echo "make lint    - ruff check and format check, import contracts, hadolint"
	@echo "make cluster-up   - a local etcd + kube-apiserver (kubeconfig: .local/kubeconfig) to try the operator"
	@echo "make node-up - a real node for it (containerd, kubelet, kube-proxy, scheduler, controller-manager,"
	@echo "               CoreDNS); root"
	@echo "make image   - build the authgate image daemonless (buildah) as authgate:dev, into the node if up"
	@echo "make cluster-down - stop the node and the control plane, clean up what they changed"
	@echo "make bench   - benchmarks: authgate, baselines, Envoy and Authorino side by side (bench/REPORT.md);"
	@echo "               builds Authorino, ghz and vegeta once (cached); quick check: make bench BENCH_ARGS=--quick"
	@echo "make soak    - 10 minutes at 70% of the maximum rate, mixed tokens: 5xx, RSS, p99 drift (bench/SOAK.md)"
	@echo "make tools   - install the test tools: Debian nginx and wrk, npm oidc-provider, and the Go-built"
	@echo "               kube-apiserver, etcd, kubectl, helm, kubeconform, traefik, the node's binaries"
	@echo "               (cached by version)"

$(PY_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,operator]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(PY_STAMP)

run: venv
	$(BIN)/authgate demo

$(IDP_STAMP): hack/idp/package.json hack/idp/package-lock.json
	npm ci --prefix hack/idp --no-audit --no-fund --loglevel=error
	@rm -f hack/idp/node_modules/.installed-*
	@touch $@

idp: $(IDP_STAMP)

system-packages:
	@hack/install-system-packages.sh

# Go-built tools, once per version, into a cache outside the repository (hack/tools/versions.env).
go-tools:
	hack/tools/build.sh

# Offline kubeconform schemas: built-in kinds and the gateway projects' CRDs.
schemas: venv go-tools
	PYTHON=$(BIN)/python hack/schemas/build.sh

tools: venv system-packages idp go-tools schemas

test: tools
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile hack/images/*.Containerfile

# The fast loop: lint (with the import contracts) and the unit tests; installs no tools.
check: lint
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every configuration of issue #14 side by side (bench/REPORT.md and its PNG plots), then the
# token-exchange and facade benchmarks. The peers and load tools (Authorino, ghz, vegeta) are built here only, never by
# `make tools`; matplotlib comes from the optional `bench` extra, never installed by `make test`.
# A quick check of the harness: make bench BENCH_ARGS=--quick (or --rounds 1 --duration 3).
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-extra-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

$(BENCH_STAMP): $(PY_STAMP)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,operator,bench]'
	@rm -f $(VENV)/.bench-extra-*
	@touch $@

bench-tools:
	hack/tools/build.sh bench

bench: tools bench-tools $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.exchange
	$(BIN)/python -m bench.facade
	$(BIN)/python -m bench.dpop

# Coverage-guided fuzzing of the untrusted-input parsers (atheris; minutes, not in CI): fuzz/REPORT.md.
FUZZ_SECONDS ?= 60
fuzz: venv
	$(BIN)/pip install -q --disable-pip-version-check "atheris>=2.3"
	$(BIN)/python -m fuzz --seconds $(FUZZ_SECONDS)

# 10 minutes at 70 % of the measured maximum, mixed tokens (bench/SOAK.md); not in CI.
SOAK_MINUTES ?= 10
soak: tools
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)

# apply-to-enforced on a real control plane with 1, 100, 1,000 policies (bench/OPERATOR.md); root.
bench-operator: tools
	$(BIN)/python -m bench.operator_latency

cluster-up: venv
	hack/tools/build.sh kube-apiserver kubectl etcd
	hack/cluster/up.sh

cluster-down:
	hack/cluster/down.sh

# A node for the control plane of cluster-up (hack/cluster/node.py); root.
node-up: venv system-packages
	hack/tools/build.sh kubernetes containerd coredns pause
	$(BIN)/python -m hack.cluster.node up

# The repository's Dockerfile built daemonless on a local Debian base (hack/images/build.sh),
# then imported into the node's containerd as docker.io/library/authgate:dev when it runs.
image: venv system-packages
	hack/images/build.sh authgate
	$(BIN)/python -m hack.cluster.node import authgate

# charts/authgate/crds/ is a copy of crds/ (tests/integration/test_chart.py keeps them identical).
chart-crds:
	cp crds/*.yaml charts/authgate/crds/

clean:
	rm -rf $(VENV) hack/idp/node_modules .pytest_cache .ruff_cache
