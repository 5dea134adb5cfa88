"""Real Envoy in front of a check, for bench/table.py: its configuration and its start.

Three ways of checking the same token: ext_authz over gRPC (to authgate or Authorino),
ext_authz over HTTP to authgate, and Envoy's native `jwt_authn` filter (signature, issuer,
audience and expiry only: no rules, no roles, no identity headers). The route answers itself
(`direct_response`), so the numbers are the cost of the check, not of an upstream. Envoy runs
one worker (`--concurrency 1`). The measurements are rows of bench/REPORT.md (`python -m bench`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from tests.infra.ports import free_port

from bench.issuer import CHECK_URL, RESOURCE

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
