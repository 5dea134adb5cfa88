"""Requests/s through real Envoy with three ways of checking the same token:
ext_authz over gRPC to authgate, ext_authz over HTTP to authgate, and Envoy's native
`jwt_authn` filter (signature, issuer, audience and expiry only: no rules, no roles, no
identity headers). The route answers itself (`direct_response`), so the numbers are the
cost of the check, not of an upstream.

    .venv/bin/python -m bench.envoy [--duration 10] [--rounds 3]

Envoy and authgate run pinned to CPU 0, wrk to CPU 1; runs alternate between the three
configurations and the report gives medians and ratios from this one session.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from tests.infra.ports import free_port

from bench import throughput
from bench.issuer import CHECK_URL, RESOURCE, SCOPE, StaticIssuer, policy_yaml

REPORT = Path(__file__).with_name("ENVOY.md")
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ENVOY = str(Path(sys.executable).with_name("envoy"))
HOST = CHECK_URL.split("/")[2]
PATH = "/" + CHECK_URL.split("/", 3)[3]


def _cluster(name: str, port: int, http2: bool = False) -> dict:
    cluster = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
                    ]
                }
            ],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def envoy_config(kind: str, listen: int, admin: int, grpc_port: int, check_port: int, jwks: dict, issuer: str) -> dict:
    ext_authz = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        "failure_mode_allow": False,
    }
    if kind == "grpc":
        auth_filter = {
            "name": "envoy.filters.http.ext_authz",
            "typed_config": {
                **ext_authz,
                "grpc_service": {"envoy_grpc": {"cluster_name": "authgate"}, "timeout": "1s"},
            },
        }
        clusters = [_cluster("authgate", grpc_port, http2=True)]
    elif kind == "http":
        auth_filter = {
            "name": "envoy.filters.http.ext_authz",
            "typed_config": {
                **ext_authz,
                "allowed_headers": {"patterns": [{"exact": "authorization", "ignore_case": True}]},
                "http_service": {
                    "server_uri": {"uri": f"http://127.0.0.1:{check_port}", "cluster": "authgate", "timeout": "1s"},
                    "path_prefix": "/ext-authz/envoy",
                    "authorization_response": {
                        "allowed_upstream_headers": {"patterns": [{"prefix": "x-auth-", "ignore_case": True}]}
                    },
                },
            },
        }
        clusters = [_cluster("authgate", check_port)]
    else:
        auth_filter = {
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {
                    "bench": {
                        "issuer": issuer,
                        "audiences": [RESOURCE],
                        "forward": True,
                        "local_jwks": {"inline_string": json.dumps(jwks)},
                    }
                },
                "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
            },
        }
        clusters = []
    manager = {
        "@type": HCM,
        "stat_prefix": "bench",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "bench",
                    "domains": [HOST],
                    "routes": [
                        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
                    ],
                }
            ]
        },
        "http_filters": [
            auth_filter,
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


def start_envoy(
    kind: str, work: Path, prefix: list[str], name: str | None = None, **ports
) -> tuple[subprocess.Popen, str]:
    """Envoy with check `kind`; `name` (default: the kind) names its config and log files."""
    name = name or kind
    listen, admin = free_port(), free_port()
    config = work / f"envoy-{name}.yaml"
    config.write_text(yaml.safe_dump(envoy_config(kind, listen, admin, **ports)))
    log = open(work / f"envoy-{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [
            *prefix,
            ENVOY,
            "-c",
            str(config),
            "--concurrency",
            "1",
            "--base-id",
            str(admin),
            "--disable-hot-restart",
            "--log-level",
            "error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=1, trust_env=False).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"envoy {name} did not start: {(work / f'envoy-{name}.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{listen}{PATH}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    server_prefix, wrk_prefix, pinning = throughput.pinning()
    work = Path(tempfile.mkdtemp(prefix="authgate-envoy-bench-"))
    processes: list[subprocess.Popen] = []
    results: dict[str, list[float]] = {"grpc": [], "http": [], "jwt_authn": []}
    with StaticIssuer() as issuer:
        token = issuer.token("ES256", RESOURCE, SCOPE)
        policy = work / "policy.yaml"
        policy.write_text(policy_yaml(issuer.issuer))
        ports = {name: free_port() for name in ("port", "check", "grpc", "admin", "metrics")}
        log = open(work / "authgate.log", "wb")  # noqa: SIM115
        authgate = subprocess.Popen(
            [
                *server_prefix,
                throughput.AUTHGATE,
                "--log-level",
                "warning",
                "serve",
                "--policy",
                str(policy),
                "--address",
                "127.0.0.1",
                "--port",
                str(ports["port"]),
                "--check-port",
                str(ports["check"]),
                "--grpc-port",
                str(ports["grpc"]),
                "--admin-port",
                str(ports["admin"]),
                "--metrics-port",
                str(ports["metrics"]),
                "--insecure-http",
                "--egress-allow",
                "127.0.0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(authgate)
        try:
            throughput._wait_http(f"http://127.0.0.1:{ports['admin']}/readyz", authgate, work / "authgate.log")
            urls = {}
            for kind in ("grpc", "http", "jwt_authn"):
                process, url = start_envoy(
                    kind,
                    work,
                    server_prefix,
                    grpc_port=ports["grpc"],
                    check_port=ports["check"],
                    jwks=issuer.jwks(),
                    issuer=issuer.issuer,
                )
                processes.append(process)
                deadline = time.monotonic() + 15
                while (
                    httpx.get(
                        url, headers={"Host": HOST, "Authorization": f"Bearer {token}"}, timeout=5, trust_env=False
                    ).status_code
                    != 200
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{kind}: the valid token is not allowed")
                    time.sleep(0.1)
                if httpx.get(url, headers={"Host": HOST}, timeout=5, trust_env=False).status_code != 401:
                    raise RuntimeError(f"{kind}: a request without a token is not refused")
                urls[kind] = url
            script = work / "envoy.lua"
            script.write_text(f'wrk.headers["Host"] = "{HOST}"\nwrk.headers["Authorization"] = "Bearer {token}"\n')
            for _ in range(args.rounds):
                for kind, url in urls.items():
                    target = throughput.Target(kind, url, processes[0], work / "authgate.log")
                    throughput.run_wrk(target, script, wrk_prefix, 1.0, args.connections)
                    result = throughput.run_wrk(target, script, wrk_prefix, args.duration, args.connections)
                    if result.non_2xx or result.socket_errors:
                        raise RuntimeError(f"{kind}: {result.non_2xx} non-2xx, {result.socket_errors} socket errors")
                    results[kind].append(result.rps)
                    print(f"{kind}: {result.rps:,.0f} req/s", flush=True)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(10)
    medians = {kind: statistics.median(values) for kind, values in results.items()}
    lines = [
        "# Envoy: ext_authz (gRPC, HTTP) to authgate next to Envoy's jwt_authn",
        "",
        f"Written by `python -m bench.envoy` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        f"Envoy 1 worker (`--concurrency 1`), authgate one process, {pinning}; wrk 1 thread, "
        f"{args.connections} connections, {args.duration:.0f} s per run after 1 s warm-up, {args.rounds} rounds "
        "alternating the three configurations. Every request carries the same valid ES256 token; the route "
        "answers 200 itself (`direct_response`). jwt_authn checks signature, iss, aud and exp only; authgate "
        "also applies the policy's rules, roles and typ, and returns identity headers.",
        "",
        "| check | median req/s | runs | vs jwt_authn |",
        "|---|---:|---|---:|",
    ]
    for kind in ("grpc", "http", "jwt_authn"):
        runs = ", ".join(f"{v:,.0f}" for v in results[kind])
        lines.append(f"| {kind} | {medians[kind]:,.0f} | {runs} | {medians[kind] / medians['jwt_authn']:.2f} |")
    lines += ["", f"gRPC / HTTP ext_authz: {medians['grpc'] / medians['http']:.2f}"]
    REPORT.write_text("\n".join(lines) + "\n")
    print(REPORT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
