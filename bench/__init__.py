"""authgate benchmarks: `python -m bench` (or `make bench`) writes bench/REPORT.md.

- throughput: wrk against `authgate serve`'s `/ext-authz/nginx` next to a bare Starlette
  route under the same Uvicorn settings, alternating runs (bench/throughput.py);
- token validation: µs per validation through authgate's real path, next to a raw
  `cryptography` verify (the floor) and jwcrypto's full `JWT()` validation (bench/micro.py).

Everything runs on 127.0.0.1 and is bounded in time; nothing is fetched from outside.
"""
