"""Drivers of the third-party components the tests run for real, on 127.0.0.1, never mocks.
Nothing here imports tests/support or authgate itself (authgate's drivers are in tests/support).

- `availability`: a missing tool skips locally and fails under CI=true.
- `ports`, `processes`, `threaded_server`: free ports; a process or an in-thread Uvicorn
  server, started until ready and stopped for sure.
- `tls`: a per-run test CA. `keys`: signing keys and tokens, forgeries included.
- `idp`: the oidc-provider identity provider from `hack/idp/`; `jwks_server`: a small
  issuer whose faults tests switch on.
- `upstream`: an echo app showing which headers reached it.
- `nginx`, `envoy`, `traefik`: the example configs from `examples/`, rendered onto test ports.
- `tools`, `schemas`: the Go-built tools (kube-apiserver, helm, kubeconform...) and
  kubeconform's offline schemas; `cluster`, `netns`: a real control plane and
  network-namespace test hosts; `browser`: headless Chromium; `mcp`: the MCP SDK's client
  and the example MCP server.
"""
