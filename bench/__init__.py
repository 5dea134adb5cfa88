"""authgate benchmarks: `python -m bench` (or `make bench`) writes bench/REPORT.md.

- the configurations of issue #14 side by side, alternating rounds (bench/table.py): a raw
  ASGI app and a Starlette route (bench/baseline.py), authgate over HTTP and gRPC, a trivial
  grpc.aio servicer (bench/grpc_ceiling.py), Envoy's jwt_authn and ext_authz (bench/envoy.py),
  Authorino on a local control plane (bench/authorino.py); wrk and ghz (bench/loadgen.py);
- RSS against distinct cached tokens and p99 under a paced load (bench/memory.py);
- snapshot compile time and per-check cost against policies and issuers (bench/scale.py);
- token validation: µs per validation through authgate's real path, next to a raw
  `cryptography` verify (the floor) and jwcrypto's full `JWT()` validation (bench/micro.py);
- PNG plots (bench/plots.py, matplotlib from the `bench` extra).

Everything runs on 127.0.0.1 and is bounded in time; nothing is fetched from outside.
"""
