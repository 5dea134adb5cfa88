"""The soak (`make soak`, not in CI): authgate's check port at 70 % of its measured maximum
rate for --minutes, with valid, invalid, expired and unknown-`kid` tokens mixed: zero 5xx,
RSS flat (every cache bounded), p99 drift reported. Writes bench/SOAK.md.

    python -m bench.soak [--minutes 10] [--fraction 0.7]

Loopback only. The maximum is the mix's (bench/paced_load.py offering far more than is
answered, 10 s; wrk with one valid token is reported beside it). The soak itself is
bench/paced_load.py (open loop, bounded in count and time), the server pinned to one CPU
and the load generator to the other, as bench/throughput.py does. The valid tokens are
more than the verified-token cache holds (10,000), so the cache evicts all along; every
unknown-`kid` token has a kid of its own (each may ask for one refetch, at most one per
--jwks-kid-cooldown-seconds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from jwcrypto import jwk, jws

from bench.issuer import CHECK_URL, SCOPE, StaticIssuer, policy_yaml
from bench.throughput import ROOT, Target, pinning, run_wrk, start_authgate, write_lua

VALID_TOKENS = 12_000  # > the verified-token cache's 10,000 entries
OTHER_TOKENS = 1_000  # of each bad kind
MIX = (("valid", 7), ("invalid_signature", 1), ("expired", 1), ("unknown_kid", 1))  # per 10 checks
SAMPLE_SECONDS = 10.0
MAX_SECONDS_MARGIN = 30.0


def stray_token(issuer: StaticIssuer, audience: str) -> str:
    """Signed by a key the issuer never published, under a kid of its own."""
    key = jwk.JWK.generate(kty="EC", crv="P-256", kid=f"stray-{uuid.uuid4().hex[:12]}")
    now = int(time.time())
    claims = {"iss": issuer.issuer, "aud": audience, "sub": "stray", "scope": SCOPE, "iat": now, "exp": now + 7200}
    signed = jws.JWS(json.dumps(claims, separators=(",", ":")).encode())
    signed.add_signature(key, alg="ES256", protected=json.dumps({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}))
    return signed.serialize(compact=True)


def tampered(token: str) -> str:
    head, body, signature = token.split(".")
    flipped = ("B" if signature[10] == "A" else "A").join((signature[:10], signature[11:]))
    return f"{head}.{body}.{flipped}"


def mixed_requests(issuer: StaticIssuer, audience: str, minutes: float) -> list[dict]:
    ttl = int(minutes * 60 + 3600)
    pools = {
        "valid": [issuer.token("ES256", audience, SCOPE, subject=f"user{i}", ttl=ttl) for i in range(VALID_TOKENS)],
        "invalid_signature": [tampered(issuer.token("ES256", audience, SCOPE, ttl=ttl)) for _ in range(OTHER_TOKENS)],
        "expired": [issuer.token("ES256", audience, SCOPE, ttl=-600) for _ in range(OTHER_TOKENS)],
        "unknown_kid": [stray_token(issuer, audience) for _ in range(OTHER_TOKENS)],
    }
    order = [kind for kind, weight in MIX for _ in range(weight)]
    entries = []
    for i in range(VALID_TOKENS * len(order) // 7):
        kind = order[i % len(order)]
        pool = pools[kind]
        token = pool[(i // len(order)) % len(pool)]
        headers = {"X-Original-URL": CHECK_URL, "X-Original-Method": "POST", "Authorization": f"Bearer {token}"}
        entries.append({"kind": kind, "headers": headers})
    return entries


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def paced_load(
    target: Target, requests_file: Path, rate: float, seconds: float, prefix: list[str], out: Path
) -> subprocess.Popen:
    port = target.url.split(":")[2].split("/")[0]
    command = [*prefix, sys.executable, "-m", "bench.paced_load", "--url", target.url, "--host", f"127.0.0.1:{port}"]
    command += ["--requests", str(requests_file), "--rate", f"{rate:.0f}", "--min-seconds", str(seconds)]
    command += ["--max-seconds", str(seconds + MAX_SECONDS_MARGIN), "--window", "60", "--out", str(out)]
    command += ["--connections", "64"]
    return subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL)


def mixed_maximum(target: Target, requests_file: Path, prefix: list[str], work: Path) -> float:
    """The mix's maximum: the generator offering far more than the server answers, for 10 s."""
    out = work / "maximum.json"
    load = paced_load(target, requests_file, 100_000, 10.0, prefix, out)
    if load.wait(60) != 0:
        raise RuntimeError("the load generator failed measuring the maximum")
    figures = json.loads(out.read_text())
    return figures["answered"] / figures["seconds"]


def soak(target: Target, requests_file: Path, rate: float, seconds: float, prefix: list[str], work: Path) -> dict:
    out = work / "figures.json"
    load = paced_load(target, requests_file, rate, seconds, prefix, out)
    rss: list[tuple[float, int]] = []
    started = time.monotonic()
    while load.poll() is None:
        rss.append((time.monotonic() - started, rss_kib(target.process.pid)))
        time.sleep(SAMPLE_SECONDS)
    if load.returncode != 0:
        raise RuntimeError(f"the load generator failed with {load.returncode}")
    figures = json.loads(out.read_text())
    figures["rss_kib"] = rss
    return figures


def log_is_clean(log: Path, requests: list[dict]) -> bool:
    text = log.read_text(errors="replace")
    signatures = {entry["headers"]["Authorization"].rsplit(".", 1)[1] for entry in requests[:2000]}
    return "Traceback" not in text and "Bearer " not in text and not any(s in text for s in signatures)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def report(
    figures: dict, maximum: float, single: float, fraction: float, minutes: float, clean: bool, description: str
) -> str:
    rss = figures["rss_kib"]
    windows = figures["windows"]
    # Minutes are by when a check began: the last one counts only if the run covered all of it.
    full = [w for w in windows if w["start_s"] + 60 <= figures["seconds"] + 1] or windows
    rows = "\n".join(
        f"| {w['start_s'] / 60:.0f} | {w['checks']} | {w['5xx']} | {w['errors']} | {w['p50_ms']} | {w['p99_ms']} |"
        for w in windows
    )
    behind = figures["rate_sent"] < 0.95 * figures["rate_offered"]
    pace = (
        "**The generator fell behind the offered rate** (the server saturated, or the CPUs were shared "
        "with other work): the figures are for the rate sent."
        if behind
        else "The offered rate was held."
    )
    statuses = "\n".join(f"| {kind} | {counts} |" for kind, counts in figures["statuses"].items())
    first_rss, last_rss, peak = rss[1][1] if len(rss) > 1 else rss[0][1], rss[-1][1], max(v for _, v in rss)
    return f"""# Soak: authgate's check port at {fraction:.0%} of its maximum for {minutes:g} minutes

`make soak` (`python -m bench.soak --minutes {minutes:g}`), {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
{description}. Not in CI. Loopback only; the load is bench/paced_load.py (open loop).

| figure | value |
|---|---|
| maximum of the mix (paced_load saturating, 64 connections, 10 s) | {maximum:.0f} checks/s |
| for reference: wrk, 32 connections, 10 s, one valid token (cache hits) | {single:.0f} checks/s |
| offered / sent | {figures["rate_offered"]:.0f} / {figures["rate_sent"]:.0f} checks/s for {figures["seconds"]:.0f} s |
| checks sent / answered | {figures["sent"]} / {figures["answered"]} |
| 5xx | {figures["answered_5xx"]} |
| connection errors, timeouts | {sum(figures["errors"].values())} {figures["errors"] or ""} |
| RSS after the first sample / at the end / peak | {mib(first_rss)} / {mib(last_rss)} / {mib(peak)} MiB |
| p99 first minute / last full minute | {full[0]["p99_ms"]} / {full[-1]["p99_ms"]} ms |
| p50 / p99 over the run | {figures["p50_ms"]} / {figures["p99_ms"]} ms |
| authgate log: no token, no traceback | {"yes" if clean else "NO"} |

{pace}

Mix per 10 checks: 7 valid (a pool of {VALID_TOKENS:,} tokens, more than the verified-token cache's
10,000), 1 with a bad signature, 1 expired, 1 signed under an unknown `kid` (a kid of its own each).

| kind | statuses |
|---|---|
{statuses}

Per minute (by the minute a check began):

| minute | checks | 5xx | errors | p50 ms | p99 ms |
|---|---|---|---|---|---|
{rows}

RSS samples (seconds, MiB): {", ".join(f"{t:.0f}: {v / 1024:.1f}" for t, v in rss)}

The machine has 2 cores shared with other work: compare the minutes of one run, not
absolute figures across runs.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fraction", type=float, default=0.7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "SOAK.md")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 60:
        parser.error("--minutes: 0..60")
    server_prefix, load_prefix, description = pinning()
    with tempfile.TemporaryDirectory(prefix="authgate-soak-") as directory, StaticIssuer() as issuer:
        work = Path(directory)
        policy = work / "policy.yaml"
        policy.write_text(policy_yaml(issuer.issuer))
        warm = issuer.token("ES256", "https://bench.example.com/mcp", SCOPE)
        target = start_authgate("authgate", policy, work, "info", server_prefix, warm)
        try:
            single = run_wrk(target, write_lua(work / "check.lua", warm), load_prefix, 10.0).rps
            requests = mixed_requests(issuer, "https://bench.example.com/mcp", args.minutes)
            requests_file = work / "requests.json"
            requests_file.write_text(json.dumps(requests))
            maximum = mixed_maximum(target, requests_file, load_prefix, work)
            rate = args.fraction * maximum
            print(f"maximum {maximum:.0f} checks/s (wrk, one token: {single:.0f}); soaking at {rate:.0f}", flush=True)
            figures = soak(target, requests_file, rate, args.minutes * 60, load_prefix, work)
        finally:
            target.stop()
        clean = log_is_clean(target.log_path, requests)
    text = report(figures, maximum, single, args.fraction, args.minutes, clean, description)
    args.out.write_text(text)
    print(text)
    ok = figures["answered_5xx"] == 0 and not figures["errors"] and clean
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
