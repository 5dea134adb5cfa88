"""Token exchange (RFC 8693) in-process: what `tokenExchange` adds to a check.

    python -m bench.exchange        # about 15 s; writes bench/EXCHANGE.md

`AuthService.check` µs per request, best of 5 repeats of many iterations each, decision
log off, against the real test IdP (oidc-provider over https on loopback, a throwaway CA),
with one caller token whose validation is a verified-token cache hit in every row:

- (a) baseline: the same policy without `tokenExchange`;
- (b) exchange configured, the exchanged token cached (the steady state per caller token);
- (c) exchange uncached: the exchange cache is emptied before every check, so each one is
  a full RFC 8693 exchange: a POST to the IdP's token endpoint (client_secret_basic) over
  a kept-alive loopback TLS connection, the IdP's work (client authentication, subject
  token validation, signing the new token), and the answer's parsing. That row is
  dominated by the IdP round trip, not by authgate.
"""

from __future__ import annotations

import base64
import datetime
import logging
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.infra.idp import (
    EXCHANGE_AUDIENCE,
    EXCHANGE_CLIENT,
    RESOURCES_BY_ALG,
    SERVICE_CLIENT,
    OidcProvider,
    install_problem,
)
from tests.infra.tls import TestCA

from authgate.check.request import CheckRequest
from authgate.check.tokens.jwks import JwksSettings
from authgate.outbound.egress import EgressPolicy
from authgate.policy import compile_document
from authgate.server.service import AuthService, ServiceSettings
from bench.micro import REPEAT, best_async, run_on_uvloop

REPORT = Path(__file__).resolve().with_name("EXCHANGE.md")
RESOURCE = RESOURCES_BY_ALG["RS256"]  # https://mcp.example.com/mcp


@dataclass
class Result:
    baseline_us: float
    cached_us: float
    uncached_us: float
    iterations: dict[str, int]
    exchanges: int  # exchanges the uncached row made (one per check)


def snapshot_document(generation: int, issuer: str, token_endpoint: str | None) -> dict:
    spec: dict = {
        "resource": RESOURCE,
        "issuers": [{"issuer": issuer}],
        "scopeRoles": [{"scope": "mcp:read", "role": "reader"}],
    }
    secrets = []
    if token_endpoint is not None:
        spec["tokenExchange"] = {
            "tokenEndpoint": token_endpoint,
            "clientId": EXCHANGE_CLIENT.client_id,
            "clientSecretRef": {"name": "exchange", "key": "secret"},
            "audience": EXCHANGE_AUDIENCE,
            "scopes": ["downstream:read"],
        }
        secrets.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "exchange", "namespace": "default"},
                "data": {"secret": base64.b64encode(EXCHANGE_CLIENT.client_secret.encode()).decode()},
            }
        )
    policy = {
        "apiVersion": "authgate.dev/v1alpha1",
        "kind": "OAuthPolicy",
        "metadata": {"name": "mcp", "namespace": "default"},
        "spec": spec,
    }
    return {"formatVersion": 1, "generation": generation, "policies": [policy], "secrets": secrets}


async def _measure(idp: OidcProvider, ca: TestCA) -> Result:
    settings = ServiceSettings(
        egress=EgressPolicy(allow=("127.0.0.1",), ca_bundle=str(ca.ca_path)),
        jwks=JwksSettings(refresh_interval=3600.0),  # no refresh while measuring
    )
    service = AuthService(settings)
    token = idp.client_credentials_token(SERVICE_CLIENT.client_id, SERVICE_CLIENT.client_secret, RESOURCE, "mcp:read")
    request = CheckRequest(
        host="mcp.example.com", path="/mcp/tools", method="POST", authorization=f"Bearer {token}", request_id="bench"
    )
    iterations: dict[str, int] = {}
    try:
        # (a) no exchange configured
        service.load(compile_document(snapshot_document(1, idp.issuer, None), settings.validation))
        keys = service.keys.get(service.snapshot.policies[0].issuers[0].key_source)
        await keys.refresh()  # discovery + JWKS, once
        if keys.index is None:
            raise RuntimeError(f"keys not loaded: {keys.last_error}")
        decision = await service.check(request, "nginx")
        assert decision.allowed, decision
        assert not any(name.lower() == "authorization" for name, _ in decision.upstream_headers)
        baseline_us, iterations["baseline"] = await best_async(lambda: service.check(request, "nginx"))

        # (b) exchange configured, exchanged token cached
        service.load(compile_document(snapshot_document(2, idp.issuer, idp.token_endpoint), settings.validation))
        decision = await service.check(request, "nginx")
        assert decision.allowed, decision
        [exchanged] = [value for name, value in decision.upstream_headers if name == "Authorization"]
        assert exchanged.startswith("Bearer ") and token not in exchanged
        before = service.exchanger.exchanges
        cached_us, iterations["exchange cached"] = await best_async(lambda: service.check(request, "nginx"))
        assert service.exchanger.exchanges == before, "the cached row made exchanges"

        # (c) exchange uncached: a full exchange with the IdP per check
        cache = service.exchanger._cache

        async def uncached():
            cache.clear()
            return await service.check(request, "nginx")

        assert (await uncached()).allowed
        before = service.exchanger.exchanges
        uncached_us, iterations["exchange uncached"] = await best_async(uncached)
        exchanges = service.exchanger.exchanges - before
        assert exchanges >= iterations["exchange uncached"] * REPEAT, "the uncached row hit the cache"
    finally:
        await service.stop()
    return Result(baseline_us, cached_us, uncached_us, iterations, exchanges)


def measure(idp: OidcProvider, ca: TestCA) -> Result:
    return run_on_uvloop(_measure(idp, ca))


def render(result: Result) -> str:
    rows = [
        ("(a) no exchange configured (baseline)", result.baseline_us, "baseline"),
        ("(b) exchange configured, exchanged token cached", result.cached_us, "exchange cached"),
        ("(c) exchange uncached (includes the IdP round trip)", result.uncached_us, "exchange uncached"),
    ]
    lines = [
        "| case | µs per check | overhead vs (a), µs | iterations per repeat |",
        "|---|---:|---:|---:|",
    ]
    for label, value, key in rows:
        overhead = "—" if key == "baseline" else f"{value - result.baseline_us:+.1f}"
        lines.append(f"| {label} | {value:.1f} | {overhead} | {result.iterations[key]} |")
    return "\n".join(lines)


def write_report(result: Result, table: str) -> None:
    REPORT.write_text(
        f"""# Token exchange: cost per check

Generated by `python -m bench.exchange` on {datetime.date.today().isoformat()}
({platform.python_implementation()} {platform.python_version()}, {platform.machine()}).

`AuthService.check` in-process, µs per request, best of {REPEAT} repeats; decision log off;
one caller token whose validation is a verified-token cache hit in every row. The IdP is
the test oidc-provider (`tests/infra/idp.py`) over https on loopback with a throwaway CA.

{table}

- (b) - (a) = **{result.cached_us - result.baseline_us:+.1f} µs**: what a configured exchange
  costs per request once the caller's token has been exchanged: the bearer token parsed a
  second time, the SHA-256 cache key and lookup, and a copy of the Decision with one more
  upstream header (`dataclasses.replace`).
- (c) - (a) = **{result.uncached_us - result.baseline_us:+.1f} µs**: a full RFC 8693 exchange per
  check ({result.exchanges} exchanges measured). This includes the IdP round trip over a
  kept-alive loopback TLS connection and oidc-provider's own work (client authentication,
  subject-token validation, signing); it is paid once per caller token and then cached
  until shortly before the exchanged token expires. A remote IdP adds its network latency.
"""
    )


def main() -> None:
    problem = install_problem()
    if problem:
        raise SystemExit(f"the test IdP is not installed: {problem}")
    logging.getLogger("authgate.decision").setLevel(logging.WARNING)
    logging.getLogger("authgate").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="authgate-bench-exchange-") as directory:
        ca = TestCA(Path(directory) / "pki")
        with OidcProvider(Path(directory) / "idp", ca=ca) as idp:
            result = measure(idp, ca)
    table = render(result)
    print(table)
    print(f"\noverhead (b) - (a): {result.cached_us - result.baseline_us:+.1f} µs")
    print(f"overhead (c) - (a): {result.uncached_us - result.baseline_us:+.1f} µs (includes the IdP round trip)")
    write_report(result, table)
    print(f"\nwrote {REPORT}")


if __name__ == "__main__":
    main()
