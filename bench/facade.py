"""The OAuth facade's token endpoint: what it adds to the identity provider's own.

    python -m bench.facade          # about 20 s; writes bench/FACADE.md

Real processes on loopback: the test IdP (oidc-provider over https, a throwaway CA) and
`authgate serve` with a facade policy. One public client logs in through the facade twice;
then, in alternating rounds, refresh-token grants are timed one after another over
kept-alive connections:

- direct: the IdP's token endpoint, with authgate's upstream client and the upstream
  refresh token (taken out of the facade's wrapped one with the bench's sealing keys);
- facade: authgate's /oauth2/token with the wrapped refresh token, which opens the
  wrapped token, calls the same IdP endpoint (https, client_secret_basic), checks the
  returned access token for the policy (signature, issuer, audience) and seals a new one.

Both chains rotate (the IdP rotates every refresh token), so every request is real work.
Each facade round leaves from its own loopback address: the facade's per-address rate
limit (token: burst 100) stays out of the measurement.
"""

from __future__ import annotations

import datetime
import logging
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra.idp import OidcProvider, default_clients, install_problem
from tests.infra.tls import TestCA
from tests.support.authgate import Authgate
from tests.support.facade import (
    FACADE_ISSUER,
    POLICY_UID,
    UPSTREAM_CLIENT,
    FacadeHarness,
    client_post,
    facade_from,
    facade_policy,
    sealing_keys_file,
    upstream_client_metadata,
)

from authgate.sealing import SealingKeys
from bench.micro import best_sync
from bench.report import loadavg

REPORT = Path(__file__).resolve().with_name("FACADE.md")
ROUNDS = 3
PER_ROUND = 60  # under the facade's token burst (100) per source address


def sealing_costs(keys: SealingKeys, client_id: str) -> tuple[float, float]:
    """µs to seal and to open a wrapped refresh token (jwcrypto JWE, HKDF-derived key), best of 5."""
    payload = {"cid": client_id, "rt": "r" * 43, "scope": ["mcp:read"], "jti": "0" * 32}
    sealed = keys.seal("refresh", FACADE_ISSUER, POLICY_UID, payload, 60)
    seal_us, _ = best_sync(lambda: keys.seal("refresh", FACADE_ISSUER, POLICY_UID, payload, 60))
    open_us, _ = best_sync(lambda: keys.open("refresh", FACADE_ISSUER, POLICY_UID, sealed))
    return seal_us, open_us


@dataclass
class Samples:
    direct_ms: list[float] = field(default_factory=list)
    facade_ms: list[float] = field(default_factory=list)
    per_round: list[tuple[float, float]] = field(default_factory=list)  # medians (direct, facade)
    seal_us: float = 0.0
    open_us: float = 0.0


def measure(idp: OidcProvider, harness: FacadeHarness, keys: SealingKeys) -> Samples:
    client = harness.register(grant_types=["authorization_code", "refresh_token"])
    # Two logins, two upstream grants (each login is a fresh IdP session): the direct chain
    # continues the first one's upstream refresh token, the facade chain the second's wrapped one.
    upstream = keys.open("refresh", FACADE_ISSUER, POLICY_UID, harness.login(client)["refresh_token"])["rt"]
    wrapped = harness.login(client)["refresh_token"]
    samples = Samples()
    with idp.http_client() as direct_http:
        for round_no in range(ROUNDS):
            direct_round, facade_round = [], []
            for _ in range(PER_ROUND):
                started = time.perf_counter()
                response = direct_http.post(
                    idp.token_endpoint,
                    data={"grant_type": "refresh_token", "refresh_token": upstream},
                    auth=(UPSTREAM_CLIENT.client_id, UPSTREAM_CLIENT.client_secret or ""),
                )
                direct_round.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                upstream = response.json()["refresh_token"]
            source = facade_from(harness, f"127.0.9.{round_no + 1}")
            try:
                for _ in range(PER_ROUND):
                    form = {"grant_type": "refresh_token", "refresh_token": wrapped}
                    started = time.perf_counter()
                    response = client_post(source, "token", form, client)
                    facade_round.append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise SystemExit(f"facade refresh failed: {response.status_code} {response.text[:200]}")
                    wrapped = response.json()["refresh_token"]
            finally:
                source.close()
            samples.direct_ms += direct_round
            samples.facade_ms += facade_round
            samples.per_round.append((statistics.median(direct_round), statistics.median(facade_round)))
    samples.seal_us, samples.open_us = sealing_costs(keys, client.client_id)
    return samples


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def render(samples: Samples) -> str:
    direct, facade = statistics.median(samples.direct_ms), statistics.median(samples.facade_ms)
    lines = [
        "| refresh_token grant | median ms | p95 ms | requests |",
        "|---|---:|---:|---:|",
        f"| direct to the IdP | {direct:.2f} | {_p95(samples.direct_ms):.2f} | {len(samples.direct_ms)} |",
        f"| through the facade | {facade:.2f} | {_p95(samples.facade_ms):.2f} | {len(samples.facade_ms)} |",
        "",
        "| round | direct median ms | facade median ms | facade / direct |",
        "|---:|---:|---:|---:|",
    ]
    for index, (d, f) in enumerate(samples.per_round, 1):
        lines.append(f"| {index} | {d:.2f} | {f:.2f} | {f / d:.2f} |")
    summary = f"Facade / direct (medians of all): **{facade / direct:.2f}**, **{facade - direct:+.2f} ms** per request."
    sealing = (
        f"Sealing, in-process: {samples.seal_us:.0f} µs to seal and {samples.open_us:.0f} µs to open one wrapped "
        "refresh token; a refresh opens two values (the client_id and the refresh token) and seals one."
    )
    lines += ["", summary, "", sealing]
    return "\n".join(lines)


def write_report(table: str, load: str) -> None:
    REPORT.write_text(
        f"""# The facade's token endpoint: cost over the identity provider's

Generated by `python -m bench.facade` on {datetime.date.today().isoformat()}
({platform.python_implementation()} {platform.python_version()}, {platform.machine()}; load average at
the start {load}). Both sides on one 2-core machine, over loopback; rounds alternate.

{__doc__.split("python -m bench.facade", 1)[1].split(chr(10), 1)[1].strip()}

{table}

The difference is authgate's work per refresh plus one more loopback HTTP hop; the IdP's
own time is in both rows. py-spy on the authgate process during this bench (one run, 250 Hz)
put about half of the token endpoint's samples in the upstream call (httpx and httpcore,
which a direct client pays too but in another process), about a fifth in opening and sealing
JWE values, and the rest in Starlette, the form and client checks and verifying the new
access token. On a 2-core machine the client, authgate and the IdP also share the CPUs.
"""
    )


def main() -> None:
    problem = install_problem()
    if problem:
        raise SystemExit(f"the test IdP is not installed: {problem}")
    logging.getLogger("authgate").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="authgate-bench-facade-") as directory:
        base = Path(directory)
        ca = TestCA(base / "pki")
        keys_path = sealing_keys_file(base / "keys.json")
        clients = [*default_clients(), upstream_client_metadata()]
        with OidcProvider(base / "idp", ca=ca, clients=clients) as idp:
            args = ["--ca-bundle", str(ca.ca_path), "--egress-allow", "127.0.0.1", "--sealing-keys", str(keys_path)]
            with Authgate(base, facade_policy(idp.issuer), args, name="authgate") as authgate:
                harness = FacadeHarness(authgate.port, idp)
                try:
                    load = loadavg()
                    samples = measure(idp, harness, SealingKeys.load(keys_path))
                finally:
                    harness.close()
    table = render(samples)
    print(table)
    write_report(table, load)
    print(f"\nwrote {REPORT}")


if __name__ == "__main__":
    main()
