"""Real-component test infrastructure: processes on 127.0.0.1, never mocks.

- `ports`: free TCP ports on loopback.
- `processes`: start a command, wait until it is ready, stop it for sure.
- `tls`: a per-run test CA issuing server and client certificates.
- `idp`: the oidc-provider identity provider from `hack/idp/`.
- `upstream`: an echo server showing which headers reached the app.
- `nginx`, `envoy`: the example configs from `examples/`, rendered onto test ports.
"""
